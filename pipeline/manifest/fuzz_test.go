package manifest

import (
	"testing"

	"github.com/cfs-compose/cfs-compose/manifests"
)

// FuzzLoad checks that the loader never panics, and that whenever it
// accepts a manifest, every variant resolves, explains, and formats.
// Run: go test -run '^$' -fuzz FuzzLoad -fuzztime 60s -fuzzminimizetime 5s ./pipeline/manifest
// (the seeds are whole manifests, so minimizing a new input with the
// default 60s budget would take most of a short run).
func FuzzLoad(f *testing.F) {
	files, err := manifests.Files("")
	if err != nil {
		f.Fatal(err)
	}
	var all []byte
	for _, name := range []string{"variables.hcl", "defaults.hcl", "fedora-coreos.hcl", "iot.hcl", "silverblue.hcl", "testbed.hcl"} {
		f.Add(files[name])
		all = append(all, files[name]...)
	}
	f.Add(all)
	f.Add([]byte(base + simpleVariant))
	f.Add([]byte(editSrc))
	f.Add([]byte("locals {\n  a = local.b\n  b = local.a\n}\n"))
	f.Add([]byte("variable \"x\" {\n  type = list(string)\n  default = [\"a\"]\n  validation {\n    condition = length(var.x) > 0\n    error_message = \"e\"\n  }\n}\n"))
	f.Add([]byte(base + variant("  disk {\n    size = 0\n    partition \"x\" {\n      size = \"1TiB\"\n    }\n  }")))
	f.Add([]byte(base + variant("  arch \"aarch64\" {\n    uki {\n      stub = \"x\"\n    }\n  }\n  arches = [\"aarch64\"]")))
	f.Fuzz(func(t *testing.T, src []byte) {
		m, diags := Parse(map[string][]byte{"fuzz.hcl": src}, &Options{
			WorkDir:     "/nonexistent",
			Vars:        []string{"release=44"},
			KnownChecks: []string{"composefs-root"},
			KnownLints:  []string{"var-content"},
		})
		if m == nil {
			if !diags.HasErrors() {
				t.Fatal("nil manifest without errors")
			}
			return
		}
		if diags.HasErrors() {
			t.Fatal("manifest returned with errors")
		}
		for _, v := range m.Variants() {
			for _, a := range m.Arches(v) {
				if _, err := m.Config(v, a); err != nil {
					t.Fatalf("Config(%s, %s): %v", v, a, err)
				}
				if _, err := m.Explain(v, a); err != nil {
					t.Fatalf("Explain(%s, %s): %v", v, a, err)
				}
			}
		}
		_ = m.Variables()
		out, fd := Format(src, "fuzz.hcl")
		if fd.HasErrors() {
			t.Fatalf("accepted manifest does not format: %v", fd)
		}
		if again, _ := Format(out, "fuzz.hcl"); string(again) != string(out) {
			t.Fatalf("Format is not idempotent:\n%q\n%q", out, again)
		}
	})
}

// FuzzSet checks that Set never panics and that an accepted edit parses.
func FuzzSet(f *testing.F) {
	f.Add([]byte(editSrc), "variant.coreos.composefs.enabled=false")
	f.Add([]byte(editSrc), `variant.coreos.arch.aarch64.disk.partition.esp.size="1GiB"`)
	f.Add([]byte(editSrc), `locals.x=1`)
	f.Add([]byte(editSrc), `variable.release.default="44"`)
	f.Fuzz(func(t *testing.T, src []byte, assignment string) {
		out, diags := Set(src, "fuzz.hcl", assignment)
		if diags.HasErrors() {
			return
		}
		if _, d := Format(out, "fuzz.hcl"); d.HasErrors() {
			t.Fatalf("edit produced invalid HCL: %v\n%s", d, out)
		}
	})
}

// FuzzParseSize checks that ParseSize never panics and round-trips.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "512MiB", "10GiB", "10GB", "9223372036854775807", "1 KiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil || n == 0 {
			return
		}
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Fatalf("ParseSize(%q) = %d; FormatSize = %q; back %d, %v", s, n, FormatSize(n), back, err)
		}
	})
}
