package composefs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"
)

// ErrNoContent is returned when reading an external regular file through
// [Tree.FS] without an object store, or with a store that lacks the object.
var ErrNoContent = errors.New("composefs: file content not available")

// maxSymlinks bounds symbolic link resolution in [Tree.FS] (the kernel's
// limit).
const maxSymlinks = 40

// FS returns a read-only io/fs view of the tree. It implements fs.FS,
// fs.StatFS, fs.ReadDirFS, fs.ReadFileFS and fs.ReadLinkFS. Names are
// unrooted slash-separated paths as fs.ValidPath requires ("." is the
// root). Symbolic links are followed by Open, Stat, ReadDir and ReadFile,
// resolved inside the tree: an absolute target starts at the tree's root and
// ".." never leaves it, as if the tree were the root filesystem.
//
// Inline content is served from the tree. The content of external regular
// files comes from objects, opened by [ObjectPath] of the file's Digest, or
// by its Payload (without leading slashes) when it has no digest; this
// matches an object store laid out like mkcomposefs --digest-store. objects
// may be nil, in which case opening an external file fails with
// [ErrNoContent]. Devices, FIFOs and sockets read as empty files.
//
// FileInfo.Sys returns the file's *Inode. The tree must not be modified while
// the FS is in use.
func (t *Tree) FS(objects fs.FS) fs.FS {
	return &treeFS{tree: t, objects: objects}
}

type treeFS struct {
	tree    *Tree
	objects fs.FS
}

// resolve finds the inode named by name, following symbolic links in every
// component except, when follow is false, the last one. It returns the inode
// and the last component of name.
func (f *treeFS) resolve(op, name string, follow bool) (*Inode, string, error) {
	if !fs.ValidPath(name) {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	var todo []string
	if name != "." {
		todo = strings.Split(name, "/")
	}
	// stack of directories from the root to the current one
	stack := []*Inode{f.tree.root}
	hops := 0
	for len(todo) > 0 {
		comp := todo[0]
		todo = todo[1:]
		cur := stack[len(stack)-1]
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if !cur.Mode.IsDir() {
			return nil, "", &fs.PathError{Op: op, Path: name, Err: ErrNotDir}
		}
		c, ok := cur.children[comp]
		if !ok {
			return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if c.Mode.Type() == TypeSymlink && (len(todo) > 0 || follow) {
			hops++
			if hops > maxSymlinks {
				return nil, "", &fs.PathError{Op: op, Path: name, Err: errors.New("too many levels of symbolic links")}
			}
			target := strings.Split(c.Target, "/")
			if strings.HasPrefix(c.Target, "/") {
				stack = stack[:1]
			}
			todo = append(target, todo...)
			continue
		}
		stack = append(stack, c)
	}
	return stack[len(stack)-1], path.Base(name), nil
}

func (f *treeFS) Open(name string) (fs.File, error) {
	ino, base, err := f.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	info := &fileInfo{name: base, ino: ino}
	switch ino.Mode.Type() {
	case TypeDir:
		return &dirFile{fileInfo: info}, nil
	case TypeRegular:
		if len(ino.Content) > 0 || ino.Size == 0 {
			return &memFile{fileInfo: info, Reader: bytes.NewReader(ino.Content)}, nil
		}
		return f.openObject(name, info)
	default:
		return &memFile{fileInfo: info, Reader: bytes.NewReader(nil)}, nil
	}
}

// openObject opens the backing object of an external regular file.
func (f *treeFS) openObject(name string, info *fileInfo) (fs.File, error) {
	ino := info.ino
	var obj string
	switch {
	case ino.Digest != nil:
		obj = ObjectPath(*ino.Digest)
	case ino.Payload != "":
		obj = path.Clean(strings.TrimLeft(ino.Payload, "/"))
	}
	if f.objects == nil || obj == "" || !fs.ValidPath(obj) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrNoContent}
	}
	of, err := f.objects.Open(obj)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: object %s: %w", ErrNoContent, obj, err)}
	}
	st, err := of.Stat()
	if err != nil {
		of.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("object %s: %w", obj, err)}
	}
	if st.Size() != ino.Size {
		of.Close()
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("object %s has %d bytes, the file %d", obj, st.Size(), ino.Size)}
	}
	return &objectFile{fileInfo: info, File: of}, nil
}

