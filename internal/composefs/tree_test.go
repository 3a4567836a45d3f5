package composefs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

func file(mode Mode, content string) *Inode {
	return &Inode{Mode: TypeRegular | mode, Size: int64(len(content)), Content: []byte(content)}
}

func dir(mode Mode) *Inode { return &Inode{Mode: TypeDir | mode} }

func mustAdd(t *testing.T, tr *Tree, name string, ino *Inode) {
	t.Helper()
	if err := tr.Add(name, ino); err != nil {
		t.Fatal(err)
	}
}

// dumpOf renders a tree as a dumpfile for comparisons.
func dumpOf(t *testing.T, tr *Tree) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteDumpfile(&b, tr); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestTreeBuild(t *testing.T) {
	tr := NewTree()
	mustAdd(t, tr, "/etc", dir(0o755))
	mustAdd(t, tr, "etc/hosts", file(0o644, "127.0.0.1 localhost\n"))
	mustAdd(t, tr, "/etc/../../../etc/passwd", file(0o644, "root:x:0:0::/root:/bin/sh\n"))
	mustAdd(t, tr, "/bin", &Inode{Mode: TypeSymlink | 0o777, Target: "usr/bin"})
	mustAdd(t, tr, "/dev", dir(0o755))
	mustAdd(t, tr, "/dev/null", &Inode{Mode: TypeChar | 0o666, Rdev: 0x103})
	if err := tr.Link("/etc/hosts2", "/etc/hosts"); err != nil {
		t.Fatal(err)
	}

	ino, err := tr.Lookup("/etc/passwd")
	if err != nil || string(ino.Content) != "root:x:0:0::/root:/bin/sh\n" {
		t.Fatalf("Lookup /etc/passwd = %v, %v", ino, err)
	}
	hosts, _ := tr.Lookup("/etc/hosts")
	if hosts.Nlink != 2 || hosts.Path() != "/etc/hosts" {
		t.Errorf("hosts: nlink %d path %s", hosts.Nlink, hosts.Path())
	}
	if l, _ := tr.Lookup("/bin"); l.Size != 7 {
		t.Errorf("symlink size %d, want 7", l.Size)
	}

	want := `/ 0 40755 2 0 0 0 0.0 - - -
/bin 7 120777 1 0 0 0 0.0 usr/bin - -
/dev 0 40755 1 0 0 0 0.0 - - -
/dev/null 0 20666 1 0 0 259 0.0 - - -
/etc 0 40755 1 0 0 0 0.0 - - -
/etc/hosts 20 100644 2 0 0 0 0.0 - 127.0.0.1\x20localhost\n -
/etc/hosts2 20 @100644 2 0 0 0 0.0 /etc/hosts 127.0.0.1\x20localhost\n -
/etc/passwd 26 100644 1 0 0 0 0.0 - root:x:0:0::/root:/bin/sh\n -
`
	if got := dumpOf(t, tr); got != want {
		t.Errorf("dump:\n%s\nwant:\n%s", got, want)
	}

	// Removing the primary name promotes the remaining link.
	if err := tr.Remove("/etc/hosts"); err != nil {
		t.Fatal(err)
	}
	if hosts.Nlink != 1 || hosts.Path() != "/etc/hosts2" {
		t.Errorf("after remove: nlink %d path %s", hosts.Nlink, hosts.Path())
	}
	// Opaque directory: entries go, the directory stays.
	if err := tr.RemoveChildren("/etc"); err != nil {
		t.Fatal(err)
	}
	if hosts.Path() != "" {
		t.Errorf("detached inode still has path %q", hosts.Path())
	}
	if _, err := tr.Lookup("/etc/passwd"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lookup after RemoveChildren: %v", err)
	}
	// A detached inode can be added again.
	mustAdd(t, tr, "/etc/hosts", hosts)
}

