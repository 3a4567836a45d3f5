package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	cfs "github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
)

// materialize writes tree as a real directory tree at dst (which must not
// exist): regular files (inline content, or copied from the object store),
// directories, symlinks, device nodes, fifos, sockets and hard links, with
// owners, modes, extended attributes and modification times. It needs root
// for owners and device nodes, as mkfs.ext4 -d does to keep them.
func materialize(tree *cfs.Tree, objects *objstore.Store, dst string) error {
	type dirTime struct {
		path string
		t    cfs.Timespec
	}
	var dirs []dirTime
	type hardlink struct{ name, target string }
	var links []hardlink
	err := tree.Walk(func(name string, ino *cfs.Inode, link bool) error {
		p := filepath.Join(dst, filepath.FromSlash(name))
		if name == "" || name == "/" || name == "." {
			p = dst
		}
		if link {
			// The primary name may come later in the walk: link at the end.
			links = append(links, hardlink{p, filepath.Join(dst, filepath.FromSlash(ino.Path()))})
			return nil
		}
		if err := create(p, ino, objects); err != nil {
			return fmt.Errorf("materializing %s: %w", name, err)
		}
		if err := setMeta(p, ino); err != nil {
			return fmt.Errorf("materializing %s: %w", name, err)
		}
		if ino.Mode.IsDir() {
			dirs = append(dirs, dirTime{p, ino.Mtime})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, l := range links {
		if err := os.Link(l.target, l.name); err != nil {
			return fmt.Errorf("materializing hard link %s: %w", l.name, err)
		}
	}
	// Directory times last, deepest first: creating entries changed them.
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i].path) > len(dirs[j].path) })
	for _, d := range dirs {
		if err := setTime(d.path, d.t); err != nil {
			return fmt.Errorf("materializing %s: %w", d.path, err)
		}
	}
	return nil
}

func create(p string, ino *cfs.Inode, objects *objstore.Store) error {
	perm := uint32(ino.Mode & (cfs.PermMask | cfs.ModeSetuid | cfs.ModeSetgid | cfs.ModeSticky))
	switch ino.Mode.Type() {
	case cfs.TypeDir:
		if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	case cfs.TypeRegular:
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		err = writeContent(f, ino, objects)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case cfs.TypeSymlink:
		return os.Symlink(ino.Target, p)
	case cfs.TypeChar, cfs.TypeBlock, cfs.TypeFIFO, cfs.TypeSocket:
		if err := unix.Mknod(p, uint32(ino.Mode.Type())|perm, int(ino.Rdev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
	default:
		return fmt.Errorf("unsupported file type %o", ino.Mode.Type())
	}
	return nil
}

func writeContent(f *os.File, ino *cfs.Inode, objects *objstore.Store) error {
	if ino.Size == 0 {
		return nil
	}
	if len(ino.Content) > 0 || ino.Digest == nil {
		if int64(len(ino.Content)) != ino.Size {
			return fmt.Errorf("no content for %d bytes (no inline content and no object digest)", ino.Size)
		}
		_, err := f.Write(ino.Content)
		return err
	}
	obj, err := objects.Open(*ino.Digest)
	if err != nil {
		return fmt.Errorf("object %x: %w", ino.Digest[:], err)
	}
	defer obj.Close()
	n, err := io.Copy(f, obj)
	if err != nil {
		return err
	}
	if n != ino.Size {
		return fmt.Errorf("object %x has %d bytes, the tree says %d", ino.Digest[:], n, ino.Size)
	}
	return nil
}

// setMeta applies owner, mode, xattrs and (for non-directories) mtime.
func setMeta(p string, ino *cfs.Inode) error {
	if err := unix.Lchown(p, int(ino.UID), int(ino.GID)); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if ino.Mode.Type() != cfs.TypeSymlink {
		perm := uint32(ino.Mode & (cfs.PermMask | cfs.ModeSetuid | cfs.ModeSetgid | cfs.ModeSticky))
		// chmod after chown: chown clears setuid/setgid bits.
		if err := unix.Fchmodat(unix.AT_FDCWD, p, perm, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	for _, x := range ino.Xattrs {
		if err := unix.Lsetxattr(p, x.Name, []byte(x.Value), 0); err != nil {
			return fmt.Errorf("setting xattr %s: %w", x.Name, err)
		}
	}
	if !ino.Mode.IsDir() {
		return setTime(p, ino.Mtime)
	}
	return nil
}

func setTime(p string, t cfs.Timespec) error {
	ts := unix.Timespec{Sec: t.Sec, Nsec: int64(t.Nsec)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
