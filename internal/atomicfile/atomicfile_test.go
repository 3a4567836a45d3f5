package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	for _, tc := range []struct {
		data string
		perm os.FileMode
	}{{"first", 0o600}, {"second, replacing", 0o644}} {
		if err := WriteFile(p, []byte(tc.data), tc.perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != tc.data {
			t.Fatalf("content = %q, %v", got, err)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != tc.perm {
			t.Errorf("mode = %o, want %o", st.Mode().Perm(), tc.perm)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(ents))
	}
}

func TestAbortLeavesDestination(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("new, unfinished"); err != nil {
		t.Fatal(err)
	}
	f.Abort()
	f.Abort() // idempotent
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("destination = %q after Abort", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary file left: %d entries", len(ents))
	}
	if err := f.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}

func TestCreateInMissingDir(t *testing.T) {
	if _, err := Create(filepath.Join(t.TempDir(), "no", "f"), 0o644); err == nil {
		t.Fatal("Create in a missing directory succeeded")
	}
}

func TestPublish(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "build.tmp")
	if err := os.MkdirAll(filepath.Join(tmp, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "build")
	if err := Publish(tmp, dest); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "sub")); err != nil {
		t.Errorf("published directory: %v", err)
	}
	// A failed publish removes the temporary tree (dest is a non-empty
	// directory, which rename refuses to replace).
	tmp2 := filepath.Join(dir, "other.tmp")
	os.WriteFile(tmp2, []byte("x"), 0o644)
	if err := Publish(tmp2, dest); err == nil {
		t.Fatal("replaced a non-empty directory")
	}
	if _, err := os.Stat(tmp2); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}
	// NoSync still renames atomically.
	f, err := CreateWith(filepath.Join(dir, "nosync"), 0o600, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("data")
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "nosync")); string(b) != "data" {
		t.Errorf("content %q", b)
	}
}

func TestWriteFileWithNoSync(t *testing.T) {
	p := filepath.Join(t.TempDir(), "blob")
	if err := WriteFileWith(p, []byte("data"), 0o444, &Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "data" {
		t.Fatalf("content = %q, %v", got, err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o444 {
		t.Errorf("mode = %o, want 444", st.Mode().Perm())
	}
}
