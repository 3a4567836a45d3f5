package composedir

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/debugfs"
)

// TestResolve follows ostree=-style paths through symbolic links inside an
// ext4 image: relative and absolute links, ".." that would leave the file
// system (it stays at the root, as in a chroot), missing components and
// loops.
func TestResolve(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install e2fsprogs (make deps)", tool)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"ostree/boot.1.1/os/abc", "ostree/deploy/os/deploy/c0ffee.0", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"ostree/boot.1":            "boot.1.1",
		"ostree/boot.1.1/os/abc/0": "../../../deploy/os/deploy/c0ffee.0",
		"ostree/abs":               "/ostree/deploy",
		"ostree/escape":            "../../../../../etc",
		"ostree/loop1":             "loop2",
		"ostree/loop2":             "loop1",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "fs.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", root, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	dfs := debugfs.Open(img, 0)
	tests := []struct{ path, want, err string }{
		{"/ostree/boot.1/os/abc/0", "/ostree/deploy/os/deploy/c0ffee.0", ""},
		{"/ostree/abs/os", "/ostree/deploy/os", ""},
		{"/ostree/escape", "/etc", ""},
		{"/ostree/boot.1/os/nope/0", "", "/ostree/boot.1.1/os/nope does not exist"},
		{"/ostree/loop1", "", "more than 40 symbolic links"},
		{"/ostree/deploy/os/deploy/c0ffee.0/x", "", "does not exist"},
	}
	for _, tt := range tests {
		got, err := resolve(context.Background(), dfs, tt.path)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("resolve(%s) = %q, %v; want an error with %q", tt.path, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolve(%s) = %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
}
