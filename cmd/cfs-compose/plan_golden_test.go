package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestPlanGolden")

// TestPlanGolden pins what `plan` prints for the shipped testbed variant,
// in both states of the contingency switch and both formats, so that a
// change of layout, stage set, config field or naming shows up as a
// reviewed diff of testdata/plan/*.golden (rewrite them with -update).
//
// What depends on the machine or on the fixture's Debian packages is
// normalised: digests, keys and ids become <hex>, the checkout and the
// cache become $ROOT and $CACHE.
func TestPlanGolden(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "testbed", "fixtures", "build", "oci", "index.json")); err != nil {
		t.Fatalf("the fixture image is missing (%v): run make fixtures", err)
	}
	manifests := filepath.Join(root, "manifests")
	flipped := t.TempDir()
	files, err := filepath.Glob(filepath.Join(manifests, "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(f) == "testbed.hcl" {
			b = bytes.Replace(b, []byte("oci:../testbed/"), []byte("oci:"+root+"/testbed/"), 1)
		}
		if err := os.WriteFile(filepath.Join(flipped, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, _, stderr := runCLI("set", filepath.Join(flipped, "testbed.hcl"), "variant.testbed.composefs.enabled=false"); code != 0 {
		t.Fatalf("set: %s", stderr)
	}
	cache := t.TempDir()
	for _, tc := range []struct{ name, dir, format string }{
		{"testbed", manifests, "text"},
		{"testbed", manifests, "json"},
		{"testbed-composefs-off", flipped, "text"},
		{"testbed-composefs-off", flipped, "json"},
	} {
		t.Run(tc.name+"."+tc.format, func(t *testing.T) {
			code, stdout, stderr := runCLI("-m", tc.dir, "--cache-dir", cache, "plan", "--offline", "--variant", "testbed", "--format", tc.format)
			if code != 0 {
				t.Fatalf("plan exited %d: %s", code, stderr)
			}
			got := normalizePlan(stdout, root, cache, flipped)
			golden := filepath.Join("testdata", "plan", tc.name+"."+tc.format+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (create it with -update)", err)
			}
			if got != string(want) {
				t.Errorf("plan output differs from %s (review the change, then go test ./cmd/cfs-compose -run TestPlanGolden -update):\n%s", golden, lineDiff(string(want), got))
			}
		})
	}
}

var hexRun = regexp.MustCompile(`\b[0-9a-f]{16,64}\b`)

func normalizePlan(s, root, cache, flipped string) string {
	s = strings.ReplaceAll(s, flipped, "$MANIFESTS")
	s = strings.ReplaceAll(s, cache, "$CACHE")
	s = strings.ReplaceAll(s, root, "$ROOT")
	return hexRun.ReplaceAllString(s, "<hex>")
}

// lineDiff lists the lines that differ, by position.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("- " + wl + "\n+ " + gl + "\n")
		}
	}
	return b.String()
}
