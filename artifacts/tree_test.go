package artifacts

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTreeDigest checks that what a root file system keeps of a file
// (owner, extended attributes, hard links) is part of a tree's digest.
func TestTreeDigest(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING: chown and trusted.* attributes need root")
	}
	build := func(t *testing.T, change func(dir string)) Digest {
		dir := t.TempDir()
		for _, f := range []string{"a", "b"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("content"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if change != nil {
			change(dir)
		}
		d, _, err := TreeDigest(dir)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	base := build(t, nil)
	if again := build(t, nil); again != base {
		t.Fatalf("same tree, digests %s and %s", base, again)
	}
	tests := []struct {
		name   string
		change func(dir string)
	}{
		{"owner", func(dir string) { must(t, os.Lchown(filepath.Join(dir, "a"), 1, 2)) }},
		{"xattr", func(dir string) {
			must(t, unix.Lsetxattr(filepath.Join(dir, "a"), "trusted.test", []byte("v"), 0))
		}},
		{"hard link", func(dir string) {
			must(t, os.Remove(filepath.Join(dir, "b")))
			must(t, os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := build(t, tc.change); d == base {
				t.Errorf("digest unchanged by a %s change", tc.name)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