func (f *treeFS) Stat(name string) (fs.FileInfo, error) {
	ino, base, err := f.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	return &fileInfo{name: base, ino: ino}, nil
}

// Lstat returns information about name without following a final symbolic
// link.
func (f *treeFS) Lstat(name string) (fs.FileInfo, error) {
	ino, base, err := f.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return &fileInfo{name: base, ino: ino}, nil
}

// ReadLink returns the target of the symbolic link name.
func (f *treeFS) ReadLink(name string) (string, error) {
	ino, _, err := f.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if ino.Mode.Type() != TypeSymlink {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return ino.Target, nil
}

func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	ino, _, err := f.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !ino.Mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: ErrNotDir}
	}
	return dirEntries(ino), nil
}

func (f *treeFS) ReadFile(name string) ([]byte, error) {
	file, err := f.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if st, _ := file.Stat(); st.IsDir() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: ErrIsDir}
	}
	return io.ReadAll(file)
}

// dirEntries lists a directory in name order.
func dirEntries(dir *Inode) []fs.DirEntry {
	names := dir.names()
	out := make([]fs.DirEntry, len(names))
	for i, n := range names {
		out[i] = &fileInfo{name: n, ino: dir.children[n]}
	}
	return out
}

// fileInfo implements fs.FileInfo and fs.DirEntry for an inode.
type fileInfo struct {
	name string
	ino  *Inode
}

func (i *fileInfo) Name() string { return i.name }
func (i *fileInfo) Size() int64 {
	if i.ino.Mode.Type() == TypeSymlink {
		return int64(len(i.ino.Target))
	}
	return i.ino.Size
}
func (i *fileInfo) Mode() fs.FileMode               { return i.ino.Mode.FileMode() }
func (i *fileInfo) ModTime() time.Time              { return i.ino.Mtime.Time() }
func (i *fileInfo) IsDir() bool                     { return i.ino.Mode.IsDir() }
func (i *fileInfo) Sys() any                        { return i.ino }
func (i *fileInfo) Type() fs.FileMode               { return i.Mode().Type() }
func (i *fileInfo) Info() (fs.FileInfo, error)      { return i, nil }
func (i *fileInfo) String() string                  { return fs.FormatFileInfo(i) }
func (i *fileInfo) Stat() (fs.FileInfo, error)      { return i, nil }
func (i *fileInfo) errPath(op string) *fs.PathError { return &fs.PathError{Op: op, Path: i.name} }

// memFile is an open file whose content is in memory.
type memFile struct {
	*fileInfo
	*bytes.Reader
}

func (f *memFile) Close() error { return nil }

// objectFile is an open external file backed by an object.
type objectFile struct {
	*fileInfo
	fs.File
}

func (f *objectFile) Stat() (fs.FileInfo, error) { return f.fileInfo, nil }

// ReadAt implements io.ReaderAt when the object does.
func (f *objectFile) ReadAt(p []byte, off int64) (int, error) {
	ra, ok := f.File.(io.ReaderAt)
	if !ok {
		e := f.errPath("readat")
		e.Err = errors.ErrUnsupported
		return 0, e
	}
	return ra.ReadAt(p, off)
}

// Seek implements io.Seeker when the object does.
func (f *objectFile) Seek(offset int64, whence int) (int64, error) {
	s, ok := f.File.(io.Seeker)
	if !ok {
		e := f.errPath("seek")
		e.Err = errors.ErrUnsupported
		return 0, e
	}
	return s.Seek(offset, whence)
}

// dirFile is an open directory.
type dirFile struct {
	*fileInfo
	entries []fs.DirEntry
	read    bool
}

func (d *dirFile) Read([]byte) (int, error) {
	e := d.errPath("read")
	e.Err = ErrIsDir
	return 0, e
}

func (d *dirFile) Close() error { return nil }

// ReadDir implements fs.ReadDirFile.
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.read {
		d.entries = dirEntries(d.ino)
		d.read = true
	}
	if n <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.entries))
	out := d.entries[:n]
	d.entries = d.entries[n:]
	return out, nil
}
