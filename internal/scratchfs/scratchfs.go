// Package scratchfs gives benchmarks and tests a scratch directory on a
// freshly made filesystem, so that what they measure is their own code
// and not the state other jobs left a shared filesystem in.
package scratchfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Dir returns an empty directory on a freshly made ext4 filesystem
// (a loop-mounted sparse file of sizeGiB) for benchmark and test output,
// or, without root or mkfs.ext4, a new directory under $CFS_BENCH_DIR or
// /var/tmp. A fresh filesystem keeps the measurement about this code: on
// the shared build machines other test runs delete thousands of files at a
// time, and ext4 then makes every file creation in the affected block
// groups scan past the inodes deleted in the last minutes (fs/ext4/ialloc.c
// recently_deleted), which can slow creation down tenfold. Unmounting also
// spares the neighbours the reverse effect of deleting our files.
func Dir(tb testing.TB, sizeGiB int64) string {
	if dir, ok := freshExt4(tb, sizeGiB); ok {
		return dir
	}
	parent := os.Getenv("CFS_BENCH_DIR")
	if parent == "" {
		parent = "/var/tmp"
	}
	dir, err := os.MkdirTemp(parent, "cfs-scratch-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// freshExt4 makes and mounts an ext4 filesystem on a sparse file.
func freshExt4(tb testing.TB, sizeGiB int64) (string, bool) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil || os.Geteuid() != 0 {
		return "", false
	}
	work, err := os.MkdirTemp("", "cfs-scratch-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(work) })
	img := filepath.Join(work, "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(img, sizeGiB<<30); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		tb.Logf("mkfs.ext4: %v: %s", err, out)
		return "", false
	}
	mnt := filepath.Join(work, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		tb.Fatal(err)
	}
	// Direct I/O on the loop device: writes reach the disk once, not
	// through a second page cache.
	out, err := exec.Command("losetup", "--find", "--show", "--direct-io=on", img).Output()
	if err != nil {
		tb.Logf("losetup: %v", err)
		return "", false
	}
	dev := strings.TrimSpace(string(out))
	tb.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	if out, err := exec.Command("mount", dev, mnt).CombinedOutput(); err != nil {
		tb.Logf("mount: %v: %s", err, out)
		return "", false
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt, true
}
