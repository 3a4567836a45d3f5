package dirscan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/internal/scratchfs"
)

// memoryLimit is the peak resident memory allowed for building an image
// of a 100,000-file tree.
const memoryLimit = 300 << 20

// TestMemory100k builds a 100,000-file directory tree into an object store
// and an image in a child process and checks the child's peak resident set
// size (VmHWM), the honest measure of the build's memory.
func TestMemory100k(t *testing.T) {
	if dir := os.Getenv("CFS_MEMORY_CHILD"); dir != "" {
		memoryChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("slow: creates 100,000 files (run without -short)")
	}
	work := scratchfs.Dir(t, 4)
	src := filepath.Join(work, "src")
	files := makeTree(t, src, 1000, 100)

	cmd := exec.Command(os.Args[0], "-test.run=^TestMemory100k$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "CFS_MEMORY_CHILD="+work)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var hwm, entries, ms int64 = -1, -1, -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "peak-rss-bytes" {
			hwm, _ = strconv.ParseInt(f[1], 10, 64)
			entries, _ = strconv.ParseInt(f[2], 10, 64)
			ms, _ = strconv.ParseInt(f[3], 10, 64)
		}
	}
	if hwm < 0 {
		t.Fatalf("child did not report its peak memory:\n%s", out)
	}
	if entries != int64(files) {
		t.Fatalf("image has %d regular files, the tree %d", entries, files)
	}
	t.Logf("100,000-file tree into a store and an image in %d ms: peak RSS %.1f MiB (limit %d MiB)", ms, float64(hwm)/(1<<20), memoryLimit>>20)
	if hwm > memoryLimit {
		t.Errorf("peak RSS %d bytes exceeds %d", hwm, memoryLimit)
	}
}

// makeTree creates dirs directories of per files each, with sizes from
// empty over inline (<= 64 bytes) to a few KiB, and returns the number of
// regular files.
func makeTree(t *testing.T, root string, dirs, per int) int {
	n := 0
	buf := make([]byte, 8192)
	for d := 0; d < dirs; d++ {
		dir := filepath.Join(root, fmt.Sprintf("dir%04d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < per; f++ {
			i := d*per + f
			size := (i * 7919) % 6000
			if i%3 == 0 {
				size = i % 65
			}
			for k := 0; k < size; k++ {
				buf[k] = byte(i>>(k%24)) ^ byte(k)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%03d", f)), buf[:size], 0o644); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	return n
}

// memoryChild is the measured build: scan with an object store, write the
// image, and report VmHWM and the number of regular files in the image.
func memoryChild(t *testing.T, work string) {
	start := time.Now()
	store, err := objstore.Open(filepath.Join(work, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := Scan(context.Background(), filepath.Join(work, "src"), &Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Sync(); err != nil {
		t.Fatal(err)
	}
	img, err := os.Create(filepath.Join(work, "image.cfs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := composefs.WriteImage(img, tree, nil); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var hwm int64 = -1
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			hwm = kb << 10
		}
	}
	elapsed := time.Since(start)
	// Count the regular files of the image (after measuring the peak).
	data, err := os.ReadFile(filepath.Join(work, "image.cfs"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := composefs.ReadImage(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	back.Walk(func(name string, ino *composefs.Inode, link bool) error {
		if ino.Mode.IsRegular() {
			files++
		}
		return nil
	})
	fmt.Printf("peak-rss-bytes %d %d %d\n", hwm, files, elapsed.Milliseconds())
}
