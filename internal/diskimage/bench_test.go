package diskimage

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWrite writes a 512 MiB disk: a 64 MiB ESP holding two 20 MB
// UKIs and a root partition populated from a tree of 3000 files (about
// 30 MB). The reference, measured in the same run, is a bare
// `mkfs.ext4 -d` of the same tree into a file the size of the root
// partition; "x-mkfs" is Write's time over the reference's, i.e. the cost
// of the partition table, the ESP, the time normalisation and the
// temp-file handling on top of the unavoidable mkfs.
func BenchmarkWrite(b *testing.B) {
	requireTools(b, "mkfs.ext4")
	dir := b.TempDir()
	tree := filepath.Join(dir, "tree")
	materialise(b, tree, append(rootTree(), bigTree(3000)...), false)
	uki := bytes.Repeat([]byte("0123456789abcdef"), 20<<20/16)
	spec := func() *Spec {
		return &Spec{
			Size: 512 << 20, Arch: ArchX86_64, Seed: "bench", Epoch: testEpoch,
			Partitions: []Partition{
				{Name: "esp", Type: TypeESP, Size: 64 << 20, FS: FSVfat, Label: "ESP", Files: []File{
					BytesFile("EFI/BOOT/BOOTX64.EFI", uki), BytesFile("EFI/Linux/fedora.efi", uki)}},
				{Name: "root", Type: TypeRoot, FS: FSExt4, Label: "root", Verity: true, Dir: tree},
			},
		}
	}
	l, err := spec().Layout()
	if err != nil {
		b.Fatal(err)
	}
	rootSize := l.Partitions[1].Size
	img := filepath.Join(dir, "disk.raw")
	ref := filepath.Join(dir, "ref.ext4")
	var refTotal, writeTotal time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		os.Remove(ref)
		start := time.Now()
		f, err := os.Create(ref)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(rootSize); err != nil {
			b.Fatal(err)
		}
		f.Close()
		if out, err := exec.Command("mkfs.ext4", "-F", "-q", "-b", "4096", "-O", "verity", "-E", "nodiscard", "-d", tree, ref).CombinedOutput(); err != nil {
			b.Fatalf("reference mkfs.ext4: %v: %s", err, out)
		}
		refTotal += time.Since(start)
		b.StartTimer()

		start = time.Now()
		if _, err := Write(context.Background(), spec(), img); err != nil {
			b.Fatal(err)
		}
		writeTotal += time.Since(start)
	}
	b.ReportMetric(float64(writeTotal)/float64(refTotal), "x-mkfs")
	b.ReportMetric(float64(refTotal.Milliseconds())/float64(b.N), "ref-ms/op")
}
