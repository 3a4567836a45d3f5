package manifest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// manyLocals is the base manifest plus a locals block of n entries, each
// referring to the one before (so every evaluation needs another local).
func manyLocals(n int) map[string]string {
	var b strings.Builder
	b.WriteString("locals {\n  l0 = 0\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "  l%d = local.l%d + 1\n", i, i-1)
	}
	b.WriteString("}\n")
	return map[string]string{"a.hcl": base + simpleVariant, "locals.hcl": b.String()}
}

// TestLocalsScale validates manifests with many locals within a time that
// only linear evaluation meets (issue 13 item 19: 5,000 locals took 5 s
// when every evaluated local republished the whole locals object).
func TestLocalsScale(t *testing.T) {
	if testing.Short() {
		t.Skip("timing test; skipped with -short")
	}
	tests := []struct {
		name   string
		n      int
		budget time.Duration // generous: a loaded 2-core machine
	}{
		{"10k locals", 10_000, 5 * time.Second},
		{"10 MB manifest", 0, 30 * time.Second}, // about 10 s here, most of it HCL parsing
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			if n == 0 { // as many locals as make 10 MB
				n = 10 << 20 / len("  l123456 = local.l123455 + 1\n")
			}
			files := manyLocals(n)
			start := time.Now()
			m, diags := parse(t, files, nil)
			took := time.Since(start)
			if diags.HasErrors() || m == nil {
				t.Fatal(diags)
			}
			t.Logf("%d locals (%d bytes): %v", n, len(files["locals.hcl"]), took)
			if took > tc.budget {
				t.Errorf("validating %d locals took %v, more than %v", n, took, tc.budget)
			}
		})
	}
}

// BenchmarkLocalsScaling validates 1,000 and 10,000 chained locals in the
// same run and reports the time of each and their ratio: about 10 for
// linear evaluation, about 100 for quadratic.
// Run: go test -run '^$' -bench LocalsScaling ./pipeline/manifest
func BenchmarkLocalsScaling(b *testing.B) {
	small, large := toBytes(manyLocals(1_000)), toBytes(manyLocals(10_000))
	opts := &Options{WorkDir: "/work"}
	var tSmall, tLarge time.Duration
	for b.Loop() {
		for _, c := range []struct {
			files map[string][]byte
			acc   *time.Duration
		}{{small, &tSmall}, {large, &tLarge}} {
			start := time.Now()
			if _, diags := Parse(c.files, opts); diags.HasErrors() {
				b.Fatal(diags)
			}
			*c.acc += time.Since(start)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(tSmall.Milliseconds())/n, "ms/1k-locals")
	b.ReportMetric(float64(tLarge.Milliseconds())/n, "ms/10k-locals")
	b.ReportMetric(float64(tLarge)/float64(tSmall), "x-10k-vs-1k")
}

func toBytes(files map[string]string) map[string][]byte {
	out := make(map[string][]byte, len(files))
	for k, v := range files {
		out[k] = []byte(v)
	}
	return out
}
