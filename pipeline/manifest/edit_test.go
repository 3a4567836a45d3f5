package manifest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/manifests"
)

const editSrc = `# A manifest.
variable "release" {
  type    = string
  default = "43" # the release
}

locals {
  tag = "stable"
}

compose {
  release = var.release
}

variant "coreos" {
  arches = ["x86_64", "aarch64"]

  source {
    image = "docker://quay.io/fedora/fedora-coreos:${local.tag}"
  }

  composefs {
    # The contingency switch.
    enabled = true # keep this line
    verity  = "enable"
  }

  disk {
    size = "10GiB"

    partition "esp" {
      size = "512MiB"
    }
  }
}
`

func TestSet(t *testing.T) {
	tests := []struct {
		name       string
		assignment string
		old, new   string // the one changed region (old "" means appended)
	}{
		{"flip the switch", "variant.coreos.composefs.enabled=false", "    enabled = true # keep this line\n", "    enabled = false # keep this line\n"},
		{"string value", `variant.coreos.composefs.verity="require"`, `    verity  = "enable"` + "\n", `    verity  = "require"` + "\n"},
		{"partition by label", `variant.coreos.disk.partition.esp.size="1GiB"`, `      size = "512MiB"`, `      size = "1GiB"`},
		{"variable default", `variable.release.default="44"`, `  default = "43" # the release`, `  default = "44" # the release`},
		{"local", `locals.tag="testing"`, `  tag = "stable"`, `  tag = "testing"`},
		{"compose", `compose.release = "rawhide"`, "  release = var.release", `  release = "rawhide"`},
		{"expression value", `variant.coreos.arches=concat(["x86_64"], [])`, `  arches = ["x86_64", "aarch64"]`, `  arches = concat(["x86_64"], [])`},
		{"new attribute in an existing block", `variant.coreos.disk.formats=["raw"]`, "    size = \"10GiB\"\n", "    size    = \"10GiB\"\n    formats = [\"raw\"]\n"},
		{"new attribute in a body of blocks", `variant.coreos.description="CoreOS"`, "  arches = [\"x86_64\", \"aarch64\"]\n", "  arches      = [\"x86_64\", \"aarch64\"]\n  description = \"CoreOS\"\n"},
		{"new nested blocks", `variant.coreos.arch.aarch64.uki.stub="/s/linuxaa64.efi.stub"`, "    }\n  }\n}\n", "    }\n  }\n  arch \"aarch64\" {\n    uki {\n      stub = \"/s/linuxaa64.efi.stub\"\n    }\n  }\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, diags := Set([]byte(editSrc), "m.hcl", tt.assignment)
			if diags.HasErrors() {
				t.Fatal(diagText(diags))
			}
			want := strings.Replace(editSrc, tt.old, tt.new, 1)
			if tt.name == "new nested blocks" {
				want = strings.TrimSuffix(editSrc, tt.old) + tt.new
			}
			if string(out) != want {
				t.Errorf("got:\n%s\nwant:\n%s", out, want)
			}
		})
	}
}

func TestSetRoundTrip(t *testing.T) {
	out, diags := Set([]byte(editSrc), "m.hcl", "variant.coreos.composefs.enabled=false")
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	back, diags := Set(out, "m.hcl", "variant.coreos.composefs.enabled=true")
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	if string(back) != editSrc {
		t.Errorf("flip and flip back changed the file:\n%s", back)
	}
}

