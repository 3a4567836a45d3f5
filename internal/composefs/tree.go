package composefs

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

// Mode is a Unix st_mode: the file type bits ([TypeMask]) and the permission
// bits including setuid, setgid and sticky ([PermMask]).
type Mode uint32

// File types and mode bits, with their Linux values.
const (
	TypeMask    Mode = 0o170000
	TypeSocket  Mode = 0o140000
	TypeSymlink Mode = 0o120000
	TypeRegular Mode = 0o100000
	TypeBlock   Mode = 0o060000
	TypeDir     Mode = 0o040000
	TypeChar    Mode = 0o020000
	TypeFIFO    Mode = 0o010000

	ModeSetuid Mode = 0o4000
	ModeSetgid Mode = 0o2000
	ModeSticky Mode = 0o1000
	PermMask   Mode = 0o7777
)

// Type returns the file type bits of m.
func (m Mode) Type() Mode { return m & TypeMask }

// IsDir reports whether m describes a directory.
func (m Mode) IsDir() bool { return m&TypeMask == TypeDir }

// IsRegular reports whether m describes a regular file.
func (m Mode) IsRegular() bool { return m&TypeMask == TypeRegular }

// validType reports whether m has one of the seven known file types.
func (m Mode) validType() bool {
	switch m.Type() {
	case TypeSocket, TypeSymlink, TypeRegular, TypeBlock, TypeDir, TypeChar, TypeFIFO:
		return true
	}
	return false
}

// FileMode converts m to an io/fs file mode.
func (m Mode) FileMode() fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	switch m.Type() {
	case TypeDir:
		fm |= fs.ModeDir
	case TypeSymlink:
		fm |= fs.ModeSymlink
	case TypeChar:
		fm |= fs.ModeDevice | fs.ModeCharDevice
	case TypeBlock:
		fm |= fs.ModeDevice
	case TypeFIFO:
		fm |= fs.ModeNamedPipe
	case TypeSocket:
		fm |= fs.ModeSocket
	}
	if m&ModeSetuid != 0 {
		fm |= fs.ModeSetuid
	}
	if m&ModeSetgid != 0 {
		fm |= fs.ModeSetgid
	}
	if m&ModeSticky != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// Timespec is a modification time: seconds since the Unix epoch (negative
// before 1970) and nanoseconds (0 to 999999999).
type Timespec struct {
	Sec  int64
	Nsec uint32
}

// Time converts t to a time.Time.
func (t Timespec) Time() time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }

// Xattr is one extended attribute: a full name with its namespace prefix
// ("user.comment", "security.selinux", "system.posix_acl_access") and a
// binary value.
type Xattr struct {
	Name  string
	Value string
}

// Limits of the format (and of mkcomposefs, where it is stricter).
const (
	// MaxNameLen is the maximum length of one file name in bytes.
	MaxNameLen = 255
	// MaxDepth is the maximum number of path components below the root.
	MaxDepth = 2048
	// MaxPathLen is the maximum length in bytes of a symlink target and of a
	// payload (Linux PATH_MAX minus the terminating NUL).
	MaxPathLen = 4095
	// MaxInlineContent is the maximum size of inline file content.
	MaxInlineContent = 5000
	// InlineThreshold is the size up to which a directory scan (and the
	// object store convention) stores file content inline in the image
	// instead of in the object store.
	InlineThreshold = 64
	// MaxXattrNameLen is the maximum length of an extended attribute name.
	MaxXattrNameLen = 255
	// MaxXattrValueLen is the maximum length of an extended attribute value.
	MaxXattrValueLen = 65535
	// MaxXattrSpace bounds the extended attributes of one inode: the sum
	// over its attributes of 7 + len(name) + len(value), plus 12, may not
	// exceed it (the budget mkcomposefs applies).
	MaxXattrSpace = 32767
	// MaxFileSize is the largest regular file an image can describe
	// (1024 chunks of 2^43 bytes).
	MaxFileSize = 1024 << 43
)

