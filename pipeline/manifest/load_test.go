package manifest

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/manifests"
)

// base is a minimal valid manifest set; tests add variants or override it.
const base = `
compose {
  release = "43"
}

defaults {
  disk {
    size = "1GiB"
    partition "esp" {
      size = "64MiB"
    }
    partition "root" {}
  }
}
`

const simpleVariant = `
variant "v" {
  source {
    image = "docker://quay.io/fedora/fedora-coreos:stable"
  }
}
`

// parse parses in-memory files under a fixed work directory.
func parse(t *testing.T, files map[string]string, opts *Options) (*Manifest, hcl.Diagnostics) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	if opts.WorkDir == "" {
		opts.WorkDir = "/work"
	}
	b := make(map[string][]byte, len(files))
	for k, v := range files {
		b[k] = []byte(v)
	}
	return Parse(b, opts)
}

func mustParse(t *testing.T, files map[string]string, opts *Options) *Manifest {
	t.Helper()
	m, diags := parse(t, files, opts)
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", diagText(diags))
	}
	return m
}

func mustConfig(t *testing.T, m *Manifest, variant, arch string) *Config {
	t.Helper()
	c, err := m.Config(variant, arch)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func diagText(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		at := "-"
		if d.Subject != nil {
			at = d.Subject.String()
		}
		b.WriteString(sev + " " + at + ": " + d.Summary + ": " + d.Detail + "\n")
	}
	return b.String()
}

