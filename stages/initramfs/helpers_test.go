package initramfs_test

import (
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
)

// The shared stage-test helpers (stages/internal/stagetest) under the
// names this package's tests use.
var (
	fixtureRef     = stagetest.FixtureRef
	requireInitbin = stagetest.RequireInitbin
	fixtureContent = stagetest.FixtureContent
	derivedImage   = stagetest.DerivedImage
	openStore      = stagetest.OpenStore
	build          = stagetest.Build
	output         = stagetest.Output
)

// config is the testbed variant on x86_64 with the builtin initramfs.
func config(image string) *manifest.Config {
	return &manifest.Config{
		Variant: "testbed", Name: "Testbed", Arch: manifest.ArchX86_64,
		Source:    manifest.Source{Image: image, Kind: manifest.SourceContainer},
		Composefs: manifest.Composefs{Enabled: true, Verity: manifest.VerityEnable},
		Kernel:    manifest.Kernel{Cmdline: []string{"console=ttyS0"}},
		Initramfs: manifest.Initramfs{Source: manifest.InitramfsBuiltin, Modules: []string{}},
		UKI:       manifest.UKI{Enabled: true, Stub: "image", Name: "testbed"},
		Disk: manifest.Disk{Size: 256 << 20, Partitions: []manifest.Partition{
			{Name: "esp", Type: "esp", Size: 64 << 20, FS: "vfat", Label: "esp"},
			{Name: "root", Type: "root", FS: "ext4", Label: "root", Verity: true},
		}},
		Lints: manifest.Lints{Skip: []string{"root-dirs"}},
	}
}
