package initramfs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

func planConfig() *manifest.Config {
	return &manifest.Config{
		Variant: "v", Name: "V", Arch: manifest.ArchX86_64,
		Source:    manifest.Source{Image: "oci:/x:y", Kernel: "6.12.0"},
		Composefs: manifest.Composefs{Enabled: true, Verity: initconfig.VerityEnable},
		Initramfs: manifest.Initramfs{Source: manifest.InitramfsBuiltin, Modules: []string{"vfat", "overlay", "nls-utf8"}},
	}
}

// fakeInit returns a stage whose cfs-init binary is b.
func fakeInit(b string) *stage {
	return &stage{initBinary: func(g string) ([]byte, error) {
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
	if c.Source != "builtin" || c.GOARCH != "amd64" || c.Kernel != "6.12.0" || !c.Composefs || c.Verity != "enable" || c.RootLabel != "root" || c.Signed || c.Ostree {
		t.Errorf("config %+v", c)
	}
	// The ostree backend puts cfs-init in ostree mode.
	om := planConfig()
	om.Deploy = manifest.Deploy{Backend: manifest.BackendOstree, Stateroot: "debian"}
	co, err := fakeInit("cfs-init v1 ").Resolve(om)
	if err != nil {
		t.Fatal(err)
	}
	if ic := co.initConfig(); !co.Ostree || !ic.Ostree || !ic.Composefs {
		t.Errorf("ostree backend: config %+v, init config %+v", co, ic)
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
	ci, err := (&stage{initBinary: func(string) ([]byte, error) { return nil, errors.New("must not be asked") }}).Resolve(img)
	if err != nil {
		t.Fatal(err)
	}
	if ci.Source != "image" || ci.Modules != nil || ci.InitSHA256 != "" || ci.Kernel != "6.12.0" {
		t.Errorf("image config %+v", ci)
	}

	s := define(fakeInit("x"))
	if s.Kind() != contract.Initramfs || len(s.Inputs()) != 1 || s.Inputs()[0].Kind != contract.Source {
		t.Errorf("kind %s inputs %v", s.Kind(), s.Inputs())
	}
}

// TestResolveErrors: a missing cfs-init and an unknown arch are planning
// errors.
func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name  string
		stage *stage
		edit  func(*manifest.Config)
		want  string
	}{
		{"no cfs-init", &stage{initBinary: func(string) ([]byte, error) { return nil, errors.New("initbin: built without the init binaries") }},
			func(*manifest.Config) {}, "the builtin initramfs needs cfs-init: initbin: built without"},
		{"unknown arch", fakeInit("x"), func(c *manifest.Config) { c.Arch = "riscv64" }, `unsupported architecture "riscv64"`},
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

// Resolve plans s for mc as the pipeline does (facts, then plan).
func (s *stage) Resolve(mc *manifest.Config) (*Config, error) {
	f, err := pipeline.FactsOf(pipeline.Target{Variant: mc.Variant, Name: mc.Name, Arch: mc.Arch}, mc)
	if err != nil {
		return nil, err
	}
	return s.plan(context.Background(), &pipeline.PlanContext{Config: mc, Facts: f})
}
