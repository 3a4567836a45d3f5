package debugfs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// image makes a 16 MiB ext4 file system at offset 1 MiB of a file,
// populated from a tree with mkfs.ext4 -d.
func image(t *testing.T) (string, int64) {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install e2fsprogs (make deps)", tool)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	files := map[string]string{
		"composefs/objects/ab/cdef":  "hello\n",
		"composefs/objects/ab/0123":  strings.Repeat("x", 10000),
		"composefs/objects/cd/4567":  "",
		"composefs/images/deadbeef":  "image bytes",
		"state/os/default/var/.keep": "",
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("deadbeef", filepath.Join(root, "composefs/images/fast")); err != nil {
		t.Fatal(err)
	}
	long := "../objects/ab/" + strings.Repeat("0", 80)
	if err := os.Symlink(long, filepath.Join(root, "composefs/images/slow")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mkfs.ext4", "-q", "-E", "offset=1048576", "-d", root, img, "16M").CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	return img, 1 << 20
}

func TestFS(t *testing.T) {
	ctx := context.Background()
	img, off := image(t)
	fs := Open(img, off)

	dirs, err := fs.ReadDirs(ctx, []string{"/composefs/objects/ab", "/composefs/objects/cd", "/composefs/objects/ef", "/composefs/images/deadbeef", "/composefs/images"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, e := range dirs["/composefs/objects/ab"] {
		if !e.IsRegular() || e.Mode&0o777 != 0o644 {
			t.Errorf("entry %+v: want a 0644 regular file", e)
		}
		got[e.Name] = e.Size
	}
	if len(got) != 2 || got["cdef"] != 6 || got["0123"] != 10000 {
		t.Errorf("ab entries: %v", got)
	}
	if es := dirs["/composefs/objects/cd"]; len(es) != 1 || es[0].Name != "4567" || es[0].Size != 0 {
		t.Errorf("cd entries: %+v", es)
	}
	for _, missing := range []string{"/composefs/objects/ef", "/composefs/images/deadbeef"} {
		if _, ok := dirs[missing]; ok {
			t.Errorf("%s listed although it is not a directory", missing)
		}
	}
	kinds := map[string]string{}
	for _, e := range dirs["/composefs/images"] {
		switch {
		case e.IsRegular():
			kinds[e.Name] = "file"
		case e.IsSymlink():
			kinds[e.Name] = "link"
		case e.IsDir():
			kinds[e.Name] = "dir"
		}
	}
	if kinds["deadbeef"] != "file" || kinds["fast"] != "link" || kinds["slow"] != "link" || len(kinds) != 3 {
		t.Errorf("images: %v", kinds)
	}

	one, err := fs.ReadDirs(ctx, []string{"/composefs/objects/cd"})
	if err != nil || len(one["/composefs/objects/cd"]) != 1 {
		t.Errorf("single directory: %v, %v", one, err)
	}

	var buf bytes.Buffer
	if err := fs.ReadFile(ctx, "/composefs/objects/ab/0123", &buf); err != nil || buf.String() != strings.Repeat("x", 10000) {
		t.Errorf("ReadFile: %d bytes, %v", buf.Len(), err)
	}
	if err := fs.ReadFile(ctx, "/composefs/objects/ab/nope", &buf); !errors.Is(err, ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
	for name, want := range map[string]string{"fast": "deadbeef", "slow": "../objects/ab/" + strings.Repeat("0", 80)} {
		if got, err := fs.Readlink(ctx, "/composefs/images/"+name); err != nil || got != want {
			t.Errorf("Readlink %s = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := fs.Readlink(ctx, "/composefs/images/deadbeef"); err == nil || !strings.Contains(err.Error(), "not a symbolic link") {
		t.Errorf("Readlink of a file: %v", err)
	}
	if _, err := fs.Readlink(ctx, "/nope"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Readlink of a missing file: %v", err)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	img, off := image(t)
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, bytes.Repeat([]byte{0x5a}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		fs   *FS
		path string
		want string
		is   error
	}{
		{"not ext4", Open(junk, 0), "/", "Bad magic number", nil},
		{"wrong offset", Open(img, 4096), "/", "while trying to open", nil},
		{"missing image", Open(filepath.Join(t.TempDir(), "nope"), 0), "/", "No such file", nil},
		{"relative path", Open(img, off), "composefs", "", ErrPath},
		{"space in path", Open(img, off), "/a b", "", ErrPath},
		{"quote in path", Open(img, off), "/a\"b", "", ErrPath},
		{"newline in path", Open(img, off), "/a\nls -p /", "", ErrPath},
		{"missing tool", &FS{image: img, offset: off, Tool: "/nonexistent/debugfs"}, "/", "no such file", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.fs.ReadDirs(ctx, []string{tc.path})
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestParseListing(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  map[string]int // dir -> entries
		error string
	}{
		{"empty", "", map[string]int{}, ""},
		{"two dirs, one missing", "debugfs: ls -p /a\n/2/040755/0/0/.//\n/2/040755/0/0/..//\n/12/100644/0/0/x/3/\n\ndebugfs: ls -p /b\n", map[string]int{"/a": 1}, ""},
		{"empty dir", "debugfs: ls -p /a\n/2/040755/0/0/.//\n/2/040755/0/0/..//\n", map[string]int{"/a": 0}, ""},
		{"entry before command", "/2/040755/0/0/.//\n", nil, "entry before any command"},
		{"other command", "debugfs: cat /x\n", nil, "command"},
		{"bad mode", "debugfs: ls -p /a\n/2/0999/0/0/x/1/\n", nil, "line 2"},
		{"too few fields", "debugfs: ls -p /a\n/2/040755/0/x//\n", nil, "fields"},
		{"negative size", "debugfs: ls -p /a\n/2/0100644/0/0/x/-1/\n", nil, "bad size"},
		{"empty name", "debugfs: ls -p /a\n/2/0100644/0/0//1/\n", nil, "empty name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseListing(strings.NewReader(tc.in))
			if tc.error != "" {
				if !errors.Is(err, ErrOutput) || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("err = %v, want ErrOutput mentioning %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for d, n := range tc.want {
				if es, ok := got[d]; !ok || len(es) != n {
					t.Errorf("%s: %v, want %d entries", d, es, n)
				}
			}
		})
	}
}

func FuzzParseListing(f *testing.F) {
	f.Add([]byte("debugfs: ls -p /a\n/2/040755/0/0/.//\n/2/040755/0/0/..//\n/12/100644/0/0/x/3/\n"))
	f.Add([]byte("debugfs: ls -p /b\n\ndebugfs: ls -p /c\n/1/1/1/1/1/1/\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseListing(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrOutput) {
				t.Fatalf("error %v does not wrap ErrOutput", err)
			}
			return
		}
		for d, es := range m {
			if d == "" {
				t.Fatal("empty directory name")
			}
			for _, e := range es {
				if e.Name == "" || e.Name == "." || e.Name == ".." || e.Size < 0 {
					t.Fatalf("bad entry %+v", e)
				}
			}
		}
	})
}

func TestDumpFiles(t *testing.T) {
	ctx := context.Background()
	img, off := image(t)
	fsys := Open(img, off)
	dest := t.TempDir()
	names := []string{"/composefs/objects/ab/cdef", "/composefs/objects/ab/0123", "/composefs/objects/cd/4567", "/composefs/images/deadbeef"}
	if err := fsys.DumpFiles(ctx, names, dest); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"composefs/objects/ab/cdef": "hello\n", "composefs/objects/ab/0123": strings.Repeat("x", 10000),
		"composefs/objects/cd/4567": "", "composefs/images/deadbeef": "image bytes"} {
		if got, err := os.ReadFile(filepath.Join(dest, name)); err != nil || string(got) != want {
			t.Errorf("%s: %d bytes, %v", name, len(got), err)
		}
	}
	if err := fsys.DumpFiles(ctx, []string{"/composefs/objects/ab/cdef", "/composefs/objects/ab/nope"}, t.TempDir()); !errors.Is(err, ErrNotExist) {
		t.Errorf("DumpFiles with a missing file: %v", err)
	}
	if err := fsys.DumpFiles(ctx, []string{"/a b"}, dest); !errors.Is(err, ErrPath) {
		t.Errorf("DumpFiles of a name with a space: %v", err)
	}
}
