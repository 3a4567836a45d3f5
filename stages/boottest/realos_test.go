package boottest

// The real-OS boot tests: the shipped testbed-os variant (manifests/
// testbed-os.hcl, the Debian systemd OS fixture of `make fixtures`) built
// by the stage table and booted to multi-user.target with the agent
// delivered at boot. Each real-OS boot costs 1-2 minutes (x86_64) or
// 2-4 (aarch64) under TCG, so the set is small:
//
//	os         composefs on, x86_64 and aarch64 (boot-tested; x86_64 boots
//	           twice for persist-reboot, test.reboot of the manifest)
//	os-plain   composefs off (the contingency switch), x86_64 (boot-tested)
//	os-nobt    composefs on, x86_64, no boot test: what a plain `build`
//	           produces, to show the boot test changed nothing in the image
//	os-require composefs with verity = "require", x86_64, no boot test
//	           stage: TestObjectTamper boots it twice itself
//	ostree     the shipped testbed-ostree variant (manifests/
//	           testbed-ostree.hcl): an ostree sysroot booted by the image's
//	           own dracut initramfs and Debian's ostree-prepare-root,
//	           composefs off, x86_64, booted twice (persist-reboot)
//	ostree-cfs the same ostree sysroot with composefs on (verity
//	           "enable"), booted by cfs-init in ostree mode: the builtin
//	           initramfs checks the commit's composefs digest against the
//	           UKI's composefs= and .ostree.cfs against both, and mounts it
//	           over the repository's objects (Debian's ostree cannot),
//	           x86_64, booted once

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
)

const (
	vOS      = "os"
	vOSPlain = "os-plain"
	vOSNoBT  = "os-nobt"
	vOSReq   = "os-require"
	vOstree  = "ostree"
	vOstCfs  = "ostree-cfs"
)

// osSet is a pipeline.Manifests of the real-OS versions.
type osSet map[string]map[string]*manifest.Config

func (m osSet) Variants() []string { return []string{vOS, vOSNoBT, vOSPlain, vOSReq, vOstree, vOstCfs} }
func (m osSet) Arches(v string) []string {
	var as []string
	for _, a := range []string{"aarch64", "x86_64"} {
		if m[v][a] != nil {
			as = append(as, a)
		}
	}
	return as
}
func (m osSet) Config(v, a string) (*manifest.Config, error) { c := *m[v][a]; return &c, nil }
func (m osSet) Compose() manifest.Compose {
	return manifest.Compose{Product: "Fedora", Release: "41", Type: "test"}
}

var (
	osOnce  sync.Once
	osBuilt *built
	osErr   error
	// osConfigs are the manifests osBuilt was built from.
	osConfigs osSet
)

// buildOS builds (and boot-tests) the real-OS set once per test binary;
// arches are the arches of the boot-tested composefs version.
func buildOS(t *testing.T) *built {
	t.Helper()
	layout, err := fixtures.DefaultLayoutDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(layout), fixtures.OSLinkName, "index.json")); err != nil {
		t.Skipf("SKIPPING REAL-OS BOOT TEST: no OS fixture at testbed/fixtures/build/%s (make fixtures builds and links it): %v", fixtures.OSLinkName, err)
	}
	osOnce.Do(func() { osBuilt, osErr = runOSBuild() })
	if osErr != nil {
		t.Fatalf("building the real-OS composes: %v", osErr)
	}
	firmwareEnv(t, osBuilt.tools)
	return osBuilt
}

func runOSBuild() (*built, error) {
	ctx := context.Background()
	// The busybox build sets up the firmware, tools and scratch directory.
	buildOnce.Do(func() { shared, sharedErr = runBuild() })
	if sharedErr != nil {
		return nil, sharedErr
	}
	m, diags := manifest.Load("../../manifests", nil)
	if diags.HasErrors() {
		return nil, diags
	}
	set := osSet{}
	for _, v := range []string{vOS, vOSPlain, vOSNoBT, vOSReq} {
		set[v] = map[string]*manifest.Config{}
		arches := []string{"x86_64"}
		if v == vOS {
			arches = append(arches, "aarch64")
		}
		for _, arch := range arches {
			c, err := m.Config("testbed-os", arch)
			if err != nil {
				return nil, err
			}
			c.Variant, c.Name = v, "Testbed-"+v
			// One reboot test is enough for CI time: x86_64 composefs.
			c.Test.Reboot = c.Test.Reboot && v == vOS && arch == "x86_64"
			switch v {
			case vOSPlain:
				c.Composefs = manifest.Composefs{Enabled: false, Verity: initconfig.VerityNone}
			case vOSNoBT:
				c.Test.Boot = false
			case vOSReq:
				c.Composefs.Verity = initconfig.VerityRequire
				c.Test.Boot = false
			}
			set[v][arch] = c
		}
	}
	c, err := m.Config("testbed-ostree", "x86_64")
	if err != nil {
		return nil, err
	}
	c.Variant, c.Name = vOstree, "Testbed-"+vOstree
	set[vOstree] = map[string]*manifest.Config{"x86_64": c}
	if c, err = m.Config("testbed-ostree", "x86_64"); err != nil {
		return nil, err
	}
	c.Variant, c.Name = vOstCfs, "Testbed-"+vOstCfs
	c.Composefs = manifest.Composefs{Enabled: true, Verity: initconfig.VerityEnable}
	c.Initramfs = manifest.Initramfs{Source: manifest.InitramfsBuiltin}
	c.Test.Reboot = false
	set[vOstCfs] = map[string]*manifest.Config{"x86_64": c}
	osConfigs = set
	b := &built{tools: shared.tools, dir: filepath.Join(shared.dir, "realos")}
	st, err := artifacts.Open(ctx, filepath.Join(b.dir, "cache"), false)
	if err != nil {
		return nil, err
	}
	b.st = st
	start := time.Now()
	plan, err := pipeline.Resolve(ctx, set, stageTable(), &pipeline.ResolveOptions{Offline: true})
	if err != nil {
		return nil, err
	}
	res, err := pipeline.Execute(ctx, plan, b.st, &pipeline.ExecOptions{Jobs: 1})
	if err != nil {
		return nil, err
	}
	b.plan, b.res, b.elapsed = plan, res, time.Since(start)
	return b, nil
}