// Errors returned (wrapped, usually in an *fs.PathError) by tree
// operations. Missing and existing paths are reported with fs.ErrNotExist and
// fs.ErrExist.
var (
	ErrInvalidPath  = errors.New("composefs: invalid path")
	ErrNotDir       = errors.New("composefs: not a directory")
	ErrIsDir        = errors.New("composefs: is a directory")
	ErrInvalidInode = errors.New("composefs: invalid inode")
	ErrInvalidXattr = errors.New("composefs: invalid extended attribute")
	ErrInUse        = errors.New("composefs: inode already in a tree")
)

// Inode is one file, directory or special file of a [Tree]. Several names
// (hard links) may refer to the same Inode; the first name it was added
// under is its primary name (see [Inode.Path]), which decides where the
// inode is stored in an image and which line of a dumpfile carries it.
//
// The exported fields may be changed at any time; [Tree.Add] and
// [WriteImage] validate them. Fields that do not apply to the file type are
// ignored.
type Inode struct {
	// Mode is the file type and permission bits.
	Mode Mode
	// UID and GID own the file.
	UID, GID uint32
	// Nlink is the link count. For directories it is recomputed by
	// WriteImage (2 + number of subdirectories). For other files it is
	// stored as given: Tree.Add sets 0 to 1, Tree.Link increments it and
	// Tree.Remove decrements it.
	Nlink uint32
	// Mtime is the modification time (the only time composefs stores).
	Mtime Timespec
	// Rdev is the device number (Linux dev_t) of a character or block
	// device; a character device with Rdev 0 is an overlayfs whiteout. It
	// must fit the 32-bit on-disk encoding (major < 4096, minor < 2^20).
	Rdev uint64
	// Size is the size of a regular file. Tree.Add sets it to len(Target)
	// for symlinks; for directories it is informational (images store the
	// size of the directory's entries).
	Size int64
	// Target is the target of a symbolic link (1 to MaxPathLen bytes).
	Target string
	// Payload is the backing-file path of a regular file with external
	// content, relative to the object store ("ab/cdef..." for an object);
	// overlayfs finds the content through the redirect attribute
	// "/"+Payload. Empty: no redirect.
	Payload string
	// Digest is the fs-verity digest of the content of a regular file with
	// external content, stored in the metacopy attribute; nil: none.
	Digest *[fsverity.Size]byte
	// Content is the inline content of a regular file (at most
	// MaxInlineContent bytes, len(Content) == Size). Files with Size > 0
	// and no Content are external: their content lives in the object store.
	Content []byte
	// Xattrs are the extended attributes, names unique. Their order is kept
	// (dumpfiles preserve it); images store them sorted by name.
	Xattrs []Xattr

	links    []link            // names of this inode; links[0] is the primary one
	children map[string]*Inode // directory entries
	sorted   []string          // sorted names of children; nil when stale
	attached bool              // the inode is in a tree (as a root or by name)
}

// link is one name of an inode: an entry of directory dir.
type link struct {
	dir  *Inode
	name string
}

// SetObject marks a regular file as stored in an object store under its
// fs-verity digest d: it sets Digest to d and Payload to [ObjectPath](d),
// the layout mkcomposefs uses for --digest-store.
func (ino *Inode) SetObject(d [fsverity.Size]byte) {
	ino.Digest = &d
	ino.Payload = ObjectPath(d)
}

// ObjectPath returns the object-store path of digest d: the first byte in
// hex, a slash, and the remaining 31 bytes in hex.
func ObjectPath(d [fsverity.Size]byte) string {
	h := fsverity.Hex(d)
	return h[:2] + "/" + h[2:]
}

// IsWhiteout reports whether ino is an overlayfs whiteout (a character
// device with device number 0).
func (ino *Inode) IsWhiteout() bool { return ino.Mode.Type() == TypeChar && ino.Rdev == 0 }

// Xattr returns the value of the extended attribute name.
func (ino *Inode) Xattr(name string) (string, bool) {
	for _, x := range ino.Xattrs {
		if x.Name == name {
			return x.Value, true
		}
	}
	return "", false
}

