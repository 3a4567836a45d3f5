package initramfs

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

func planConfig() *manifest.Config {
	return &manifest.Config{
		Variant: "v", Name: "V", Arch: manifest.ArchX86_64,
		Source:    manifest.Source{Image: "oci:/x:y", Kernel: "6.12.0"},
		Composefs: manifest.Composefs{Enabled: true, Verity: manifest.VerityEnable},
		Initramfs: manifest.Initramfs{Source: manifest.InitramfsBuiltin, Modules: []string{"vfat", "overlay", "nls-utf8"}},
	}
}

// fakeInit returns a stage whose cfs-init binary is b.
func fakeInit(b string) *Stage {
	return &Stage{initBinary: func(g string) ([]byte, error) {
		if g != "amd64" && g != "arm64" {
			return nil, errors.New("bad goarch " + g)
		}
		return []byte(b + g), nil
	}}
}

// TestResolve checks the resolved config of the builtin and image
// sources, and that a new cfs-init binary changes it.
func TestResolve(t *testing.T) {
	c, err := fakeInit("cfs-init v1 ").Resolve(planConfig())
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != "builtin" || c.GOARCH != "amd64" || c.Kernel != "6.12.0" || !c.Composefs || c.Verity != "enable" || c.RootLabel != "root" || c.Signed {
		t.Errorf("config %+v", c)
	}
	if !slices.Equal(c.BaseModules, []string{"virtio_blk", "ext4", "loop", "erofs", "overlay"}) || !slices.Equal(c.Modules, []string{"vfat", "nls_utf8"}) {
		t.Errorf("modules base %v extra %v", c.BaseModules, c.Modules)
	}
	c2, err := fakeInit("cfs-init v2 ").Resolve(planConfig())
	if err != nil {
		t.Fatal(err)
	}
	if c2.InitSHA256 == c.InitSHA256 {
		t.Error("a different cfs-init binary gives the same init_sha256")
	}
	arm := planConfig()
	arm.Arch = manifest.ArchAarch64
	c3, err := fakeInit("cfs-init v1 ").Resolve(arm)
	if err != nil {
		t.Fatal(err)
	}
	if c3.GOARCH != "arm64" || c3.InitSHA256 == c.InitSHA256 {
		t.Errorf("aarch64: goarch %s, init %s (x86_64 %s)", c3.GOARCH, c3.InitSHA256, c.InitSHA256)
	}

	img := planConfig()
	img.Initramfs.Source = manifest.InitramfsImage
	ci, err := (&Stage{initBinary: func(string) ([]byte, error) { return nil, errors.New("must not be asked") }}).Resolve(img)
	if err != nil {
		t.Fatal(err)
	}
	if ci.Source != "image" || ci.Modules != nil || ci.InitSHA256 != "" || ci.Kernel != "6.12.0" {
		t.Errorf("image config %+v", ci)
	}

	var s pipeline.Stage = fakeInit("x")
	if s.Kind() != Kind || len(s.Inputs()) != 1 || s.Inputs()[0].Kind != "source" {
		t.Errorf("kind %s inputs %v", s.Kind(), s.Inputs())
	}
}

// TestResolveErrors: a missing cfs-init and an unknown arch are planning
// errors.
func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name  string
		stage *Stage
		edit  func(*manifest.Config)
		want  string
	}{
		{"no cfs-init", &Stage{initBinary: func(string) ([]byte, error) { return nil, errors.New("initbin: built without the init binaries") }},
			func(*manifest.Config) {}, "the builtin initramfs needs cfs-init: initbin: built without"},
		{"unknown arch", fakeInit("x"), func(c *manifest.Config) { c.Arch = "riscv64" }, `unsupported architecture "riscv64"`},
		{"unknown source", fakeInit("x"), func(c *manifest.Config) { c.Initramfs.Source = "dracut" }, `initramfs.source = "dracut"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := planConfig()
			tc.edit(mc)
			_, err := tc.stage.Resolve(mc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRootLabel(t *testing.T) {
	tests := []struct {
		name  string
		parts []manifest.Partition
		want  string
	}{
		{"none", nil, "root"},
		{"label", []manifest.Partition{{Name: "esp", Type: "esp", Label: "EFI"}, {Name: "rootfs", Type: "root", Label: "sysroot"}}, "sysroot"},
		{"name", []manifest.Partition{{Name: "rootfs", Type: "root"}}, "rootfs"},
		{"no root type", []manifest.Partition{{Name: "data", Type: "linux", Label: "data"}}, "root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rootLabel(tc.parts); got != tc.want {
				t.Errorf("rootLabel = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := func() Config {
		return Config{Source: "builtin", Arch: "x86_64", GOARCH: "amd64", BaseModules: []string{"erofs"}, Composefs: true,
			Verity: "none", RootLabel: "root", InitSHA256: strings.Repeat("ab", 32)}
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"image ok", func(c *Config) { *c = Config{Source: "image", Arch: "aarch64", GOARCH: "arm64"} }, ""},
		{"goarch mismatch", func(c *Config) { c.GOARCH = "arm64" }, "does not match"},
		{"bad module", func(c *Config) { c.Modules = []string{"a/b"} }, `module "a/b"`},
		{"bad init sha", func(c *Config) { c.InitSHA256 = "xyz" }, "init_sha256"},
		{"bad verity", func(c *Config) { c.Verity = "strict" }, "verity"},
		{"signed without key", func(c *Config) { c.Signed = true }, "public_key"},
		{"image with modules", func(c *Config) { c.Source = "image" }, "takes no modules"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(&c)
			err := c.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}