func TestTreeReplace(t *testing.T) {
	tr := NewTree()
	mustAdd(t, tr, "/usr", dir(0o755))
	mustAdd(t, tr, "/usr/lib", dir(0o755))
	mustAdd(t, tr, "/usr/lib/a", file(0o644, "a"))
	mustAdd(t, tr, "/b", file(0o600, "b"))
	if err := tr.Link("/usr/lib/b-link", "/b"); err != nil {
		t.Fatal(err)
	}

	// A directory over a directory keeps the entries (overlay merge).
	newUsr := dir(0o700)
	newUsr.UID = 7
	mustAdd(t, tr, "/usr", newUsr)
	if a, err := tr.Lookup("/usr/lib/a"); err != nil || a.Path() != "/usr/lib/a" {
		t.Fatalf("entry lost after directory replace: %v", err)
	}
	if u, _ := tr.Lookup("/usr"); u.UID != 7 || u.Mode != TypeDir|0o700 {
		t.Errorf("directory metadata not replaced")
	}
	// A file over a directory drops the subtree; hard links elsewhere stay.
	mustAdd(t, tr, "/usr", file(0o644, "x"))
	b, _ := tr.Lookup("/b")
	if b.Nlink != 1 || b.Path() != "/b" {
		t.Errorf("link count after subtree removal: %d, path %s", b.Nlink, b.Path())
	}
	// The root can be replaced and keeps its entries.
	root := dir(0o711)
	mustAdd(t, tr, "/", root)
	if tr.Root() != root {
		t.Fatal("root not replaced")
	}
	if _, err := tr.Lookup("/b"); err != nil {
		t.Fatal(err)
	}

	if err := tr.MkdirAll("/x/y/z", Inode{Mode: TypeDir | 0o750, UID: 3}); err != nil {
		t.Fatal(err)
	}
	if z, err := tr.Lookup("/x/y/z"); err != nil || z.UID != 3 || z.Mode != TypeDir|0o750 {
		t.Fatalf("MkdirAll: %v", err)
	}
}

func TestTreeErrors(t *testing.T) {
	tr := NewTree()
	mustAdd(t, tr, "/f", file(0o644, "x"))
	mustAdd(t, tr, "/d", dir(0o755))
	inTree, _ := tr.Lookup("/f")
	long := strings.Repeat("n", 256)
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"parent missing", func() error { return tr.Add("/no/such", file(0, "")) }, fs.ErrNotExist},
		{"parent not dir", func() error { return tr.Add("/f/x", file(0, "")) }, ErrNotDir},
		{"name too long", func() error { return tr.Add("/"+long, file(0, "")) }, ErrInvalidPath},
		{"NUL in name", func() error { return tr.Add("/a\x00b", file(0, "")) }, ErrInvalidPath},
		{"too deep", func() error { return tr.Add(strings.Repeat("/a", MaxDepth+1), dir(0)) }, ErrInvalidPath},
		{"inode twice", func() error { return tr.Add("/g", inTree) }, ErrInUse},
		{"bad type", func() error { return tr.Add("/g", &Inode{Mode: 0o644}) }, ErrInvalidInode},
		{"empty symlink", func() error { return tr.Add("/g", &Inode{Mode: TypeSymlink | 0o777}) }, ErrInvalidInode},
		{"long symlink", func() error {
			return tr.Add("/g", &Inode{Mode: TypeSymlink | 0o777, Target: strings.Repeat("t", 4096)})
		}, ErrInvalidInode},
		{"content size", func() error { return tr.Add("/g", &Inode{Mode: TypeRegular, Size: 5, Content: []byte("abc")}) }, ErrInvalidInode},
		{"content too big", func() error { return tr.Add("/g", file(0, strings.Repeat("c", 5001))) }, ErrInvalidInode},
		{"rdev too big", func() error { return tr.Add("/g", &Inode{Mode: TypeBlock, Rdev: 1 << 40}) }, ErrInvalidInode},
		{"nsec", func() error { return tr.Add("/g", &Inode{Mode: TypeFIFO, Mtime: Timespec{0, 1e9}}) }, ErrInvalidInode},
		{"dup xattr", func() error {
			return tr.Add("/g", &Inode{Mode: TypeFIFO, Xattrs: []Xattr{{"user.a", "1"}, {"user.a", "2"}}})
		}, ErrInvalidXattr},
		{"xattr space", func() error {
			return tr.Add("/g", &Inode{Mode: TypeFIFO, Xattrs: []Xattr{{"user.a", strings.Repeat("v", 30000)}, {"user.b", strings.Repeat("v", 3000)}}})
		}, ErrInvalidXattr},
		{"root not dir", func() error { return tr.Add("/", file(0, "")) }, ErrNotDir},
		{"link to dir", func() error { return tr.Link("/l", "/d") }, ErrIsDir},
		{"link target missing", func() error { return tr.Link("/l", "/nope") }, fs.ErrNotExist},
		{"link over dir", func() error { return tr.Link("/d", "/f") }, ErrIsDir},
		{"remove root", func() error { return tr.Remove("/") }, ErrInvalidPath},
		{"remove missing", func() error { return tr.Remove("/nope") }, fs.ErrNotExist},
		{"removechildren file", func() error { return tr.RemoveChildren("/f") }, ErrNotDir},
		{"mkdirall over file", func() error { return tr.MkdirAll("/f/x", Inode{Mode: TypeDir}) }, ErrNotDir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var pe *fs.PathError
			if !errors.As(err, &pe) {
				t.Errorf("error %v is not an *fs.PathError", err)
			}
		})
	}
	if err := inTree.SetXattr("", "x"); !errors.Is(err, ErrInvalidXattr) {
		t.Errorf("SetXattr empty name: %v", err)
	}
	if err := inTree.SetXattr("user.x", strings.Repeat("v", 65536)); !errors.Is(err, ErrInvalidXattr) {
		t.Errorf("SetXattr huge value: %v", err)
	}
}