// SetXattr sets the extended attribute name to value, replacing an existing
// value in place or appending a new attribute.
func (ino *Inode) SetXattr(name, value string) error {
	if err := validXattr(name, value); err != nil {
		return err
	}
	for i := range ino.Xattrs {
		if ino.Xattrs[i].Name == name {
			ino.Xattrs[i].Value = value
			return xattrSpace(ino.Xattrs)
		}
	}
	ino.Xattrs = append(ino.Xattrs, Xattr{name, value})
	if err := xattrSpace(ino.Xattrs); err != nil {
		ino.Xattrs = ino.Xattrs[:len(ino.Xattrs)-1]
		return err
	}
	return nil
}

// RemoveXattr removes the extended attribute name and reports whether it
// was present.
func (ino *Inode) RemoveXattr(name string) bool {
	for i, x := range ino.Xattrs {
		if x.Name == name {
			ino.Xattrs = slices.Delete(ino.Xattrs, i, i+1)
			return true
		}
	}
	return false
}

// Path returns the primary path of ino ("/" for the root, "" for an inode
// that is not in a tree). For directories it is their only path.
func (ino *Inode) Path() string {
	if len(ino.links) == 0 {
		if ino.attached {
			return "/"
		}
		return ""
	}
	var parts []string
	for n := ino; len(n.links) > 0; n = n.links[0].dir {
		parts = append(parts, n.links[0].name)
	}
	slices.Reverse(parts)
	return "/" + strings.Join(parts, "/")
}

// isPrimary reports whether the entry name of dir is the primary name of ino.
func (ino *Inode) isPrimary(dir *Inode, name string) bool {
	return len(ino.links) > 0 && ino.links[0].dir == dir && ino.links[0].name == name
}

// names returns the sorted names of a directory's entries. The result is
// shared: callers must not modify it.
func (ino *Inode) names() []string {
	if ino.sorted == nil {
		s := make([]string, 0, len(ino.children))
		for name := range ino.children {
			s = append(s, name)
		}
		slices.Sort(s) // byte order, like strcmp
		ino.sorted = s
	}
	return ino.sorted
}

// validXattr checks one extended attribute.
func validXattr(name, value string) error {
	if name == "" || len(name) > MaxXattrNameLen || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%w: name %q: must be 1 to %d bytes without NUL", ErrInvalidXattr, name, MaxXattrNameLen)
	}
	if len(value) > MaxXattrValueLen {
		return fmt.Errorf("%w: %s: value of %d bytes exceeds %d", ErrInvalidXattr, name, len(value), MaxXattrValueLen)
	}
	return nil
}

// xattrSpace checks the per-inode extended attribute budget.
func xattrSpace(xs []Xattr) error {
	if len(xs) == 0 {
		return nil
	}
	total := 12
	for _, x := range xs {
		total += 7 + len(x.Name) + len(x.Value)
	}
	if total > MaxXattrSpace {
		return fmt.Errorf("%w: extended attributes need %d bytes, more than %d", ErrInvalidXattr, total, MaxXattrSpace)
	}
	return nil
}