// TestSetShippedRoundTrip flips the contingency switch of every shipped
// variant and back: the file must be byte-identical, and only one line
// may differ in between.
func TestSetShippedRoundTrip(t *testing.T) {
	files, err := manifests.Files("")
	if err != nil {
		t.Fatal(err)
	}
	m, diags := Parse(files, &Options{WorkDir: "/"})
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	for _, v := range m.Variants() {
		t.Run(v, func(t *testing.T) {
			var name string
			for n, src := range files {
				if strings.Contains(string(src), `variant "`+v+`" {`) {
					name = n
				}
			}
			src := files[name]
			// Flip the contingency switch from the shipped state (on,
			// except testbed-ostree) and back.
			a0 := m.Arches(v)[0]
			c0, err := m.Config(v, a0)
			if err != nil {
				t.Fatal(err)
			}
			shipped := c0.Composefs.Enabled
			off, diags := Set(src, name, fmt.Sprintf("variant.%s.composefs.enabled=%v", v, !shipped))
			if diags.HasErrors() {
				t.Fatal(diagText(diags))
			}
			if changed := diffLines(string(src), string(off)); changed != 1 {
				t.Errorf("%s: %d lines changed, want 1", name, changed)
			}
			edited := make(map[string][]byte)
			for k, b := range files {
				edited[k] = b
			}
			edited[name] = off
			m2, diags := Parse(edited, &Options{WorkDir: "/"})
			if diags.HasErrors() {
				t.Fatalf("manifests invalid with composefs flipped:\n%s", diagText(diags))
			}
			for _, a := range m2.Arches(v) {
				if c, _ := m2.Config(v, a); c.Composefs.Enabled == shipped {
					t.Errorf("%s/%s: composefs still %v", v, a, shipped)
				}
			}
			on, diags := Set(off, name, fmt.Sprintf("variant.%s.composefs.enabled=%v", v, shipped))
			if diags.HasErrors() {
				t.Fatal(diagText(diags))
			}
			if string(on) != string(src) {
				t.Errorf("%s changed after flipping back", name)
			}
		})
	}
}

func diffLines(a, b string) int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	if len(la) != len(lb) {
		return -1
	}
	n := 0
	for i := range la {
		if la[i] != lb[i] {
			n++
		}
	}
	return n
}

func TestSetErrors(t *testing.T) {
	tests := []struct {
		assignment string
		want       string
	}{
		{"variant.coreos.composefs.enabld=false", `no attribute "enabld". Did you mean "enabled"?`},
		{"variant.coreos.composfs.enabled=false", `no block "composfs". Did you mean "composefs"?`},
		{"variant.coreos.verity=true", `"verity" belongs in a composefs block or a partition block`},
		{"variants.coreos.composefs.enabled=false", `Did you mean "variant"?`},
		{"variant.iot.composefs.enabled=false", `m.hcl has no variant "iot" block`},
		{"variant.coreos.arch.arm64.uki.stub=\"x\"", `"arm64" is not an architecture`},
		{"variant.coreos.arch.aarch64.arches=[]", `a arch block has no attribute "arches"`},
		{"variant.coreos.disk.partition.esp=1", "want disk.partition.LABEL.ATTR"},
		{"variant.coreos.disk.size=12GiB", "is not an HCL expression"},
		{"variant.coreos.disk.size=", "no value after '='"},
		{"variant.coreos.composefs.enabled", "is not ADDRESS=VALUE"},
		{"variable.release.type=number", "use default or description"},
		{"defaults..disk=1", "empty part"},
		{"compose.relase=1", `Did you mean "release"?`},
	}
	for _, tt := range tests {
		t.Run(tt.assignment, func(t *testing.T) {
			out, diags := Set([]byte(editSrc), "m.hcl", tt.assignment)
			if !diags.HasErrors() {
				t.Fatalf("no error; output:\n%s", out)
			}
			if !strings.Contains(diags[0].Detail, tt.want) {
				t.Errorf("error %q does not contain %q", diags[0].Detail, tt.want)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	in := "variant \"v\" {\n    arches=[\"x86_64\"] # c\n  source {\nimage = \"x\"\n  }\n}\n"
	want := "variant \"v\" {\n  arches = [\"x86_64\"] # c\n  source {\n    image = \"x\"\n  }\n}\n"
	out, diags := Format([]byte(in), "m.hcl")
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	if again, _ := Format(out, "m.hcl"); string(again) != want {
		t.Error("Format is not idempotent")
	}
	if _, diags := Format([]byte("variant \"v\" {\n"), "m.hcl"); !diags.HasErrors() {
		t.Error("no error for a syntax error")
	}
}
