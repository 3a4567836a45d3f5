package ostree

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxMetadataSize bounds the size of a metadata object the [Reader] loads
// (ostree's OSTREE_MAX_METADATA_SIZE).
const MaxMetadataSize = 128 << 20

// MaxWalkDepth bounds the directory depth [Reader.Walk] and
// [Reader.Verify] descend to.
const MaxWalkDepth = 2048

// XattrFS is a file system that can list a file's extended attributes
// without following a final symbolic link. The [Reader] uses it for the
// attributes of content objects; [OpenDir] provides one.
type XattrFS interface {
	fs.FS
	Xattrs(name string) ([]Xattr, error)
}

// Reader reads a bare repository from a file system rooted at the
// repository directory. Metadata objects are checked against their
// checksum when loaded; content objects only by [Reader.Verify].
//
// The owner and full mode of content objects come from the Sys() value of
// their fs.FileInfo (a *syscall.Stat_t, as os.DirFS gives) and their
// symlink targets from fs.ReadLink; extended attributes are read if the
// file system implements [XattrFS], else taken as none.
type Reader struct {
	fsys  fs.FS
	close func() error
}

// NewReader returns a Reader of the repository at the root of fsys.
func NewReader(fsys fs.FS) *Reader { return &Reader{fsys: fsys} }

// OpenDir returns a Reader of the repository directory dir, with
// extended attribute support. It reads through an os.Root, so symbolic
// links in the repository cannot lead it outside dir. The caller must
// call [Reader.Close].
func OpenDir(dir string) (*Reader, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("ostree: %w", err)
	}
	return &Reader{fsys: &dirFS{FS: root.FS(), dir: dir}, close: root.Close}, nil
}

// Close releases what [OpenDir] opened; it does nothing for a Reader from
// [NewReader].
func (r *Reader) Close() error {
	if r.close == nil {
		return nil
	}
	return r.close()
}

// dirFS is an os.Root's file system plus Xattrs.
type dirFS struct {
	fs.FS
	dir string
}

func (d *dirFS) ReadLink(name string) (string, error)   { return fs.ReadLink(d.FS, name) }
func (d *dirFS) Lstat(name string) (fs.FileInfo, error) { return fs.Lstat(d.FS, name) }

func (d *dirFS) Xattrs(name string) ([]Xattr, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "xattrs", Path: name, Err: fs.ErrInvalid}
	}
	// The attribute calls take a path: make sure no directory on the way
	// is a symbolic link, so they stay inside the repository.
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		fi, err := fs.Lstat(d.FS, dir)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return nil, &fs.PathError{Op: "xattrs", Path: name, Err: ErrFormat}
		}
	}
	p := filepath.Join(d.dir, filepath.FromSlash(name))
	size, err := unix.Llistxattr(p, nil)
	if err != nil {
		return nil, &fs.PathError{Op: "llistxattr", Path: name, Err: err}
	}
	if size == 0 {
		return nil, nil
	}
	buf := make([]byte, size)
	if size, err = unix.Llistxattr(p, buf); err != nil {
		return nil, &fs.PathError{Op: "llistxattr", Path: name, Err: err}
	}
	var xs []Xattr
	for _, n := range strings.Split(strings.TrimSuffix(string(buf[:size]), "\x00"), "\x00") {
		v, err := lgetxattr(p, n)
		if err != nil {
			return nil, &fs.PathError{Op: "lgetxattr", Path: name, Err: err}
		}
		if len(v) > 0 { // ostree ignores empty values
			xs = append(xs, Xattr{Name: n, Value: string(v)})
		}
	}
	return xs, nil
}