// validate checks the exported fields of an inode.
func (ino *Inode) validate() error {
	if !ino.Mode.validType() {
		return fmt.Errorf("%w: unknown file type in mode %o", ErrInvalidInode, uint32(ino.Mode))
	}
	if ino.Mode&^(TypeMask|PermMask) != 0 {
		return fmt.Errorf("%w: mode %o has bits beyond the type and permissions", ErrInvalidInode, uint32(ino.Mode))
	}
	if ino.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrInvalidInode, ino.Size)
	}
	if ino.Mtime.Nsec >= 1e9 {
		return fmt.Errorf("%w: mtime nanoseconds %d out of range", ErrInvalidInode, ino.Mtime.Nsec)
	}
	switch ino.Mode.Type() {
	case TypeRegular:
		if ino.Size < 0 || ino.Size > MaxFileSize {
			return fmt.Errorf("%w: file size %d out of range", ErrInvalidInode, ino.Size)
		}
		if len(ino.Content) > 0 {
			if len(ino.Content) > MaxInlineContent {
				return fmt.Errorf("%w: inline content of %d bytes exceeds %d", ErrInvalidInode, len(ino.Content), MaxInlineContent)
			}
			if int64(len(ino.Content)) != ino.Size {
				return fmt.Errorf("%w: inline content of %d bytes for file size %d", ErrInvalidInode, len(ino.Content), ino.Size)
			}
		}
		if len(ino.Payload) > MaxPathLen || strings.IndexByte(ino.Payload, 0) >= 0 {
			return fmt.Errorf("%w: payload must be at most %d bytes without NUL", ErrInvalidInode, MaxPathLen)
		}
	case TypeSymlink:
		if ino.Target == "" || len(ino.Target) > MaxPathLen || strings.IndexByte(ino.Target, 0) >= 0 {
			return fmt.Errorf("%w: symlink target must be 1 to %d bytes without NUL", ErrInvalidInode, MaxPathLen)
		}
	case TypeChar, TypeBlock:
		if _, ok := encodeRdev(ino.Rdev); !ok {
			return fmt.Errorf("%w: device number %d does not fit 32 bits (major < 4096, minor < 2^20)", ErrInvalidInode, ino.Rdev)
		}
	}
	if ino.Mode.Type() != TypeDir && len(ino.children) > 0 {
		return fmt.Errorf("%w: non-directory with entries", ErrInvalidInode)
	}
	seen := make(map[string]bool, len(ino.Xattrs))
	for _, x := range ino.Xattrs {
		if err := validXattr(x.Name, x.Value); err != nil {
			return err
		}
		if seen[x.Name] {
			return fmt.Errorf("%w: duplicate name %s", ErrInvalidXattr, x.Name)
		}
		seen[x.Name] = true
	}
	return xattrSpace(ino.Xattrs)
}

// encodeRdev converts a Linux dev_t (glibc encoding) to the 32-bit on-disk
// form the kernel decodes with new_decode_dev. For major numbers below 4096
// and minor numbers below 2^20 (everything the 32-bit form can hold) the two
// encodings agree bit for bit, so the conversion is a range check.
func encodeRdev(dev uint64) (uint32, bool) {
	if dev > 0xffffffff {
		return 0, false
	}
	return uint32(dev), true
}

// Tree is an in-memory composefs filesystem tree. Its zero value is not
// usable; call [NewTree]. A Tree is not safe for concurrent use.
//
// Paths name entries relative to the root; a leading slash is optional, "."
// and ".." components are resolved lexically and cannot climb above the
// root, and symbolic links are never followed. Every component must be 1 to
// [MaxNameLen] bytes without NUL, and at most [MaxDepth] components are
// allowed.
type Tree struct {
	root *Inode
}

// NewTree returns a tree holding only a root directory with mode 0755,
// owned by 0:0, with mtime 0.
func NewTree() *Tree {
	root := &Inode{Mode: TypeDir | 0o755, Nlink: 2, attached: true}
	return &Tree{root: root}
}

// Root returns the root directory.
func (t *Tree) Root() *Inode { return t.root }

// splitPath cleans name and returns its components (none for the root).
func splitPath(name string) ([]string, error) {
	clean := path.Clean("/" + name)
	if clean == "/" {
		return nil, nil
	}
	parts := strings.Split(clean[1:], "/")
	if len(parts) > MaxDepth {
		return nil, fmt.Errorf("%w: more than %d components", ErrInvalidPath, MaxDepth)
	}
	for _, p := range parts {
		if len(p) > MaxNameLen {
			return nil, fmt.Errorf("%w: name longer than %d bytes", ErrInvalidPath, MaxNameLen)
		}
		if strings.IndexByte(p, 0) >= 0 {
			return nil, fmt.Errorf("%w: NUL in name", ErrInvalidPath)
		}
	}
	return parts, nil
}