func TestXattrs(t *testing.T) {
	ino := file(0o644, "")
	for _, x := range []Xattr{{"user.b", "1"}, {"user.a", "2"}, {"user.b", "3"}} {
		if err := ino.SetXattr(x.Name, x.Value); err != nil {
			t.Fatal(err)
		}
	}
	if v, ok := ino.Xattr("user.b"); !ok || v != "3" {
		t.Errorf("Xattr(user.b) = %q, %v", v, ok)
	}
	if len(ino.Xattrs) != 2 || ino.Xattrs[0].Name != "user.b" {
		t.Errorf("order not kept: %v", ino.Xattrs)
	}
	if !ino.RemoveXattr("user.b") || ino.RemoveXattr("user.b") {
		t.Error("RemoveXattr")
	}
}

func TestWalkSkip(t *testing.T) {
	tr := NewTree()
	mustAdd(t, tr, "/a", dir(0o755))
	mustAdd(t, tr, "/a/x", file(0, ""))
	mustAdd(t, tr, "/b", file(0, ""))
	mustAdd(t, tr, "/c", file(0, ""))
	var seen []string
	err := tr.Walk(func(name string, ino *Inode, link bool) error {
		seen = append(seen, name)
		if name == "/a" {
			return fs.SkipDir
		}
		if name == "/b" {
			return fs.SkipAll
		}
		return nil
	})
	if err != nil || strings.Join(seen, ",") != "/,/a,/b" {
		t.Errorf("walk: %v %v", seen, err)
	}
}

func TestFS(t *testing.T) {
	store := t.TempDir()
	big := bytes.Repeat([]byte("big file content\n"), 1000)
	d := fsverity.Sum(big)
	if err := os.MkdirAll(filepath.Join(store, ObjectPath(d)[:2]), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store, ObjectPath(d)), big, 0o644); err != nil {
		t.Fatal(err)
	}

	tr := NewTree()
	mustAdd(t, tr, "/usr", dir(0o755))
	mustAdd(t, tr, "/usr/lib", dir(0o755))
	mustAdd(t, tr, "/usr/lib/os-release", file(0o644, "ID=fedora\n"))
	mustAdd(t, tr, "/etc", dir(0o755))
	mustAdd(t, tr, "/etc/os-release", &Inode{Mode: TypeSymlink | 0o777, Target: "../usr/lib/os-release"})
	mustAdd(t, tr, "/etc/abs", &Inode{Mode: TypeSymlink | 0o777, Target: "/../../usr/lib/os-release"})
	mustAdd(t, tr, "/etc/loop", &Inode{Mode: TypeSymlink | 0o777, Target: "loop"})
	bigIno := &Inode{Mode: TypeRegular | 0o644, Size: int64(len(big))}
	bigIno.SetObject(d)
	mustAdd(t, tr, "/usr/lib/big", bigIno)
	mustAdd(t, tr, "/usr/lib/fifo", &Inode{Mode: TypeFIFO | 0o600})
	if err := tr.Link("/usr/lib/big-link", "/usr/lib/big"); err != nil {
		t.Fatal(err)
	}

	fsys := tr.FS(os.DirFS(store))
	for _, name := range []string{"etc/os-release", "etc/abs", "usr/lib/os-release"} {
		b, err := fs.ReadFile(fsys, name)
		if err != nil || string(b) != "ID=fedora\n" {
			t.Errorf("ReadFile(%s) = %q, %v", name, b, err)
		}
	}
	if b, err := fs.ReadFile(fsys, "usr/lib/big-link"); err != nil || !bytes.Equal(b, big) {
		t.Errorf("ReadFile(big-link): %v", err)
	}
	if _, err := fs.ReadFile(fsys, "etc/loop"); err == nil {
		t.Error("symlink loop: no error")
	}
	if target, err := fs.ReadLink(fsys, "etc/os-release"); err != nil || target != "../usr/lib/os-release" {
		t.Errorf("ReadLink = %q, %v", target, err)
	}
	st, err := fs.Stat(fsys, "usr/lib/big")
	if err != nil || st.Size() != int64(len(big)) || st.Sys().(*Inode) != bigIno {
		t.Errorf("Stat big: %v %v", st, err)
	}
	// Without a store, external content is unavailable.
	if _, err := fs.ReadFile(tr.FS(nil), "usr/lib/big"); !errors.Is(err, ErrNoContent) {
		t.Errorf("no store: %v", err)
	}

	// The loop would make fstest fail on purpose; check the rest.
	if err := tr.Remove("/etc/loop"); err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "etc/os-release", "usr/lib/os-release", "usr/lib/big", "usr/lib/fifo"); err != nil {
		t.Fatal(err)
	}
}

