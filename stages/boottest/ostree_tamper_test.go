package boottest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/ostree/sysroot"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/testbed"
)

// TestOstreeComposefsTamper: the ostree sysroot booted by cfs-init in
// ostree mode (version ostree-cfs) with one byte of the deployment's
// .ostree.cfs changed in a copy of the disk is refused before anything is
// mounted: cfs-init measures the image against the digest the commit
// records and the UKI's composefs= pins, prints why and powers off.
func TestOstreeComposefsTamper(t *testing.T) {
	requireBoot(t, "x86_64")
	b := buildOS(t)
	const arch = "x86_64"
	mc := *osConfigs[vOstCfs][arch]
	c, err := resolve(&mc, osConfigs.Compose())
	if err != nil {
		t.Fatal(err)
	}
	var dep artifacts.OstreeDeployment
	raw, err := os.ReadFile(b.output(t, vOstCfs, arch, contract.Ostree, contract.OstreeDeployment.Output.Name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dep); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(filepath.Join(b.output(t, vOstCfs, arch, contract.Ostree, contract.OstreeSysroot.Name), dep.Dir, sysroot.ComposefsFile))
	if err != nil {
		t.Fatal(err)
	}
	disk := copyDisk(t, b.disk(t, vOstCfs, arch), t.TempDir())
	root := partition(t, b.layout(t, vOstCfs, arch), "root")
	block := img[:min(len(img), 4096)]
	if n := flipAll(t, disk, root.Offset, root.Size, block, len(block)/2, 4096); n != 1 {
		t.Fatalf("the first block of %s is on the root partition %d times, want 1", sysroot.ComposefsFile, n)
	}
	rep := bootTarget(t, c, disk, dep.ComposefsDigest, c.Features())
	bt := rep.Boot
	const want = "cfs-init: FATAL: composefs image digest mismatch"
	if bt.Outcome != testbed.OutcomeInitFatal || !strings.Contains(bt.Reason, want) {
		t.Fatalf("boot %s (%s), want %s", bt.Outcome, bt.Reason, want)
	}
	// The deployment was found and its commit checked before the image.
	if !strings.Contains(strings.Join(bt.Tail(40), "\n"), "cfs-init: commit "+dep.Commit+" verified") {
		t.Errorf("the console does not show the commit check:\n%s", strings.Join(bt.Tail(40), "\n"))
	}
}