// TestRealOS boots the real OS: composefs on (x86_64, aarch64) and off
// (x86_64), and deployed as an ostree sysroot booted by the image's own
// initramfs (x86_64), systemd running with nothing failed, every applicable check
// passing; and the composefs image of the boot-tested build is the one a
// plain build (no boot test) produces: the agent is not in the image.
func TestRealOS(t *testing.T) {
	requireBoot(t, "x86_64")
	requireBoot(t, "aarch64")
	b := buildOS(t)
	t.Logf("real-OS build and boot tests: %.1fs, %v", b.elapsed.Seconds(), b.res.Counts())
	common := []string{"agent-report", "uefi-boot", "systemd-running", "root-immutable", "sysroot", "etc-writable", "var-writable"}
	want := map[string][]string{
		vOS:      append([]string{"composefs-root", "composefs-digest", "composefs-verity", "root-full", "usr-readonly"}, common...),
		vOSPlain: append([]string{"plain-root"}, common...),
		// usr-readonly is a composefs check (SKIP without composefs, as for
		// os-plain); root-immutable covers writes under /usr.
		vOstree: append([]string{"plain-root", "ostree-booted", "image-initramfs"}, common...),
		vOstCfs: append([]string{"composefs-root", "composefs-digest", "composefs-verity", "root-full", "usr-readonly", "ostree-booted"}, common...),
	}
	for _, vt := range []struct{ v, arch string }{{vOS, "x86_64"}, {vOSPlain, "x86_64"}, {vOS, "aarch64"}, {vOstree, "x86_64"}, {vOstCfs, "x86_64"}} {
		reboot := (vt.v == vOS || vt.v == vOstree) && vt.arch == "x86_64"
		nr := b.node(t, vt.v, vt.arch, contract.BootTest)
		if nr.Status != pipeline.StatusRan {
			t.Fatalf("%s/%s: boottest %s", vt.v, vt.arch, nr.Status)
		}
		name := "Fedora-Testbed-" + vt.v + "-41." + vt.arch
		pass := want[vt.v]
		if reboot {
			pass = append(slices.Clip(pass), "persist-reboot")
		}
		checkOutputs(t, b.st, nr.Record, name, pass)
		var r artifacts.BootTestResults
		raw, err := os.ReadFile(b.st.Path(nr.Record.Outputs["results"].Descriptor))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if r.Facts["agent-delivery"] != AgentSystemd || r.Facts["pid"] == "1" {
			t.Errorf("%s: agent delivery %q, pid %s", name, r.Facts["agent-delivery"], r.Facts["pid"])
		}
		if vt.v == vOstree || vt.v == vOstCfs {
			// The guest booted the deployment the ostree stage wrote.
			var dep artifacts.OstreeDeployment
			rec := b.node(t, vt.v, vt.arch, contract.Ostree).Record
			raw, err := os.ReadFile(b.st.Path(rec.Outputs["deployment"].Descriptor))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &dep); err != nil {
				t.Fatal(err)
			}
			if want := dep.Stateroot + " " + dep.Commit + ".0"; r.Facts["ostree-booted"] != want {
				t.Errorf("%s: booted deployment %q, the compose wrote %q", name, r.Facts["ostree-booted"], want)
			}
		}
		if !slices.Contains(r.Features, "systemd") {
			t.Errorf("%s: features %v lack systemd", name, r.Features)
		}
		if got := slices.Contains(r.Features, "reboot"); got != reboot {
			t.Errorf("%s: reboot feature %v, want %v", name, got, reboot)
		}
		if reboot {
			// The second boot found the first boot's tokens: the
			// checks above include persist-reboot.
			for _, k := range []string{"persist-etc", "persist-var-lib"} {
				if w := r.FirstBootFacts[k]; w != "new:"+r.Facts[k] {
					t.Errorf("%s: %s first boot %q, second %q", name, k, w, r.Facts[k])
				}
			}
			t.Logf("REAL-OS BOOT TIME %s: first boot verdict %.1fs", name, r.FirstBootVerdictSeconds)
		}
		t.Logf("REAL-OS BOOT TIME %s: verdict %.1fs, QEMU %.1fs", name, r.VerdictSeconds, r.QEMUSeconds)
	}
	// The image under test is the image a plain build produces.
	if got, plain := b.digest(t, vOS, "x86_64"), b.digest(t, vOSNoBT, "x86_64"); got != plain || got == "" {
		t.Errorf("the boot-tested build's composefs digest %s differs from a plain build's %s", got, plain)
	}
}