func TestObjectPath(t *testing.T) {
	var d [32]byte
	d[0], d[31] = 0xab, 0x01
	if got := ObjectPath(d); got != "ab/"+strings.Repeat("00", 30)+"01" {
		t.Errorf("ObjectPath = %s", got)
	}
}

func TestModeFileMode(t *testing.T) {
	tests := []struct {
		m    Mode
		want fs.FileMode
	}{
		{TypeRegular | 0o4755, fs.ModeSetuid | 0o755},
		{TypeDir | 0o1777, fs.ModeDir | fs.ModeSticky | 0o777},
		{TypeChar | 0o620, fs.ModeDevice | fs.ModeCharDevice | 0o620},
		{TypeBlock | 0o660, fs.ModeDevice | 0o660},
		{TypeSymlink | 0o777, fs.ModeSymlink | 0o777},
		{TypeFIFO | 0o2644, fs.ModeNamedPipe | fs.ModeSetgid | 0o644},
		{TypeSocket | 0o755, fs.ModeSocket | 0o755},
	}
	for _, tc := range tests {
		if got := tc.m.FileMode(); got != tc.want {
			t.Errorf("%o: %v, want %v", uint32(tc.m), got, tc.want)
		}
	}
}

func TestFilter(t *testing.T) {
	build := func() *Tree {
		tr := NewTree()
		tr.Root().Mtime = Timespec{5, 6}
		mustAdd(t, tr, "/f", &Inode{Mode: TypeRegular | 0o644, Mtime: Timespec{7, 8}, Xattrs: []Xattr{{"user.a", "1"}, {"security.selinux", "x"}}})
		mustAdd(t, tr, "/null", &Inode{Mode: TypeChar | 0o666, Rdev: 0x103})
		mustAdd(t, tr, "/wh", &Inode{Mode: TypeChar})
		mustAdd(t, tr, "/sda", &Inode{Mode: TypeBlock | 0o660, Rdev: 0x800})
		mustAdd(t, tr, "/fifo", &Inode{Mode: TypeFIFO | 0o600})
		if err := tr.Link("/f2", "/f"); err != nil {
			t.Fatal(err)
		}
		return tr
	}
	tests := []struct {
		name   string
		filter Filter
		want   string
	}{
		{"none", Filter{}, "/ 0 40755 2 0 0 0 5.6 - - -\n/f 0 100644 2 0 0 0 7.8 - - - user.a=1 security.selinux=x\n/f2 0 @100644 2 0 0 0 7.8 /f - - user.a=1 security.selinux=x\n/fifo 0 10600 1 0 0 0 0.0 - - -\n/null 0 20666 1 0 0 259 0.0 - - -\n/sda 0 60660 1 0 0 2048 0.0 - - -\n/wh 0 20000 1 0 0 0 0.0 - - -\n"},
		{"all", Filter{UserXattrs: true, SkipDevices: true, UseEpoch: true}, "/ 0 40755 2 0 0 0 0.0 - - -\n/f 0 100644 2 0 0 0 0.0 - - - user.a=1\n/f2 0 @100644 2 0 0 0 0.0 /f - - user.a=1\n/fifo 0 10600 1 0 0 0 0.0 - - -\n"},
		{"skip xattrs", Filter{SkipXattrs: true}, "/ 0 40755 2 0 0 0 5.6 - - -\n/f 0 100644 2 0 0 0 7.8 - - -\n/f2 0 @100644 2 0 0 0 7.8 /f - -\n/fifo 0 10600 1 0 0 0 0.0 - - -\n/null 0 20666 1 0 0 259 0.0 - - -\n/sda 0 60660 1 0 0 2048 0.0 - - -\n/wh 0 20000 1 0 0 0 0.0 - - -\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := build()
			tr.Filter(tc.filter)
			if got := dumpOf(t, tr); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
