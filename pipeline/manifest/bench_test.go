package manifest

import (
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/cfs-compose/cfs-compose/manifests"
)

// BenchmarkValidateShipped measures validating every shipped manifest
// (parse, variables, locals, every variant on every arch, semantic checks).
// The target is under 100 ms; it reports ms/validate, the fraction of that
// budget used, and the ratio to only parsing the same files with hclsyntax
// (measured in the same run), which shows what the language layer costs.
// Run: go test -run '^$' -bench ValidateShipped -benchmem ./pipeline/manifest
func BenchmarkValidateShipped(b *testing.B) {
	files, err := manifests.Files("/repo/manifests")
	if err != nil {
		b.Fatal(err)
	}
	opts := &Options{WorkDir: "/"}

	// Reference: syntax parsing only, measured before and after the main
	// loop; the faster of the two is used, which keeps a burst of load on a
	// shared machine from skewing the ratio.
	parseOnly := func() time.Duration {
		const rounds = 200
		start := time.Now()
		for range rounds {
			for name, src := range files {
				if _, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos); diags.HasErrors() {
					b.Fatal(diags)
				}
			}
		}
		return time.Since(start) / rounds
	}
	before := parseOnly()

	b.ResetTimer()
	for b.Loop() {
		m, diags := Parse(files, opts)
		if diags.HasErrors() || m == nil {
			b.Fatal(diags)
		}
	}
	b.StopTimer()
	per := b.Elapsed() / time.Duration(b.N)
	ref := min(before, parseOnly())
	b.ReportMetric(float64(per)/float64(time.Millisecond), "ms/validate")
	b.ReportMetric(float64(per)/float64(100*time.Millisecond), "budget-fraction")
	b.ReportMetric(float64(per)/float64(ref), "x-parse-only")
}
