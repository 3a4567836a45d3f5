package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/imagepull"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/internal/scratchfs"
)

// Benchmark image: 500 MB of file content in 20,000 files over 5 zstd
// layers (the last one also replacing and whiting out earlier files),
// generated deterministically and cached under the temp dir.
const (
	benchFiles     = 20000
	benchBytes     = 500 << 20
	benchLayers    = 5
	benchImageName = "cfs-compose-bench-image-v2"
)

// benchImage returns the cached benchmark layout and the paths of its
// uncompressed layer tars (the sha256sum reference input).
func benchImage(tb testing.TB) (layout string, tars []string) {
	tb.Helper()
	dir := filepath.Join(os.TempDir(), benchImageName)
	layout = filepath.Join(dir, "layout")
	for i := range benchLayers {
		tars = append(tars, filepath.Join(dir, fmt.Sprintf("layer%d.tar", i)))
	}
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return layout, tars
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(layout, "blobs", "sha256"), 0o755); err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(42, 42))
	corpus := make([]byte, 1<<20)
	for i := range corpus {
		corpus[i] = "abcdefghijklmnopqrstuvwxyz \n0123456789"[rng.IntN(38)]
	}
	// Log-normal sizes (median ~5 KiB, a few MiB-sized files), scaled to
	// benchBytes in total.
	sizes := make([]float64, benchFiles)
	var sum float64
	for i := range sizes {
		sizes[i] = math.Exp(8.5 + 1.8*rng.NormFloat64())
		sizes[i] = min(sizes[i], 16<<20)
		sum += sizes[i]
	}
	blob := func(b []byte) (string, int64) {
		s := sha256.Sum256(b)
		h := hex.EncodeToString(s[:])
		if err := os.WriteFile(filepath.Join(layout, "blobs", "sha256", h), b, 0o644); err != nil {
			tb.Fatal(err)
		}
		return "sha256:" + h, int64(len(b))
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	var layers []desc
	var diffIDs []string
	mtime := time.Unix(1700000000, 0)
	per := benchFiles / benchLayers
	for l := range benchLayers {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		add := func(h *tar.Header, data []byte) {
			h.ModTime, h.Format = mtime, tar.FormatPAX
			if err := tw.WriteHeader(h); err != nil {
				tb.Fatal(err)
			}
			tw.Write(data)
		}
		for i := l * per; i < (l+1)*per; i++ {
			if i%100 == 0 {
				add(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("usr/share/d%03d/", i/100), Mode: 0o755}, nil)
			}
			n := int(sizes[i] * benchBytes / sum)
			data := make([]byte, n)
			for off := 0; off < n; {
				start := rng.IntN(len(corpus))
				off += copy(data[off:], corpus[start:])
			}
			add(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("usr/share/d%03d/f%05d", i/100, i), Mode: 0o644, Size: int64(n)}, data)
		}
		if l == benchLayers-1 {
			for i := 0; i < 100; i++ {
				add(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("usr/share/d%03d/.wh.f%05d", i, i*100+1), Mode: 0o644}, nil)
			}
		}
		tw.Close()
		raw := buf.Bytes()
		if err := os.WriteFile(tars[l], raw, 0o644); err != nil {
			tb.Fatal(err)
		}
		s := sha256.Sum256(raw)
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(s[:]))
		// A streaming encoder, as image builders use (windowed frames).
		var zbuf bytes.Buffer
		enc, _ := zstd.NewWriter(&zbuf, zstd.WithEncoderLevel(zstd.SpeedFastest))
		enc.Write(raw)
		enc.Close()
		d, size := blob(zbuf.Bytes())
		layers = append(layers, desc{"application/vnd.oci.image.layer.v1.tar+zstd", d, size})
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	cd, cs := blob(cfg)
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc{"application/vnd.oci.image.config.v1+json", cd, cs}, "layers": layers,
	})
	md, ms := blob(man)
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": "bench"}}},
	})
	os.WriteFile(filepath.Join(layout, "index.json"), idx, 0o644)
	os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	return layout, tars
}

