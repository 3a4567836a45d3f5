package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchManifests has 40 targets x 5 stages = 200 stage instances.
func benchManifests() *fakeManifests {
	vs := map[string][]string{}
	for i := 0; i < 20; i++ {
		vs[fmt.Sprintf("v%02d", i)] = []string{"x86_64", "aarch64"}
	}
	return newFake(vs)
}

// referenceStageIO measures the bare file work one stage does (write a
// small file to a temp name and rename it), the reference the engine's
// per-stage overhead is compared with.
func referenceStageIO(b *testing.B, dir string, n int) time.Duration {
	t0 := time.Now()
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("ref-%d", i))
		if err := os.WriteFile(p+".tmp", []byte("fake output of one stage"), 0o444); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(t0)
}

// BenchmarkEngineOverhead runs 200 trivial stages uncached (fresh cache
// each iteration) and reports the engine's cost per stage: cache look-up,
// key lock, scratch dir, stage log, output blob, record. Target: < 5 ms.
func BenchmarkEngineOverhead(b *testing.B) {
	m := benchManifests()
	var total time.Duration
	var ref time.Duration
	nodes := 0
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		st := openStore(b, dir)
		p, err := Resolve(context.Background(), m, chain(newHooks()), nil)
		if err != nil {
			b.Fatal(err)
		}
		nodes = len(p.Nodes)
		ref += referenceStageIO(b, b.TempDir(), nodes)
		b.StartTimer()
		t0 := time.Now()
		res, err := Execute(context.Background(), p, st, &ExecOptions{Jobs: 2})
		total += time.Since(t0)
		if err != nil || res.Counts()[StatusRan] != nodes {
			b.Fatal(err, res.Counts())
		}
	}
	per := float64(total.Microseconds()) / 1000 / float64(b.N*nodes)
	b.ReportMetric(per, "ms/stage")
	b.ReportMetric(per/5, "x-5ms-budget")
	b.ReportMetric(float64(total)/float64(ref), "x-bare-io")
}

// BenchmarkCachedBuild builds a compose whose 200 stages are all cached:
// resolve, 200 cache hits, publish, metadata, compose.json.
func BenchmarkCachedBuild(b *testing.B) {
	dir := b.TempDir()
	st := openStore(b, filepath.Join(dir, "cache"))
	m := benchManifests()
	opts := &BuildOptions{Out: filepath.Join(dir, "out")}
	if _, err := Build(context.Background(), m, chain(newHooks()), st, opts); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec, err := Build(context.Background(), m, chain(newHooks()), st, opts)
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range rec.Stages {
			if !s.CacheHit {
				b.Fatalf("stage %s not cached", s.Kind)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/compose")
}
