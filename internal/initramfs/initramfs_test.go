package initramfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
)

func sample(t *testing.T, c Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf, c)
	// Added out of order, parents implied.
	for _, err := range []error{
		w.AddFile("usr/bin/tool", []byte("#!/bin/sh\n"), 0o755),
		w.AddSymlink("bin", "usr/bin"),
		w.AddCharDev("dev/console", 0o600, 5, 1),
		w.AddFile("a-b", []byte("x"), 0o644),
		w.AddDir("a", 0o700),
		w.AddFile("a/b", []byte("y"), fs.ModeSetuid|0o755),
		w.AddDir("a", 0o700), // same dir again: fine
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	want := []string{
		"a dir 700", "a/b file 755 y", "a-b file 644 x", "bin symlink 777 usr/bin",
		"dev dir 755", "dev/console chardev 600 5:1", "usr dir 755", "usr/bin dir 755", "usr/bin/tool file 755 #!/bin/sh\n",
	}
	for _, c := range []Compression{None, Gzip, Zstd} {
		t.Run(c.String(), func(t *testing.T) {
			a, b := sample(t, c), sample(t, c)
			if !bytes.Equal(a, b) {
				t.Fatal("two writes differ")
			}
			entries, err := Read(bytes.NewReader(a))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, describe(e))
			}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func describe(e Entry) string {
	s := e.Path + " " + []string{"file", "dir", "symlink", "chardev"}[e.Type] + " " + octal(uint32(e.Perm))
	switch e.Type {
	case TypeFile:
		s += " " + string(e.Data)
	case TypeSymlink:
		s += " " + e.Target
	case TypeCharDev:
		s += " " + itoa(e.Major) + ":" + itoa(e.Minor)
	}
	return s
}

func octal(v uint32) string { return fmt.Sprintf("%o", v) }

func itoa(v uint32) string { return fmt.Sprint(v) }

// TestCpioTool checks the archive with GNU cpio: listing, modes, device
// numbers, no "." entry, and zero mtimes.
func TestCpioTool(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed (Makefile DEB_PACKAGES has it)")
	}
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(sample(t, None))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itv: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	wantPrefix := []string{"drwx------", "-rwsr-xr-x", "-rw-r--r--", "lrwxrwxrwx", "drwxr-xr-x", "crw-------", "drwxr-xr-x", "drwxr-xr-x", "-rwxr-xr-x"}
	if len(lines) != len(wantPrefix) {
		t.Fatalf("cpio lists %d entries:\n%s", len(lines), out)
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, wantPrefix[i]) || !strings.Contains(l, "1970") {
			t.Errorf("line %d: %q, want mode %s and mtime 1970", i, l, wantPrefix[i])
		}
	}
	if !strings.Contains(string(out), "5,   1") && !strings.Contains(string(out), "5, 1") {
		t.Errorf("dev/console is not 5,1:\n%s", out)
	}
}

func TestWriterErrors(t *testing.T) {
	tests := []struct {
		name string
		add  func(w *Writer) error
		want error
	}{
		{"absolute", func(w *Writer) error { return w.AddFile("/init", nil, 0o755) }, ErrPath},
		{"dotdot", func(w *Writer) error { return w.AddFile("a/../b", nil, 0o755) }, ErrPath},
		{"dot", func(w *Writer) error { return w.AddDir(".", 0o755) }, ErrPath},
		{"duplicate", func(w *Writer) error { w.AddFile("x", nil, 0o644); return w.AddFile("x", nil, 0o644) }, ErrDuplicate},
		{"dir mode clash", func(w *Writer) error { w.AddDir("x", 0o755); return w.AddDir("x", 0o700) }, ErrDuplicate},
		{"file as parent", func(w *Writer) error { w.AddFile("x", nil, 0o644); w.AddFile("x/y", nil, 0o644); return w.Close() }, ErrPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf, Gzip)
			err := tt.add(w)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err2 := w.Close(); !errors.Is(err2, tt.want) {
				t.Errorf("Close after error = %v, want the sticky %v", err2, tt.want)
			}
		})
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, None)
	w.Close()
	if err := w.AddFile("x", nil, 0o644); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
}

func TestWriteBuiltin(t *testing.T) {
	var buf bytes.Buffer
	err := WriteBuiltin(&buf, Gzip, Builtin{
		Init:    []byte("\x7fELF init"),
		Modules: []Module{{"libcrc32c.ko", []byte("m1")}, {"erofs.ko", []byte("m2")}},
		Config:  initconfig.Config{Version: 1, Composefs: true, Verity: initconfig.VerityRequire, RootLabel: "root"},
	})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]Entry{}
	var order []string
	for _, e := range entries {
		byPath[e.Path] = e
		order = append(order, e.Path)
	}
	want := "dev dev/console etc etc/cfs-init.json init lib lib/modules lib/modules/erofs.ko lib/modules/libcrc32c.ko proc run sys sysroot tmp"
	if strings.Join(order, " ") != want {
		t.Errorf("entries %v\nwant %s", order, want)
	}
	if c := byPath["dev/console"]; c.Type != TypeCharDev || c.Major != 5 || c.Minor != 1 || c.Perm != 0o600 {
		t.Errorf("dev/console = %+v", c)
	}
	if e := byPath["init"]; e.Perm != 0o755 {
		t.Errorf("init mode %v", e.Perm)
	}
	cfg, err := initconfig.Parse(byPath[initconfig.Path].Data)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Modules, " ") != "libcrc32c.ko erofs.ko" || cfg.Verity != "require" || !cfg.Composefs {
		t.Errorf("config = %+v", cfg)
	}
	if err := WriteBuiltin(&buf, Gzip, Builtin{}); err == nil {
		t.Error("no init: want an error")
	}
}

func FuzzRead(f *testing.F) {
	var buf bytes.Buffer
	w := NewWriter(&buf, None)
	w.AddFile("a/b", []byte("c"), 0o644)
	w.AddCharDev("dev/console", 0o600, 5, 1)
	w.Close()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		Read(bytes.NewReader(data))
	})
}

func TestFindFile(t *testing.T) {
	archive := func(files map[string]string, c Compression) []byte {
		var b bytes.Buffer
		w := NewWriter(&b, c)
		for name, data := range files {
			if err := w.AddFile(name, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.AddDir("etc/ostree/initramfs-root-binding.key.d", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	const key = "etc/ostree/initramfs-root-binding.key"
	compressed := archive(map[string]string{key: "hidden in gzip\n", "init": "x"}, Gzip)
	plain := archive(map[string]string{key: "AAAA\n", "etc/other": "o"}, None)
	later := archive(map[string]string{key: "BBBB\n"}, None)
	pad := func(b []byte) []byte { return append(b, make([]byte, (4-len(b)%4)%4)...) }
	tests := []struct {
		name string
		data []byte
		want string
		ok   bool
	}{
		{"appended after a compressed archive", append(pad(compressed), plain...), "AAAA\n", true},
		{"the last one wins", append(pad(append(pad(compressed), plain...)), later...), "BBBB\n", true},
		{"only compressed", compressed, "", false},
		{"a directory of a longer name is not it", archive(map[string]string{"etc/x": "y"}, None), "", false},
		{"truncated in the file's data", plain[:bytes.Index(plain, []byte(key+"\x00"))+len(key)+4], "", false},
	}
	for _, tt := range tests {
		got, ok := FindFile(tt.data, key)
		if ok != tt.ok || string(got) != tt.want {
			t.Errorf("%s: FindFile = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