// importInto imports the benchmark image into a store rooted at dir.
func importInto(ctx context.Context, layout, dir string) (*imagepull.Pulled, error) {
	st, err := artifacts.Open(ctx, dir, false)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	objs, err := objstore.Open(st.ObjectsDir())
	if err != nil {
		return nil, err
	}
	defer objs.Close()
	ref, err := imagepull.ParseReference("oci:" + layout + ":bench")
	if err != nil {
		return nil, err
	}
	return imagepull.Pull(ctx, ref, &imagepull.PullOptions{Arch: "x86_64", Import: imagepull.ImportOptions{Objects: objs, Cache: storeCache{st}}})
}

// TestMain lets the benchmark re-run this binary as a one-shot importer
// whose peak RSS the parent reads.
func TestMain(m *testing.M) {
	if layout := os.Getenv("CFS_BENCH_IMPORT_LAYOUT"); layout != "" {
		p, err := importInto(context.Background(), layout, os.Getenv("CFS_BENCH_IMPORT_STORE"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// The peak RSS of this process (ru_maxrss of a child started
		// from a big parent counts the parent's pages).
		status, err := os.ReadFile("/proc/self/status")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				fmt.Printf("%d %s\n", len(p.Objects), strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")))
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// sha256sumSeconds times `sha256sum` over files (best of three).
func sha256sumSeconds(b *testing.B, files []string) float64 {
	best := math.Inf(1)
	for range 3 {
		start := time.Now()
		if out, err := exec.Command("sha256sum", files...).CombinedOutput(); err != nil {
			b.Fatalf("sha256sum: %v %s", err, out)
		}
		best = min(best, time.Since(start).Seconds())
	}
	return best
}

// BenchmarkImport imports the 500 MB / 20,000-file image into a fresh
// store per iteration and reports the ratio to sha256sum over the
// uncompressed layer bytes, measured in the same run, and the peak RSS of
// a one-shot import process. The stores live on a freshly made ext4
// (scratchfs) so the figure is about the import, not about what other jobs
// left the shared /tmp filesystem in.
func BenchmarkImport(b *testing.B) {
	layout, tars := benchImage(b)
	var raw int64
	for _, p := range tars {
		fi, _ := os.Stat(p)
		raw += fi.Size()
	}
	ref := sha256sumSeconds(b, tars)
	scratch := scratchfs.Dir(b, 16)
	b.SetBytes(raw)
	b.ResetTimer()
	var total time.Duration
	for i := range b.N {
		b.StopTimer()
		dir := filepath.Join(scratch, fmt.Sprintf("store-%d", i))
		b.StartTimer()
		start := time.Now()
		p, err := importInto(context.Background(), layout, dir)
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if p.Cached || len(p.Objects) < benchFiles/2 {
			b.Fatalf("import: cached %v, %d objects", p.Cached, len(p.Objects))
		}
		// The stores are removed only at the end: deleting 20,000 files
		// right before the next import makes ext4 inode allocation crawl
		// (recently_deleted), which would measure the deletion instead.
	}
	b.StopTimer()
	per := total.Seconds() / float64(b.N)
	b.ReportMetric(per/ref, "x-sha256sum")
	b.ReportMetric(ref, "sha256sum-s")

	// Peak memory of one import, in a child process.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CFS_BENCH_IMPORT_LAYOUT="+layout, "CFS_BENCH_IMPORT_STORE="+filepath.Join(scratch, "rss"))
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("import process: %v %s", err, out)
	}
	var objects int
	var kb float64
	if _, err := fmt.Sscanf(string(out), "%d %f", &objects, &kb); err != nil || objects < benchFiles/2 {
		b.Fatalf("import process printed %q", out)
	}
	rss := kb / 1024
	b.ReportMetric(rss, "peak-RSS-MB")
	if rss > 300 {
		b.Errorf("peak RSS %.0f MB, want under 300 MB", rss)
	}
}

// BenchmarkImportCached imports the image again into a store that already
// holds it: an import cache hit that reads no layer.
func BenchmarkImportCached(b *testing.B) {
	layout, _ := benchImage(b)
	dir := b.TempDir()
	if _, err := importInto(context.Background(), layout, dir); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		start := time.Now()
		p, err := importInto(context.Background(), layout, dir)
		total += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if !p.Cached || p.Stats.Entries != 0 {
			b.Fatalf("second import read layers: cached %v, %d entries", p.Cached, p.Stats.Entries)
		}
	}
	ms := float64(total.Milliseconds()) / float64(b.N)
	b.ReportMetric(ms, "ms/import")
	if ms > 200 {
		b.Errorf("cached import took %.0f ms, want under 200 ms", ms)
	}
}