// walkTo resolves components to the inode they name.
func (t *Tree) walkTo(parts []string) (*Inode, error) {
	n := t.root
	for _, p := range parts {
		if !n.Mode.IsDir() {
			return nil, ErrNotDir
		}
		c, ok := n.children[p]
		if !ok {
			return nil, fs.ErrNotExist
		}
		n = c
	}
	return n, nil
}

// parentOf resolves the directory holding the last component.
func (t *Tree) parentOf(parts []string) (*Inode, error) {
	dir, err := t.walkTo(parts[:len(parts)-1])
	if err != nil {
		return nil, err
	}
	if !dir.Mode.IsDir() {
		return nil, ErrNotDir
	}
	return dir, nil
}

// Lookup returns the inode at name.
func (t *Tree) Lookup(name string) (*Inode, error) {
	parts, err := splitPath(name)
	if err != nil {
		return nil, &fs.PathError{Op: "lookup", Path: name, Err: err}
	}
	ino, err := t.walkTo(parts)
	if err != nil {
		return nil, &fs.PathError{Op: "lookup", Path: name, Err: err}
	}
	return ino, nil
}

// Add puts ino into the tree at name; the tree takes ownership of ino. The
// parent directory must exist. An existing entry at name is replaced, with
// overlayfs semantics when both are directories: the new directory takes
// over the entries of the old one (use [Tree.RemoveChildren] for an opaque
// directory). Adding at "/" replaces the root, which must be a directory.
//
// Add validates ino (file type, sizes, inline content, symlink target,
// device number, extended attributes) and normalizes it: Nlink 0 becomes 1,
// a symlink's Size becomes len(Target) and Rdev is cleared for anything but
// devices. An inode can be in only one place: use [Tree.Link] for hard links.
func (t *Tree) Add(name string, ino *Inode) error {
	if err := t.add(name, ino); err != nil {
		return &fs.PathError{Op: "add", Path: name, Err: err}
	}
	return nil
}

func (t *Tree) add(name string, ino *Inode) error {
	if ino.attached {
		return ErrInUse
	}
	if len(ino.children) > 0 {
		return fmt.Errorf("%w: new directory already has entries", ErrInvalidInode)
	}
	if err := ino.validate(); err != nil {
		return err
	}
	parts, err := splitPath(name)
	if err != nil {
		return err
	}
	normalize(ino)
	if len(parts) == 0 {
		if !ino.Mode.IsDir() {
			return fmt.Errorf("%w: the root must be a directory", ErrNotDir)
		}
		old := t.root
		adoptChildren(ino, old)
		old.attached = false
		ino.attached = true
		t.root = ino
		return nil
	}
	dir, err := t.parentOf(parts)
	if err != nil {
		return err
	}
	base := parts[len(parts)-1]
	if old, ok := dir.children[base]; ok {
		if old.Mode.IsDir() && ino.Mode.IsDir() {
			adoptChildren(ino, old)
		}
		unlink(dir, base)
	}
	attach(dir, base, ino)
	return nil
}

// normalize applies the documented normalizations of Add.
func normalize(ino *Inode) {
	if ino.Nlink == 0 {
		ino.Nlink = 1
	}
	switch ino.Mode.Type() {
	case TypeSymlink:
		ino.Size = int64(len(ino.Target))
	case TypeChar, TypeBlock:
	default:
		ino.Rdev = 0
	}
	if len(ino.Content) == 0 {
		ino.Content = nil
	}
}

// attach adds the entry name -> ino to dir.
func attach(dir *Inode, name string, ino *Inode) {
	if dir.children == nil {
		dir.children = make(map[string]*Inode)
	}
	dir.children[name] = ino
	dir.sorted = nil
	ino.links = append(ino.links, link{dir, name})
	ino.attached = true
}

// adoptChildren moves the entries of directory from to directory to.
func adoptChildren(to, from *Inode) {
	for name, c := range from.children {
		for i := range c.links {
			if c.links[i].dir == from && c.links[i].name == name {
				c.links[i].dir = to
			}
		}
	}
	to.children, from.children = from.children, nil
	to.sorted, from.sorted = nil, nil
}

