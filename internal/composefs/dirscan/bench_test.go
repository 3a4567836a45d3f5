package dirscan

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/internal/scratchfs"
)

// BenchmarkCreateT8 builds the golden t8-large tree (5,000 files, ~50 MB)
// into a fresh object store plus an image, durably (the store synced, the
// image fsynced), and compares with sha256sum(1) over the same files,
// measured in the same run (warm page cache for both):
//
//	x-sha256sum         full build time / sha256sum time
//	x-sha256sum-nosync  the same without the final sync (CPU-bound part)
//	sync-ms             time of the one store sync
func BenchmarkCreateT8(b *testing.B) {
	src := filepath.Join(goldenTrees(b), "t8-large")
	sha256sum, err := exec.LookPath("sha256sum")
	if err != nil {
		b.Fatalf("sha256sum not found: %v", err)
	}
	var files []string
	var total int64
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			files = append(files, p)
			total += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	refRun := func() time.Duration {
		start := time.Now()
		cmd := exec.Command(sha256sum, files...)
		if out, err := cmd.Output(); err != nil || len(out) == 0 {
			b.Fatalf("sha256sum: %v", err)
		}
		return time.Since(start)
	}
	refRun() // warm the page cache for both sides

	work := scratchfs.Dir(b, 2)
	var ours, ref, noSync, syncTime time.Duration
	b.SetBytes(total)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		// A new directory each time: deleting the previous store here
		// would leave thousands of recently deleted inodes, which ext4's
		// inode allocator scans past for seconds.
		storeDir := filepath.Join(work, fmt.Sprintf("objects-%d", i))
		ref += refRun()
		b.StartTimer()

		start := time.Now()
		store, err := objstore.Open(storeDir)
		if err != nil {
			b.Fatal(err)
		}
		tree, err := Scan(context.Background(), src, &Options{Store: store})
		if err != nil {
			b.Fatal(err)
		}
		img, err := os.Create(filepath.Join(work, "t8.img"))
		if err != nil {
			b.Fatal(err)
		}
		if err := composefs.WriteImage(img, tree, nil); err != nil {
			b.Fatal(err)
		}
		beforeSync := time.Now()
		if err := store.Sync(); err != nil {
			b.Fatal(err)
		}
		syncTime += time.Since(beforeSync)
		if err := img.Sync(); err != nil {
			b.Fatal(err)
		}
		img.Close()
		store.Close()
		noSync += beforeSync.Sub(start)
		ours += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(ours)/float64(ref), "x-sha256sum")
	b.ReportMetric(float64(noSync)/float64(ref), "x-sha256sum-nosync")
	b.ReportMetric(float64(ref.Milliseconds())/float64(b.N), "sha256sum-ms")
	b.ReportMetric(float64(syncTime.Milliseconds())/float64(b.N), "sync-ms")

	// The result must be the golden image.
	data, err := os.ReadFile(filepath.Join(work, "t8.img"))
	if err != nil {
		b.Fatal(err)
	}
	if got := fsverity.Hex(fsverity.Sum(data)); got != "a280c55ab7a38646ae0f5cb5badd626d3033bed6063958b6ee2a0f12be8ee77a" {
		b.Fatalf("t8 image digest %s differs from the golden one", got)
	}
}

// BenchmarkDigestT8 hashes the t8-large tree without a store (mkcomposefs
// --print-digest), against sha256sum(1) over the same files.
func BenchmarkDigestT8(b *testing.B) {
	src := filepath.Join(goldenTrees(b), "t8-large")
	var files []string
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	refRun := func() time.Duration {
		start := time.Now()
		if err := exec.Command("sha256sum", files...).Run(); err != nil {
			b.Fatalf("sha256sum: %v", err)
		}
		return time.Since(start)
	}
	refRun()
	var ours, ref time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ref += refRun()
		b.StartTimer()
		start := time.Now()
		tree, err := Scan(context.Background(), src, nil)
		if err != nil {
			b.Fatal(err)
		}
		d := fsverity.New()
		if err := composefs.WriteImage(d, tree, nil); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
	}
	b.ReportMetric(float64(ours)/float64(ref), "x-sha256sum")
}