func TestShippedManifests(t *testing.T) {
	files, err := manifests.Files("/repo/manifests")
	if err != nil {
		t.Fatal(err)
	}
	m, diags := Parse(files, &Options{WorkDir: "/"})
	if len(diags) > 0 {
		t.Fatalf("shipped manifests have diagnostics:\n%s", diagText(diags))
	}
	if got, want := m.Variants(), []string{"coreos", "iot", "silverblue", "testbed", "testbed-os", "testbed-ostree"}; !slices.Equal(got, want) {
		t.Fatalf("Variants() = %v, want %v", got, want)
	}
	tests := []struct {
		variant, arch string
		check         func(t *testing.T, c *Config)
	}{
		{"coreos", "x86_64", func(t *testing.T, c *Config) {
			if c.Source.Image != "docker://quay.io/fedora/fedora-coreos:stable" {
				t.Errorf("image %q", c.Source.Image)
			}
			if !slices.Contains(c.Kernel.Cmdline, "console=ttyS0,115200n8") {
				t.Errorf("cmdline %q lacks the x86 serial console", c.Kernel.Cmdline)
			}
		}},
		{"coreos", "aarch64", func(t *testing.T, c *Config) {
			if !slices.Contains(c.Kernel.Cmdline, "console=ttyAMA0,115200n8") {
				t.Errorf("cmdline %q lacks the aarch64 serial console", c.Kernel.Cmdline)
			}
		}},
		{"silverblue", "aarch64", func(t *testing.T, c *Config) {
			if c.Source.Image != "docker://quay.io/fedora/fedora-silverblue:43" || c.Name != "Silverblue" {
				t.Errorf("image %q name %q", c.Source.Image, c.Name)
			}
		}},
		{"iot", "aarch64", func(t *testing.T, c *Config) {
			if c.Disk.Partitions[0].Name != "esp" || c.Disk.Partitions[0].Size != 1<<30 {
				t.Errorf("aarch64 ESP %+v, want 1GiB", c.Disk.Partitions[0])
			}
			if c.Test.Timeout != 30*time.Minute {
				t.Errorf("aarch64 timeout %v", c.Test.Timeout)
			}
		}},
		{"iot", "x86_64", func(t *testing.T, c *Config) {
			if c.Disk.Partitions[0].Size != 512<<20 {
				t.Errorf("x86_64 ESP %+v, want the 512MiB default", c.Disk.Partitions[0])
			}
		}},
		{"testbed", "aarch64", func(t *testing.T, c *Config) {
			if c.Source.Image != "oci:/repo/testbed/fixtures/build/oci:testbed" {
				t.Errorf("image %q", c.Source.Image)
			}
			if c.Initramfs.Source != InitramfsBuiltin || !c.Test.Boot || c.Test.Timeout != 5*time.Minute || c.Composefs.Verity != initconfig.VerityEnable {
				t.Errorf("testbed settings %+v %+v %+v", c.Initramfs, c.Test, c.Composefs)
			}
			if c.Disk.Size != 512<<20 || c.Disk.Partitions[1].Size != 0 || !c.Disk.Partitions[1].Verity {
				t.Errorf("testbed disk %+v", c.Disk)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.variant+"/"+tt.arch, func(t *testing.T) {
			c := mustConfig(t, m, tt.variant, tt.arch)
			if !c.Composefs.Enabled {
				t.Error("composefs disabled in a shipped manifest")
			}
			tt.check(t, c)
		})
	}
	if c := m.Compose(); c.Product != "Fedora" || c.Release != "43" || c.Type != "nightly" {
		t.Errorf("Compose() = %+v", c)
	}
	// Plain values, not HCL-quoted (compose.json records them).
	if v := m.Variables(); v["release"] != "43" || v["registry"] != "quay.io/fedora" || v["disk_size"] != "10GiB" {
		t.Errorf("Variables() = %v", v)
	}
}

func TestShippedManifestsFormatted(t *testing.T) {
	files, err := manifests.Files("")
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range files {
		out, diags := Format(src, name)
		if diags.HasErrors() {
			t.Fatalf("%s: %s", name, diagText(diags))
		}
		if string(out) != string(src) {
			t.Errorf("%s is not fmt-clean; run cfs-compose fmt manifests", name)
		}
	}
}

// TestBuiltinDefaults checks that every default documented in config.go is
// explicit in the resolved Config.
func TestBuiltinDefaults(t *testing.T) {
	m := mustParse(t, map[string]string{"m.hcl": base + simpleVariant}, nil)
	got := mustConfig(t, m, "v", "x86_64")
	want := &Config{
		Variant: "v", Name: "V", Arch: "x86_64",
		Source:     Source{Image: "docker://quay.io/fedora/fedora-coreos:stable", Kind: SourceContainer},
		Composefs:  Composefs{Enabled: true, Verity: initconfig.VerityNone},
		Deploy:     Deploy{Backend: BackendComposefs, Stateroot: "default"},
		Kernel:     Kernel{Cmdline: []string{}},
		Initramfs:  Initramfs{Source: InitramfsBuiltin, Modules: []string{}},
		Bootloader: Bootloader{Type: BootloaderUKI},
		UKI:        UKI{Enabled: true, Stub: StubFromImage, Name: "v"},
		Rootfs:     Rootfs{ExtraDirs: []string{}},
		Lints:      Lints{Skip: []string{}},
		Disk: Disk{Size: 1 << 30, Formats: []string{"raw"}, Partitions: []Partition{
			{Name: "esp", Type: PartitionESP, Size: 64 << 20, FS: FilesystemVFAT, Label: "esp"},
			{Name: "root", Type: PartitionRoot, FS: FilesystemExt4, Label: "root"},
		}},
		Test: Test{Timeout: 5 * time.Minute, Checks: []string{}, Memory: 1 << 30},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Config =\n%+v\nwant\n%+v", got, want)
	}
	if c := m.Compose(); c != (Compose{Product: "Fedora", Release: "43", Type: "nightly"}) {
		t.Errorf("Compose() = %+v", c)
	}
	if a := m.Arches("v"); !slices.Equal(a, []string{"x86_64"}) {
		t.Errorf("Arches = %v", a)
	}
}

// TestPartitionMerge checks that labeled partition blocks merge by label,
// never by position (gohcl's decode-on-top merges slices by position: a
// variant that declares only "root" would inherit the ESP's settings).
func TestPartitionMerge(t *testing.T) {
	defaults := `
compose {
  release = "43"
}
defaults {
  disk {
    size = "4GiB"
    partition "esp" {
      size  = "256MiB"
      fs    = "vfat"
      label = "EFI-SYSTEM"
    }
    partition "root" {
      size = 0
    }
  }
  arch "aarch64" {
    disk {
      partition "esp" {
        size = "512MiB"
      }
    }
  }
}
`
	tests := []struct {
		name    string
		variant string
		arch    string
		want    []Partition
	}{
		{
			name: "variant names only root",
			variant: `
  disk {
    partition "root" {
      size = "2GiB"
    }
  }`,
			arch: "x86_64",
			want: []Partition{
				{Name: "esp", Type: "esp", Size: 256 << 20, FS: "vfat", Label: "EFI-SYSTEM"},
				{Name: "root", Type: "root", Size: 2 << 30, FS: "ext4", Label: "root"},
			},
		},
		{
			name: "variant lists root first and adds data",
			variant: `
  disk {
    partition "root" {
      size = "2GiB"
    }
    partition "data" {}
    partition "esp" {
      label = "ESP"
    }
  }`,
			arch: "x86_64",
			want: []Partition{
				{Name: "esp", Type: "esp", Size: 256 << 20, FS: "vfat", Label: "ESP"},
				{Name: "root", Type: "root", Size: 2 << 30, FS: "ext4", Label: "root"},
				{Name: "data", Type: "linux", Size: 0, FS: "ext4", Label: "data"},
			},
		},
		{
			name: "defaults arch block, variant overrides root",
			variant: `
  disk {
    partition "root" {
      size = "3GiB"
    }
  }`,
			arch: "aarch64",
			want: []Partition{
				{Name: "esp", Type: "esp", Size: 512 << 20, FS: "vfat", Label: "EFI-SYSTEM"},
				{Name: "root", Type: "root", Size: 3 << 30, FS: "ext4", Label: "root"},
			},
		},
		{
			name: "variant arch block wins over variant and defaults arch",
			variant: `
  disk {
    partition "esp" {
      size = "128MiB"
    }
  }
  arch "aarch64" {
    disk {
      partition "esp" {
        size = "64MiB"
      }
    }
  }`,
			arch: "aarch64",
			want: []Partition{
				{Name: "esp", Type: "esp", Size: 64 << 20, FS: "vfat", Label: "EFI-SYSTEM"},
				{Name: "root", Type: "root", Size: 0, FS: "ext4", Label: "root"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := defaults + `
variant "v" {
  arches = ["x86_64", "aarch64"]
  source {
    image = "docker://quay.io/fedora/fedora-iot:43"
  }
` + tt.variant + "\n}\n"
			m := mustParse(t, map[string]string{"m.hcl": src}, nil)
			c := mustConfig(t, m, "v", tt.arch)
			if !reflect.DeepEqual(c.Disk.Partitions, tt.want) {
				t.Errorf("partitions\n got %+v\nwant %+v", c.Disk.Partitions, tt.want)
			}
		})
	}
}

func TestVariablePrecedence(t *testing.T) {
	dir := t.TempDir()
	varFile := filepath.Join(dir, "a.hcl")
	if err := os.WriteFile(varFile, []byte("release = \"41\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "b.json")
	if err := os.WriteFile(jsonFile, []byte(`{"release": "40"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	src := `
variable "release" {
  type    = string
  default = "43"
}
` + strings.Replace(base, `release = "43"`, `release = var.release`, 1) + strings.Replace(simpleVariant, "fedora-coreos:stable", "fedora-iot:${var.release}", 1)
	tests := []struct {
		name     string
		opts     Options
		want     string
		wantFrom VarSource
	}{
		{"default", Options{}, "43", VarFromDefault},
		{"env", Options{Environ: []string{"PATH=/bin", "CFS_VAR_release=42"}}, "42", VarFromEnv},
		{"var-file over env", Options{Environ: []string{"CFS_VAR_release=42"}, VarFiles: []string{varFile}}, "41", VarFromFile},
		{"later var-file wins", Options{VarFiles: []string{varFile, jsonFile}}, "40", VarFromFile},
		{"-var over var-file", Options{VarFiles: []string{varFile}, Vars: []string{"release=39"}}, "39", VarFromFlag},
		{"later -var wins", Options{Environ: []string{"CFS_VAR_release=42"}, Vars: []string{"release=38", "release=37"}}, "37", VarFromFlag},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, map[string]string{"m.hcl": src}, &tt.opts)
			if got := m.Compose().Release; got != tt.want {
				t.Errorf("release = %q, want %q", got, tt.want)
			}
			c := mustConfig(t, m, "v", "x86_64")
			if want := "docker://quay.io/fedora/fedora-iot:" + tt.want; c.Source.Image != want {
				t.Errorf("image = %q, want %q", c.Source.Image, want)
			}
			settings, err := m.Explain("v", "x86_64")
			if err != nil {
				t.Fatal(err)
			}
			s := findSetting(t, settings, "source.image")
			if len(s.Vars) != 1 || s.Vars[0].Name != "release" || s.Vars[0].Source != tt.wantFrom {
				t.Errorf("source.image vars = %+v, want release from %s", s.Vars, tt.wantFrom)
			}
		})
	}
}

func TestVariableTypes(t *testing.T) {
	src := `
variable "cmdline" {
  type    = list(string)
  default = ["quiet"]
}
variable "kdump" {
  type    = bool
  default = false
}
variable "size" {
  default = "1GiB"
}
` + base + `
variant "v" {
  source {
    image = "docker://quay.io/fedora/fedora-iot:43"
  }
  kernel {
    cmdline = var.cmdline
  }
  disk {
    size = var.size
  }
}
`
	m := mustParse(t, map[string]string{"m.hcl": src}, &Options{Vars: []string{`cmdline=["a", "b=c"]`, "size=2GiB"}, Environ: []string{"CFS_VAR_kdump=false"}})
	c := mustConfig(t, m, "v", "x86_64")
	if !slices.Equal(c.Kernel.Cmdline, []string{"a", "b=c"}) || c.Disk.Size != 2<<30 {
		t.Errorf("cmdline %q size %d", c.Kernel.Cmdline, c.Disk.Size)
	}
	_, diags := parse(t, map[string]string{"m.hcl": src}, &Options{Vars: []string{"kdump=maybe"}})
	if !hasDiag(diags, "Invalid value for variable", `a bool is required`) {
		t.Errorf("no type error for kdump=maybe:\n%s", diagText(diags))
	}
}

func TestRelativePaths(t *testing.T) {
	files := map[string]string{
		"m/base.hcl": base,
		"m/sub/v.hcl": `
variant "v" {
  source {
    image  = "oci:../fixtures/oci:tag"
    policy = "policy.json"
  }
  uki {
    stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
  }
  secureboot {
    key  = "keys/db.key"
    cert = "keys/db.crt"
  }
  signing {
    key = "keys/cosign.key"
  }
}
variant "w" {
  source {
    image = "oci-archive:img.tar"
  }
}
`,
	}
	m := mustParse(t, files, &Options{WorkDir: "/work"})
	c := mustConfig(t, m, "v", "x86_64")
	want := map[string]string{
		"image":  "oci:/work/m/fixtures/oci:tag",
		"policy": "/work/m/sub/policy.json",
		"stub":   "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
		"sbkey":  "/work/m/sub/keys/db.key",
		"pub":    "/work/m/sub/keys/cosign.pub",
	}
	got := map[string]string{"image": c.Source.Image, "policy": c.Source.Policy, "stub": c.UKI.Stub, "sbkey": c.SecureBoot.Key, "pub": c.Signing.Pub}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paths = %v, want %v", got, want)
	}
	if img := mustConfig(t, m, "w", "x86_64").Source.Image; img != "oci-archive:/work/m/sub/img.tar" {
		t.Errorf("oci-archive image = %q", img)
	}
}

func TestFileFunction(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sbat.csv"), []byte("cfs,1,Fedora,cfs,1,https://fedoraproject.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := base + `
variant "v" {
  source {
    image = "docker://quay.io/fedora/fedora-iot:43"
  }
  uki {
    sbat = file("sbat.csv")
    name = format("%s-%s", upper("fedora"), join("-", concat(["a"], ["b"])))
  }
  kernel {
    cmdline = [try(var.nope, "fallback")]
  }
}
`
	// try() cannot hide an undeclared variable: references are checked
	// before evaluation, so the typo is reported.
	_, diags := Parse(map[string][]byte{filepath.Join(dir, "m.hcl"): []byte(src)}, nil)
	if !hasDiag(diags, "Reference to undeclared input variable", `"nope"`) {
		t.Fatalf("want undeclared variable error:\n%s", diagText(diags))
	}
	src = strings.Replace(src, "var.nope", `jsondecode("{}").x`, 1)
	m, diags := Parse(map[string][]byte{filepath.Join(dir, "m.hcl"): []byte(src)}, nil)
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	c := mustConfig(t, m, "v", "x86_64")
	if c.UKI.SBAT != "cfs,1,Fedora,cfs,1,https://fedoraproject.org\n" || c.UKI.Name != "FEDORA-a-b" || c.Kernel.Cmdline[0] != "fallback" {
		t.Errorf("uki %+v cmdline %q", c.UKI, c.Kernel.Cmdline)
	}
	_, diags = Parse(map[string][]byte{filepath.Join(dir, "m.hcl"): []byte(strings.Replace(src, "sbat.csv", "missing.csv", 1))}, nil)
	if !hasDiag(diags, "Invalid function argument", "missing.csv: no such file or directory") {
		t.Errorf("want a file() error:\n%s", diagText(diags))
	}
}

func TestLocals(t *testing.T) {
	src := `
locals {
  c = concat(local.b, ["c"])
  a = ["a"]
}
locals {
  b = concat(local.a, ["b"])
}
` + base + `
variant "v" {
  source {
    image = "docker://quay.io/fedora/fedora-iot:43"
  }
  kernel {
    cmdline = local.c
  }
}
`
	m := mustParse(t, map[string]string{"m.hcl": src}, nil)
	if c := mustConfig(t, m, "v", "x86_64"); !slices.Equal(c.Kernel.Cmdline, []string{"a", "b", "c"}) {
		t.Errorf("cmdline = %q", c.Kernel.Cmdline)
	}
}

func findSetting(t *testing.T, settings []Setting, path string) Setting {
	t.Helper()
	for _, s := range settings {
		if s.Path == path {
			return s
		}
	}
	t.Fatalf("no setting %s", path)
	return Setting{}
}

func TestExplainProvenance(t *testing.T) {
	src := `
variable "size" {
  default = "2GiB"
}
compose {
  release = "43"
}
defaults {
  composefs {
    verity = "none"
  }
  disk {
    size = var.size
    partition "esp" {
      size = "64MiB"
    }
    partition "root" {}
  }
  arch "aarch64" {
    test {
      memory = "2GiB"
    }
  }
}
variant "v" {
  arches = ["x86_64", "aarch64"]
  source {
    image = "docker://quay.io/fedora/fedora-iot:43"
  }
  arch "aarch64" {
    test {
      timeout = "20m"
    }
  }
}
`
	m := mustParse(t, map[string]string{"dir/m.hcl": src}, &Options{Vars: []string{"size=3GiB"}})
	settings, err := m.Explain("v", "aarch64")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		value  string
		origin Origin
		at     string
		block  string
	}{
		{"name", `"V"`, OriginDefault, "", ""},
		{"composefs.verity", `"none"`, OriginDefaults, "dir/m.hcl:10:5", "defaults"},
		{"disk.size", `"3GiB"`, OriginDefaults, "dir/m.hcl:13:5", "defaults"},
		{"test.memory", `"2GiB"`, OriginDefaultsArch, "dir/m.hcl:21:7", `defaults arch "aarch64"`},
		{"source.image", `"docker://quay.io/fedora/fedora-iot:43"`, OriginVariant, "dir/m.hcl:28:5", `variant "v"`},
		{"test.timeout", `"20m"`, OriginVariantArch, "dir/m.hcl:32:7", `variant "v" arch "aarch64"`},
		{"disk.partition.esp.size", `"64MiB"`, OriginDefaults, "dir/m.hcl:15:7", "defaults"},
		{"disk.partition.root.size", `0`, OriginDefault, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			s := findSetting(t, settings, tt.path)
			at := ""
			if s.At != nil {
				at = s.At.String()
			}
			if s.Value != tt.value || s.Origin != tt.origin || at != tt.at || s.Block != tt.block {
				t.Errorf("got %s %s %s %q, want %s %s %s %q", s.Value, s.Origin, at, s.Block, tt.value, tt.origin, tt.at, tt.block)
			}
		})
	}
	s := findSetting(t, settings, "disk.size")
	if len(s.Vars) != 1 || s.Vars[0] != (VarRef{Name: "size", Value: `"3GiB"`, Source: VarFromFlag, From: "-var"}) {
		t.Errorf("disk.size vars = %+v", s.Vars)
	}
	if n := findSetting(t, settings, "name"); n.Note == "" {
		t.Error("derived default has no note")
	}
	if _, err := m.Explain("vv", "x86_64"); err == nil || !strings.Contains(err.Error(), `(did you mean "v"?)`) {
		t.Errorf("unknown variant error = %v", err)
	}
	if _, err := m.Config("v", "ppc64le"); err == nil {
		t.Error("Config for an arch the variant is not built for succeeded")
	}
}

func TestConfigIsACopy(t *testing.T) {
	m := mustParse(t, map[string]string{"m.hcl": base + simpleVariant}, nil)
	c := mustConfig(t, m, "v", "x86_64")
	c.Disk.Partitions[0].Size = 1
	c.Disk.Formats[0] = "qcow2"
	if c2 := mustConfig(t, m, "v", "x86_64"); c2.Disk.Partitions[0].Size != 64<<20 || c2.Disk.Formats[0] != "raw" {
		t.Error("modifying a Config changed the manifest")
	}
}

func TestParseDoesNotModifyInput(t *testing.T) {
	files := map[string][]byte{"m.hcl": []byte(base + simpleVariant)}
	dir := t.TempDir()
	vf := filepath.Join(dir, "v.hcl")
	if err := os.WriteFile(vf, []byte(""), 0o644); err != nil {
		t.Fatal(err)
	}
	m, diags := Parse(files, &Options{VarFiles: []string{vf}})
	if diags.HasErrors() {
		t.Fatal(diagText(diags))
	}
	if len(files) != 1 || len(m.Files()) != 1 {
		t.Errorf("files = %d, Files() = %d; want 1 and 1", len(files), len(m.Files()))
	}
}