// unlink removes the entry name from dir. An inode left without names is
// detached; a detached directory's entries are unlinked recursively so that
// hard links elsewhere in the tree stay consistent.
func unlink(dir *Inode, name string) {
	ino := dir.children[name]
	delete(dir.children, name)
	dir.sorted = nil
	for i, l := range ino.links {
		if l.dir == dir && l.name == name {
			ino.links = slices.Delete(ino.links, i, i+1)
			break
		}
	}
	if len(ino.links) > 0 {
		if ino.Nlink > 1 {
			ino.Nlink--
		}
		return
	}
	ino.attached = false
	ino.links = nil
	if ino.Mode.IsDir() {
		// Iteratively, so that deep trees cannot exhaust the stack.
		stack := []*Inode{ino}
		for len(stack) > 0 {
			d := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for cname, c := range d.children {
				delete(d.children, cname)
				for i, l := range c.links {
					if l.dir == d && l.name == cname {
						c.links = slices.Delete(c.links, i, i+1)
						break
					}
				}
				if len(c.links) > 0 {
					if c.Nlink > 1 {
						c.Nlink--
					}
					continue
				}
				c.attached = false
				c.links = nil
				if c.Mode.IsDir() {
					stack = append(stack, c)
				}
			}
			d.sorted = nil
		}
	}
}

// MkdirAll creates the directory name and any missing parents, each a copy
// of the metadata of tmpl (which must be a directory; its entries and links
// are not copied). Existing directories are left alone; an existing
// non-directory component is an error.
func (t *Tree) MkdirAll(name string, tmpl Inode) error {
	if err := t.mkdirAll(name, tmpl); err != nil {
		return &fs.PathError{Op: "mkdirall", Path: name, Err: err}
	}
	return nil
}

func (t *Tree) mkdirAll(name string, tmpl Inode) error {
	if !tmpl.Mode.IsDir() {
		return fmt.Errorf("%w: template is not a directory", ErrNotDir)
	}
	tmpl.links, tmpl.children, tmpl.sorted, tmpl.attached = nil, nil, nil, false
	tmpl.Xattrs = slices.Clone(tmpl.Xattrs)
	if err := tmpl.validate(); err != nil {
		return err
	}
	parts, err := splitPath(name)
	if err != nil {
		return err
	}
	n := t.root
	for _, p := range parts {
		c, ok := n.children[p]
		if !ok {
			d := tmpl
			d.Xattrs = slices.Clone(tmpl.Xattrs)
			normalize(&d)
			attach(n, p, &d)
			c = &d
		} else if !c.Mode.IsDir() {
			return ErrNotDir
		}
		n = c
	}
	return nil
}

// Link adds name as a hard link to the inode at target, which must not be
// a directory; the inode's Nlink is incremented. An existing non-directory
// entry at name is replaced.
func (t *Tree) Link(name, target string) error {
	if err := t.link(name, target); err != nil {
		return &fs.PathError{Op: "link", Path: name, Err: err}
	}
	return nil
}

func (t *Tree) link(name, target string) error {
	tparts, err := splitPath(target)
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	ino, err := t.walkTo(tparts)
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	if ino.Mode.IsDir() {
		return fmt.Errorf("target %s: %w", target, ErrIsDir)
	}
	parts, err := splitPath(name)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return fmt.Errorf("%w: cannot replace the root by a link", ErrIsDir)
	}
	dir, err := t.parentOf(parts)
	if err != nil {
		return err
	}
	base := parts[len(parts)-1]
	if old, ok := dir.children[base]; ok {
		if old == ino {
			return nil
		}
		if old.Mode.IsDir() {
			return ErrIsDir
		}
		unlink(dir, base)
	}
	attach(dir, base, ino)
	ino.Nlink++
	return nil
}

