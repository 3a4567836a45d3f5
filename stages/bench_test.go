package stages

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// shipped loads the repository's manifests.
func shipped(b *testing.B) *manifest.Manifest {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "manifests")
	m, diags := manifest.Load(dir, &manifest.Options{})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	return m
}

// BenchmarkCachedCompose rebuilds the shipped testbed variant (x86_64 and
// aarch64, all seven stages with real implementations) when every stage is
// cached: resolve, 14 cache hits, publish (hard links), SHA256SUMS,
// metadata, compose.json. The first, uncached build (two QEMU boots)
// happens before the timer starts. Target: under 1 s per compose.
//
// The Fedora variants pin docker:// tags with the registry, which is not
// reachable here, so they cannot be cached; BenchmarkPlanShipped covers
// them.
func BenchmarkCachedCompose(b *testing.B) {
	_, file, _, _ := runtime.Caller(0)
	if _, err := os.Stat(filepath.Join(filepath.Dir(file), "..", "testbed", "fixtures", "build", "oci", "index.json")); err != nil {
		b.Skip("SKIP: fixture image missing; run make fixtures")
	}
	m := shipped(b)
	dir := b.TempDir()
	st, err := artifacts.Open(context.Background(), filepath.Join(dir, "cache"), false)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	opts := &pipeline.BuildOptions{Out: filepath.Join(dir, "out"), Resolve: pipeline.ResolveOptions{Variants: []string{"testbed"}}}
	if _, err := pipeline.Build(context.Background(), m, All(), st, opts); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rec, err := pipeline.Build(context.Background(), m, All(), st, opts)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range rec.Stages {
			if !s.CacheHit {
				b.Fatalf("stage %s (%v) not cached", s.Kind, s.Targets)
			}
		}
	}
	per := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(per.Milliseconds()), "ms/compose")
	b.ReportMetric(per.Seconds()/1.0, "x-1s-budget")
}

// BenchmarkPlanShipped resolves the plan of every shipped manifest
// (8 variant/arch targets) offline and computes each stage's cache state.
func BenchmarkPlanShipped(b *testing.B) {
	m := shipped(b)
	st, err := artifacts.Open(context.Background(), b.TempDir(), false)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for b.Loop() {
		p, err := pipeline.Resolve(context.Background(), m, All(), &pipeline.ResolveOptions{Offline: true, Lenient: true})
		if err != nil {
			b.Fatal(err)
		}
		p.State(st)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/plan")
}