func lgetxattr(p, name string) ([]byte, error) {
	for {
		size, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		n, err := unix.Lgetxattr(p, name, buf)
		if err == unix.ERANGE {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// Ref returns the commit the local ref name (refs/heads/name) points to.
func (r *Reader) Ref(name string) (Checksum, error) {
	if !ValidRef(name) {
		return Checksum{}, fmt.Errorf("ostree: %w: ref %q", ErrInvalid, name)
	}
	b, err := fs.ReadFile(r.fsys, "refs/heads/"+name)
	if err != nil {
		return Checksum{}, fmt.Errorf("ostree: ref %s: %w: %w", name, ErrNotExist, err)
	}
	c, err := ParseChecksum(strings.TrimSuffix(string(b), "\n"))
	if err != nil {
		return Checksum{}, fmt.Errorf("ostree: ref %s: %w", name, err)
	}
	return c, nil
}

// readSmall reads the file p of the repository, at most MaxMetadataSize
// bytes.
func (r *Reader) readSmall(p string) ([]byte, error) {
	f, err := r.fsys.Open(p)
	if err != nil {
		return nil, fmt.Errorf("ostree: %s: %w: %w", p, ErrNotExist, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("ostree: %s: %w", p, err)
	}
	if len(b) > MaxMetadataSize {
		return nil, fmt.Errorf("ostree: %s: %w: larger than %d bytes", p, ErrFormat, MaxMetadataSize)
	}
	return b, nil
}

// readMeta loads a metadata object and checks its checksum.
func (r *Reader) readMeta(c Checksum, t ObjectType) ([]byte, error) {
	p := ObjectPath(c, t)
	b, err := r.readSmall(p)
	if err != nil {
		return nil, err
	}
	if Checksum(sha256.Sum256(b)) != c {
		return nil, fmt.Errorf("ostree: %s: %w", p, ErrChecksum)
	}
	return b, nil
}

// ReadCommit loads the commit object c.
func (r *Reader) ReadCommit(c Checksum) (*Commit, error) {
	b, err := r.readMeta(c, ObjectCommit)
	if err != nil {
		return nil, err
	}
	cm, err := ParseCommit(b)
	if err != nil {
		return nil, fmt.Errorf("ostree: %s: %w", c, err)
	}
	return cm, nil
}

// ReadDirTree loads the dirtree object c.
func (r *Reader) ReadDirTree(c Checksum) (*DirTree, error) {
	b, err := r.readMeta(c, ObjectDirTree)
	if err != nil {
		return nil, err
	}
	t, err := ParseDirTree(b)
	if err != nil {
		return nil, fmt.Errorf("ostree: %s: %w", c, err)
	}
	return t, nil
}

// ReadDirMeta loads the dirmeta object c.
func (r *Reader) ReadDirMeta(c Checksum) (*DirMeta, error) {
	b, err := r.readMeta(c, ObjectDirMeta)
	if err != nil {
		return nil, err
	}
	m, err := ParseDirMeta(b)
	if err != nil {
		return nil, fmt.Errorf("ostree: %s: %w", c, err)
	}
	return m, nil
}

// FileHeader returns the header of the content object c, read from the
// object file's metadata, extended attributes sorted by name. It does not
// verify the checksum.
func (r *Reader) FileHeader(c Checksum) (*FileHeader, error) {
	h, _, err := r.fileInfo(c)
	return h, err
}

// fileInfo returns the header and the content size of a content object.
func (r *Reader) fileInfo(c Checksum) (*FileHeader, int64, error) {
	p := ObjectPath(c, ObjectFile)
	fi, err := fs.Lstat(r.fsys, p)
	if err != nil {
		return nil, 0, fmt.Errorf("ostree: %s: %w: %w", p, ErrNotExist, err)
	}
	h := &FileHeader{}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		h.UID, h.GID, h.Mode = st.Uid, st.Gid, st.Mode
	} else {
		h.Mode = uint32(fi.Mode().Perm())
		if fi.Mode()&fs.ModeSetuid != 0 {
			h.Mode |= 0o4000
		}
		if fi.Mode()&fs.ModeSetgid != 0 {
			h.Mode |= 0o2000
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case fi.Mode().IsRegular():
			h.Mode |= modeRegular
		case fi.Mode()&fs.ModeSymlink != 0:
			h.Mode |= modeSymlink
		}
	}
	switch h.Mode & modeTypeMask {
	case modeRegular:
	case modeSymlink:
		if h.Target, err = fs.ReadLink(r.fsys, p); err != nil {
			return nil, 0, fmt.Errorf("ostree: %s: %w", p, err)
		}
	default:
		return nil, 0, fmt.Errorf("ostree: %s: %w: not a regular file or symlink", p, ErrFormat)
	}
	if xfs, ok := r.fsys.(XattrFS); ok {
		if h.Xattrs, err = xfs.Xattrs(p); err != nil {
			return nil, 0, fmt.Errorf("ostree: %s: %w", p, err)
		}
		slices.SortStableFunc(h.Xattrs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
	}
	var size int64
	if h.Mode&modeTypeMask == modeRegular {
		size = fi.Size()
	}
	return h, size, nil
}

// OpenFile returns the content of the regular-file content object c. The
// caller closes it.
func (r *Reader) OpenFile(c Checksum) (fs.File, error) {
	p := ObjectPath(c, ObjectFile)
	f, err := r.fsys.Open(p)
	if err != nil {
		return nil, fmt.Errorf("ostree: %s: %w: %w", p, ErrNotExist, err)
	}
	return f, nil
}

// Entry is one name [Reader.Walk] visits: a directory (Meta set) or a
// content object (File set).
type Entry struct {
	// Path is the absolute path in the tree, "/" for the root.
	Path string
	// Meta and Dir are the dirmeta and dirtree of a directory; MetaSum and
	// DirSum their checksums.
	Meta            *DirMeta
	Dir             *DirTree
	MetaSum, DirSum Checksum
	// File is the header of a content object, FileSum its checksum and
	// Size the size of a regular file's content.
	File    *FileHeader
	FileSum Checksum
	Size    int64
}

// Walk visits the tree at root: each directory, then its files in the
// dirtree's order, then its subdirectories in order. Returning
// fs.SkipDir for a directory skips its entries; any other error stops the
// walk. The cost is proportional to the number of paths, which a
// hostile repository can make exponential in its size by reusing
// dirtrees; [Reader.Verify] visits each object once.
func (r *Reader) Walk(root Root, fn func(e *Entry) error) error {
	err := r.walk("/", root, 0, fn)
	if err == fs.SkipDir || err == fs.SkipAll {
		return nil
	}
	return err
}

func (r *Reader) walk(p string, d Root, depth int, fn func(e *Entry) error) error {
	if depth > MaxWalkDepth {
		return fmt.Errorf("ostree: %s: %w: tree deeper than %d", p, ErrFormat, MaxWalkDepth)
	}
	meta, err := r.ReadDirMeta(d.Meta)
	if err != nil {
		return err
	}
	tree, err := r.ReadDirTree(d.Contents)
	if err != nil {
		return err
	}
	if err := fn(&Entry{Path: p, Meta: meta, Dir: tree, MetaSum: d.Meta, DirSum: d.Contents}); err != nil {
		if err == fs.SkipDir && depth > 0 {
			return nil
		}
		return err
	}
	for _, f := range tree.Files {
		h, size, err := r.fileInfo(f.Checksum)
		if err != nil {
			return err
		}
		if err := fn(&Entry{Path: path.Join(p, f.Name), File: h, FileSum: f.Checksum, Size: size}); err != nil {
			return err
		}
	}
	for _, sub := range tree.Dirs {
		if err := r.walk(path.Join(p, sub.Name), Root{Contents: sub.Contents, Meta: sub.Meta}, depth+1, fn); err != nil {
			return err
		}
	}
	return nil
}

// VerifyStats counts the objects [Reader.Verify] checked.
type VerifyStats struct {
	Commits, DirTrees, DirMetas, Files int
}

// Verify checks commit c and every object it reaches, like `ostree fsck`
// for one commit: metadata objects must parse and match their checksums,
// and content objects (owner, mode, extended attributes, symlink target
// and content) must match theirs. Each object is checked once. The first
// problem is returned, wrapping [ErrChecksum], [ErrFormat] or
// [ErrNotExist].
func (r *Reader) Verify(c Checksum) (VerifyStats, error) {
	var st VerifyStats
	cm, err := r.ReadCommit(c)
	if err != nil {
		return st, err
	}
	st.Commits++
	seen := map[Checksum]bool{}
	var visit func(d Root, depth int) error
	visit = func(d Root, depth int) error {
		if depth > MaxWalkDepth {
			return fmt.Errorf("ostree: %w: tree deeper than %d", ErrFormat, MaxWalkDepth)
		}
		if !seen[d.Meta] {
			seen[d.Meta] = true
			if _, err := r.ReadDirMeta(d.Meta); err != nil {
				return err
			}
			st.DirMetas++
		}
		if seen[d.Contents] {
			return nil
		}
		seen[d.Contents] = true
		tree, err := r.ReadDirTree(d.Contents)
		if err != nil {
			return err
		}
		st.DirTrees++
		for _, f := range tree.Files {
			if seen[f.Checksum] {
				continue
			}
			seen[f.Checksum] = true
			if err := r.verifyFile(f.Checksum); err != nil {
				return err
			}
			st.Files++
		}
		for _, sub := range tree.Dirs {
			if err := visit(Root{Contents: sub.Contents, Meta: sub.Meta}, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return st, visit(Root{Contents: cm.RootContents, Meta: cm.RootMeta}, 0)
}

func (r *Reader) verifyFile(c Checksum) error {
	h, err := r.FileHeader(c)
	if err != nil {
		return err
	}
	var content io.Reader
	if h.Mode&modeTypeMask == modeRegular {
		f, err := r.OpenFile(c)
		if err != nil {
			return err
		}
		defer f.Close()
		content = f
	} else {
		content = bytes.NewReader(nil)
	}
	got, err := FileChecksum(h, content)
	if err != nil {
		return fmt.Errorf("ostree: %s: %w", ObjectPath(c, ObjectFile), err)
	}
	if got != c {
		return fmt.Errorf("ostree: %s: %w (content hashes to %s)", ObjectPath(c, ObjectFile), ErrChecksum, got)
	}
	return nil
}