// Remove deletes the entry at name, with everything below it if it is a
// directory. Inodes that still have other names (hard links) stay in the
// tree, with Nlink decremented; if the primary name is removed, the oldest
// remaining name becomes primary. The root cannot be removed.
func (t *Tree) Remove(name string) error {
	parts, err := splitPath(name)
	if err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	if len(parts) == 0 {
		return &fs.PathError{Op: "remove", Path: name, Err: fmt.Errorf("%w: cannot remove the root", ErrInvalidPath)}
	}
	dir, err := t.parentOf(parts)
	if err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	base := parts[len(parts)-1]
	if _, ok := dir.children[base]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	unlink(dir, base)
	return nil
}

// RemoveChildren deletes every entry of the directory at name (an opaque
// directory in an overlay), keeping the directory itself.
func (t *Tree) RemoveChildren(name string) error {
	dir, err := t.Lookup(name)
	if err != nil {
		return &fs.PathError{Op: "removechildren", Path: name, Err: errors.Unwrap(err)}
	}
	if !dir.Mode.IsDir() {
		return &fs.PathError{Op: "removechildren", Path: name, Err: ErrNotDir}
	}
	for _, n := range slices.Clone(dir.names()) {
		unlink(dir, n)
	}
	return nil
}

// WalkFunc is called by [Tree.Walk] for every name in the tree: name is the
// absolute path ("/" for the root), ino the inode, and link reports whether
// name is a secondary name (hard link) of ino rather than its primary name
// ([Inode.Path]). Returning fs.SkipDir for a directory skips its entries;
// fs.SkipAll stops the walk; any other error stops it and is returned.
type WalkFunc func(name string, ino *Inode, link bool) error

// Walk visits the root and then every entry depth first, the entries of a
// directory in byte order of their names (the order of dumpfiles). The tree
// must not be modified during the walk.
func (t *Tree) Walk(fn WalkFunc) error {
	err := fn("/", t.root, false)
	if err == fs.SkipDir || err == fs.SkipAll {
		return nil
	}
	if err != nil {
		return err
	}
	type frame struct {
		dir   *Inode
		path  string
		names []string
		i     int
	}
	stack := []frame{{dir: t.root, path: "", names: t.root.names()}}
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.i == len(f.names) {
			stack = stack[:len(stack)-1]
			continue
		}
		name := f.names[f.i]
		f.i++
		c := f.dir.children[name]
		p := f.path + "/" + name
		isLink := !c.isPrimary(f.dir, name)
		err := fn(p, c, isLink)
		if err == fs.SkipAll {
			return nil
		}
		if err == fs.SkipDir {
			continue
		}
		if err != nil {
			return err
		}
		if c.Mode.IsDir() && !isLink {
			stack = append(stack, frame{dir: c, path: p, names: c.names()})
		}
	}
	return nil
}

// Filter selects what [Tree.Filter] strips from a tree. The fields are the
// mkcomposefs options of the same names.
type Filter struct {
	// SkipXattrs removes every extended attribute.
	SkipXattrs bool
	// UserXattrs keeps only user.* extended attributes.
	UserXattrs bool
	// SkipDevices removes character and block devices, whiteouts included.
	SkipDevices bool
	// UseEpoch sets every mtime to 0.
	UseEpoch bool
}

// Filter strips what f selects from every inode of the tree.
func (t *Tree) Filter(f Filter) {
	var devices []string
	t.Walk(func(name string, ino *Inode, link bool) error {
		if typ := ino.Mode.Type(); f.SkipDevices && (typ == TypeChar || typ == TypeBlock) {
			devices = append(devices, name)
			return nil
		}
		if f.UseEpoch {
			ino.Mtime = Timespec{}
		}
		switch {
		case f.SkipXattrs:
			ino.Xattrs = nil
		case f.UserXattrs:
			ino.Xattrs = slices.DeleteFunc(ino.Xattrs, func(x Xattr) bool { return !strings.HasPrefix(x.Name, "user.") })
		}
		return nil
	})
	for _, name := range devices {
		t.Remove(name)
	}
}
