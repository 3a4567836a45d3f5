package sysroot

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/ostree"
)

// checkout writes the tree at root to dest as libostree's
// ostree_repo_checkout_at does for a bare repository. Files are hard
// links to their content objects (empty regular files excepted: those
// are copied as libostree does), or with copy new files with the
// object's content, owner, mode and attributes. Directories get their
// attributes when created and their mode and owner after their entries;
// unless copy, their mtime is then set to 0. With existing, dest exists
// and keeps its own metadata.
func (d *deployer) checkout(root ostree.Root, dest string, copy, existing bool) error {
	objects := d.path(RepoDir + "/objects")
	type dirDone struct {
		p    string
		meta *ostree.DirMeta
	}
	var dirs []dirDone
	err := d.repo.Walk(root, func(e *ostree.Entry) error {
		p := filepath.Join(dest, filepath.FromSlash(e.Path))
		if e.Meta != nil {
			if e.Path == "/" && existing {
				return nil
			}
			if err := unix.Mkdir(p, 0o700); err != nil {
				return fmt.Errorf("sysroot: checkout: mkdir %s: %w", p, err)
			}
			if err := setXattrs(p, e.Meta.Xattrs); err != nil {
				return err
			}
			dirs = append(dirs, dirDone{p, e.Meta})
			return nil
		}
		if strings.HasPrefix(path.Base(e.Path), ".ostree-wh.") {
			return fmt.Errorf("sysroot: %w: overlayfs whiteout %s", ErrUnsupported, e.Path)
		}
		// Empty regular files are copied, never linked (libostree avoids
		// EMLINK on the one empty object).
		if !copy && !(e.File.Mode&unix.S_IFMT == unix.S_IFREG && e.Size == 0) {
			obj := filepath.Join(objects, filepath.FromSlash(strings.TrimPrefix(ostree.ObjectPath(e.FileSum, ostree.ObjectFile), "objects/")))
			if err := unix.Linkat(unix.AT_FDCWD, obj, unix.AT_FDCWD, p, 0); err != nil {
				return fmt.Errorf("sysroot: checkout: linking %s: %w", p, err)
			}
			return nil
		}
		if !copy {
			d.copied = append(d.copied, p)
		}
		return d.copyObject(e, p)
	})
	if err != nil {
		return err
	}
	for _, dd := range slices.Backward(dirs) {
		if err := unix.Chmod(dd.p, dd.meta.Mode&0o7777); err != nil {
			return fmt.Errorf("sysroot: checkout: %w", err)
		}
		if err := unix.Lchown(dd.p, int(dd.meta.UID), int(dd.meta.GID)); err != nil {
			return fmt.Errorf("sysroot: checkout: %w", err)
		}
		// chown clears set-id bits; set the mode again.
		if err := unix.Chmod(dd.p, dd.meta.Mode&0o7777); err != nil {
			return fmt.Errorf("sysroot: checkout: %w", err)
		}
		if !copy {
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, dd.p, []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {}}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("sysroot: checkout: %w", err)
			}
		}
	}
	return nil
}

// copyObject writes a copy of the content object of e at p: a symbolic
// link, or a regular file with the object's content; then owner,
// attributes and mode.
func (d *deployer) copyObject(e *ostree.Entry, p string) error {
	h := e.File
	if h.Mode&unix.S_IFMT == unix.S_IFLNK {
		if err := os.Symlink(h.Target, p); err != nil {
			return fmt.Errorf("sysroot: checkout: %w", err)
		}
		if err := unix.Lchown(p, int(h.UID), int(h.GID)); err != nil {
			return fmt.Errorf("sysroot: checkout: %w", err)
		}
		return setXattrs(p, h.Xattrs)
	}
	src, err := d.repo.OpenFile(e.FileSum)
	if err != nil {
		return fmt.Errorf("sysroot: checkout: %w", err)
	}
	defer src.Close()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sysroot: checkout: %w", err)
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return fmt.Errorf("sysroot: checkout: copying %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sysroot: checkout: %w", err)
	}
	if err := unix.Lchown(p, int(h.UID), int(h.GID)); err != nil {
		return fmt.Errorf("sysroot: checkout: %w", err)
	}
	if err := setXattrs(p, h.Xattrs); err != nil {
		return err
	}
	if err := unix.Chmod(p, h.Mode&0o7777); err != nil {
		return fmt.Errorf("sysroot: checkout: %w", err)
	}
	return nil
}

// setXattrs sets extended attributes on p without following a symbolic
// link.
func setXattrs(p string, xs []ostree.Xattr) error {
	for _, x := range xs {
		if err := unix.Lsetxattr(p, x.Name, []byte(x.Value), 0); err != nil {
			return fmt.Errorf("sysroot: checkout: attribute %s of %s: %w", x.Name, p, err)
		}
	}
	return nil
}

