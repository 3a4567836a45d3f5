package dirscan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
)

// TestKernelMount checks the images against the kernel: each golden tree
// is scanned into an object store and an image, the image is loop-mounted
// as EROFS, overlayfs stacks it with the store as a data-only lower layer
// (the composefs mount), and every file's type, mode, owner, size, mtime,
// device number, link target, extended attributes and content is compared
// with the source tree.
func TestKernelMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	for _, fsys := range []string{"erofs", "overlay"} {
		if !kernelHasFS(fsys) {
			t.Skipf("the kernel has no %s filesystem (not in /proc/filesystems, modprobe %s failed)", fsys, fsys)
		}
	}
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skip("mount(8) not installed")
	}
	dir := goldenTrees(t)
	trees := []string{"t1-mixed", "t3-xattrs", "t4-dirs", "t5-special", "t6-ids-times", "t7-sizes"}
	for _, name := range trees {
		for _, version := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s/v%d", name, version), func(t *testing.T) {
				mountAndCompare(t, filepath.Join(dir, name), version)
			})
		}
	}
}

// kernelHasFS reports whether the kernel supports a filesystem type,
// loading its module if needed.
func kernelHasFS(name string) bool {
	has := func() bool {
		data, err := os.ReadFile("/proc/filesystems")
		if err != nil {
			return false
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == name {
				return true
			}
		}
		return false
	}
	if has() {
		return true
	}
	exec.Command("modprobe", name).Run()
	return has()
}

func mountAndCompare(t *testing.T, src string, version int) {
	work := t.TempDir()
	store, err := objstore.Open(filepath.Join(work, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tree, err := Scan(context.Background(), src, &Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Sync(); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(work, "image.cfs")
	var buf bytes.Buffer
	opts := &composefs.WriteOptions{MinVersion: version, MaxVersion: 1}
	if err := composefs.WriteImage(&buf, tree, opts); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	imageVersion := int(buf.Bytes()[12])

	erofsMnt := filepath.Join(work, "erofs")
	mnt := filepath.Join(work, "mnt")
	for _, d := range []string{erofsMnt, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount(t, "-t", "erofs", "-o", "ro,loop", img, erofsMnt)
	mount(t, "-t", "overlay", "overlay", "-o",
		"ro,lowerdir="+erofsMnt+"::"+store.Root()+",metacopy=on,redirect_dir=on", mnt)

	compareTrees(t, src, mnt, imageVersion)
}

func mount(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("mount", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mount %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	target := args[len(args)-1]
	t.Cleanup(func() {
		if err := unix.Unmount(target, 0); err != nil {
			t.Errorf("unmounting %s: %v", target, err)
		}
	})
}

// fileState is what the comparison looks at for one path.
type fileState struct {
	Mode   uint32
	UID    uint32
	GID    uint32
	Size   int64
	Mtime  unix.Timespec
	Rdev   uint64
	Target string
	Xattrs string
	Hash   string
}

// expectedState returns the state of a source path as the composefs mount
// must show it. An overlay whiteout (character device 0:0) appears as an
// empty regular file carrying the unescaped whiteout attributes, so that
// an overlay stacked on top treats it as a whiteout; its directory carries
// the matching markers.
func expectedState(t *testing.T, p string, version int) fileState {
	st := state(t, p)
	if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
		st.Mode = unix.S_IFREG | st.Mode&0o7777
		st.Rdev = 0
		st.Hash = fmt.Sprintf("%x", sha256.Sum256(nil))
		st.Xattrs = addXattrs(st.Xattrs, "trusted.overlay.whiteout=\"\"", "user.overlay.whiteout=\"\"")
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		ents, err := os.ReadDir(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			var cs unix.Stat_t
			if err := unix.Lstat(filepath.Join(p, e.Name()), &cs); err != nil {
				t.Fatal(err)
			}
			if cs.Mode&unix.S_IFMT == unix.S_IFCHR && cs.Rdev == 0 {
				st.Xattrs = addXattrs(st.Xattrs, "trusted.overlay.whiteouts=\"\"", "user.overlay.whiteouts=\"\"")
				if version >= 1 {
					st.Xattrs = addXattrs(st.Xattrs, "trusted.overlay.opaque=\"x\"", "user.overlay.opaque=\"x\"")
				}
				break
			}
		}
	}
	return st
}

func addXattrs(list string, add ...string) string {
	items := strings.Fields(list)
	items = append(items, add...)
	slices.Sort(items)
	items = slices.Compact(items)
	return strings.Join(items, " ")
}

// state reads the state of a path (not following symlinks).
func state(t *testing.T, p string) fileState {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	s := fileState{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Mtime: st.Mtim}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		s.Size = st.Size
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		f.Close()
		s.Hash = fmt.Sprintf("%x", h.Sum(nil))
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			t.Fatal(err)
		}
		s.Target = target
		s.Size = st.Size
	case unix.S_IFCHR, unix.S_IFBLK:
		s.Rdev = st.Rdev
	}
	var items []string
	names := make([]byte, 1<<16)
	n, err := unix.Llistxattr(p, names)
	if err != nil {
		t.Fatalf("listing xattrs of %s: %v", p, err)
	}
	for _, name := range strings.Split(string(names[:n]), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 1<<16)
		vn, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			t.Fatalf("reading xattr %s of %s: %v", name, p, err)
		}
		items = append(items, fmt.Sprintf("%s=%q", name, val[:vn]))
	}
	slices.Sort(items)
	s.Xattrs = strings.Join(items, " ")
	return s
}

// compareTrees walks the source tree and the mounted tree together.
func compareTrees(t *testing.T, src, mnt string, version int) {
	t.Helper()
	checked := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		m := filepath.Join(mnt, rel)
		want := expectedState(t, p, version)
		got := state(t, m)
		if want != got {
			t.Errorf("%s differs:\nsource %+v\nmount  %+v", rel, want, got)
		}
		if d.IsDir() {
			names := func(dir string) []string {
				ents, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				var out []string
				for _, e := range ents {
					out = append(out, e.Name())
				}
				return out
			}
			if a, b := names(p), names(m); !slices.Equal(a, b) {
				t.Errorf("%s: entries differ:\nsource %q\nmount  %q", rel, a, b)
			}
		}
		checked++
		return nil
	})
	if err != nil && !errors.Is(err, fs.SkipAll) {
		t.Fatal(err)
	}
	if checked < 2 {
		t.Fatalf("only %d files compared", checked)
	}
	t.Logf("%d files compared", checked)
}