// lookup finds the entry at the slash-separated path rel (no leading
// slash) in the tree at root: a directory (its Root, isDir) or a file.
func (d *deployer) lookup(root ostree.Root, rel string) (r ostree.Root, isDir, found bool, err error) {
	r = root
	parts := strings.Split(rel, "/")
	for i, name := range parts {
		t, err := d.repo.ReadDirTree(r.Contents)
		if err != nil {
			return r, false, false, fmt.Errorf("sysroot: %w", err)
		}
		if i == len(parts)-1 && slices.ContainsFunc(t.Files, func(f ostree.TreeFile) bool { return f.Name == name }) {
			return r, false, true, nil
		}
		j := slices.IndexFunc(t.Dirs, func(sd ostree.TreeDir) bool { return sd.Name == name })
		if j < 0 {
			return r, false, false, nil
		}
		r = ostree.Root{Contents: t.Dirs[j].Contents, Meta: t.Dirs[j].Meta}
	}
	return r, true, true, nil
}

// prepareEtc makes the deployment's etc a copy of its usr/etc
// (prepare_deployment_etc).
func (d *deployer) prepareEtc(root ostree.Root, depDir string) error {
	etc, etcDir, etcFound, err := d.lookup(root, "etc")
	if err != nil {
		return err
	}
	usrEtc, usrEtcDir, usrEtcFound, err := d.lookup(root, "usr/etc")
	if err != nil {
		return err
	}
	if etcFound {
		if !etcDir {
			return fmt.Errorf("sysroot: %w: the commit's /etc is not a directory", ErrUnsupported)
		}
		t, err := d.repo.ReadDirTree(etc.Contents)
		if err != nil {
			return fmt.Errorf("sysroot: %w", err)
		}
		if len(t.Files)+len(t.Dirs) > 0 {
			return fmt.Errorf("sysroot: %w: the commit has a populated /etc (ostree moves it to /usr/etc; commit it there)", ErrUnsupported)
		}
		if usrEtcFound {
			if err := unix.Rmdir(d.path(depDir + "/etc")); err != nil {
				return fmt.Errorf("sysroot: removing the empty etc: %w", err)
			}
		}
	}
	if !usrEtcFound {
		return nil
	}
	if !usrEtcDir {
		return fmt.Errorf("sysroot: %w: the commit's /usr/etc is not a directory", ErrUnsupported)
	}
	return d.checkout(usrEtc, d.path(depDir+"/etc"), true, false)
}

// prepareVar fills the empty stateroot var from the commit's /var
// (prepare_deployment_var).
func (d *deployer) prepareVar(root ostree.Root, depDir, varDir string) error {
	v, isDir, found, err := d.lookup(root, "var")
	if err != nil || !found || !isDir {
		return err
	}
	ents, err := os.ReadDir(d.path(varDir))
	if err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	if len(ents) > 0 {
		return nil
	}
	if err := d.checkout(v, d.path(varDir), true, true); err != nil {
		return err
	}
	if _, err := os.Lstat(d.path(depDir + "/usr/lib/tmpfiles.d")); err == nil {
		return nil
	}
	// _ostree_sysroot_stateroot_legacy_var_init: directories are kept if
	// present, created 0777 under umask 022.
	for _, s := range []struct {
		name string
		mode uint32
	}{{"tmp", 0o755}, {"lib", 0o755}, {"log", 0o755}} {
		if err := mkdir(d.path(varDir+"/"+s.name), s.mode); err != nil {
			return err
		}
		if s.name == "tmp" {
			if err := unix.Chmod(d.path(varDir+"/tmp"), 0o1777); err != nil {
				return fmt.Errorf("sysroot: %w", err)
			}
		}
	}
	for _, l := range []struct{ name, target string }{{"run", "../run"}, {"lock", "../run/lock"}} {
		if _, err := os.Lstat(d.path(varDir + "/" + l.name)); err == nil {
			continue
		}
		if err := os.Symlink(l.target, d.path(varDir+"/"+l.name)); err != nil {
			return fmt.Errorf("sysroot: %w", err)
		}
	}
	return nil
}

// stamp sets the access and modification times of everything in the
// sysroot whose time ostree takes from the clock to when: all but the
// content objects, the files hard-linked to them and the checkout's
// directories (mtime 0); the checkout's copies of empty files are
// stamped too. The deployment directory itself and its etc
// are stamped (ostree changes them after the checkout).
func (d *deployer) stamp(depDir string, when time.Time) error {
	ts := unix.NsecToTimespec(when.UnixNano())
	times := []unix.Timespec{ts, ts}
	depDir = filepath.ToSlash(depDir)
	for _, p := range d.copied {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("sysroot: setting the time of %s: %w", p, err)
		}
	}
	return filepath.WalkDir(d.sysroot, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(d.sysroot, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		inEtc := rel == depDir+"/etc" || strings.HasPrefix(rel, depDir+"/etc/")
		switch {
		case inEtc || rel == depDir || rel == depDir+"/"+ComposefsFile:
			// Written after the checkout: stamp.
		case strings.HasPrefix(rel, depDir+"/"):
			if de.IsDir() {
				return fs.SkipDir
			}
			return nil
		case !de.IsDir():
			if strings.HasPrefix(rel, RepoDir+"/objects/") && path.Ext(rel) == ".file" {
				return nil
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			if st.Nlink > 1 {
				return nil // a hard link to a content object (kernel in /boot)
			}
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("sysroot: setting the time of %s: %w", p, err)
		}
		return nil
	})
}
