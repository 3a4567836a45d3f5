package uki_test

// End-to-end boots: the fixture image goes through source, composefs,
// initramfs, uki and disk, and the disk boots in QEMU (TCG) through OVMF,
// which starts the UKI from EFI/BOOT/BOOTX64.EFI; the builtin initramfs
// mounts the root and the fixture's test agent reports the checks.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/debfetch"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/disk"
	"github.com/cfs-compose/cfs-compose/testbed"
	_ "github.com/cfs-compose/cfs-compose/testbed/checks"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
)

// bootTimeout bounds one boot; TCG under CI contention is 2-3x slower
// than on an idle host.
const bootTimeout = 3 * time.Minute

// requireBoot skips under -short and, loudly, when QEMU or the disk tools
// are missing; it returns the fixture's host tools (trixie OVMF,
// virt-fw-vars).
func requireBoot(t *testing.T) *fixtures.Tools {
	t.Helper()
	if testing.Short() {
		t.Skip("real QEMU boot test; skipped with -short")
	}
	for _, tool := range []string{"qemu-img", "mkfs.ext4", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING REAL BOOT TEST: %s is not installed (make deps installs qemu-system-x86, qemu-utils, e2fsprogs, gdisk)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING REAL BOOT TEST: the disk stage needs root (device nodes and owners in the root partition); CI runs as root")
	}
	fixtureLayout(t)
	cache, err := debfetch.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	l, err := fixtures.ReadLock(cache)
	if err != nil {
		t.Fatal(err)
	}
	tools, err := fixtures.ExtractTools(context.Background(), cache, l)
	if err != nil {
		t.Fatalf("extracting the fixture tools: %v", err)
	}
	if os.Getenv("CFS_VIRT_FW_VARS") == "" {
		t.Setenv("CFS_VIRT_FW_VARS", tools.VirtFwVarsWrapper)
	}
	return tools
}

// TestBoot builds and boots x86_64 disks with composefs, with the plain
// root (composefs disabled), and with composefs and a signed digest
// (verity = "require") from a UKI signed with the db key, booted with
// Secure Boot enforced and the test keys enrolled; and an aarch64 composefs
// disk on AAVMF.
func TestBoot(t *testing.T) {
	requireInitbin(t)
	tools := requireBoot(t)
	ref := fixtureRef(t)
	keys := keySet(t)
	tests := []struct {
		name     string
		arch     string
		edit     func(*manifest.Config)
		secure   bool
		features []testbed.Feature
		mustPass []string
	}{
		{"composefs", manifest.ArchX86_64, func(*manifest.Config) {}, false,
			[]testbed.Feature{testbed.FeatureComposefs, testbed.FeatureUEFI},
			[]string{"agent-report", "uefi-boot", "secureboot-disabled", "composefs-root", "composefs-digest", "usr-readonly", "etc-writable", "var-writable"}},
		{"plain", manifest.ArchX86_64, func(c *manifest.Config) { c.Composefs.Enabled = false }, false,
			[]testbed.Feature{testbed.FeaturePlain, testbed.FeatureUEFI},
			[]string{"agent-report", "uefi-boot", "plain-root", "etc-writable", "var-writable"}},
		{"secureboot-signed-composefs", manifest.ArchX86_64, func(c *manifest.Config) {
			c.Composefs.Signed, c.Composefs.Verity = true, initconfig.VerityRequire
			c.Signing = manifest.Signing{Key: filepath.Join(keys, "cosign.key"), Pub: filepath.Join(keys, "cosign.pub")}
			c.SecureBoot = manifest.SecureBoot{Key: filepath.Join(keys, "db.key"), Cert: filepath.Join(keys, "db.crt")}
		}, true,
			[]testbed.Feature{testbed.FeatureComposefs, testbed.FeatureUEFI, testbed.FeatureSecureBoot},
			[]string{"agent-report", "uefi-boot", "secureboot-enabled", "composefs-root", "composefs-digest", "usr-readonly", "etc-writable", "var-writable"}},
		{"composefs", manifest.ArchAarch64, func(*manifest.Config) {}, false,
			[]testbed.Feature{testbed.FeatureComposefs, testbed.FeatureUEFI},
			[]string{"agent-report", "uefi-boot", "composefs-root", "composefs-digest", "usr-readonly", "etc-writable", "var-writable"}},
	}
	for _, tc := range tests {
		t.Run(tc.arch+"-"+tc.name, func(t *testing.T) {
			if _, err := exec.LookPath("qemu-system-" + tc.arch); err != nil {
				t.Skipf("SKIPPING REAL BOOT TEST: qemu-system-%s is not installed (make deps installs qemu-system-x86 and qemu-system-arm)", tc.arch)
			}
			fw, err := testbed.FindFirmware(tc.arch, tc.secure, testbed.FirmwareDirs(tools.OVMFDir, tools.AAVMFDir))
			if err != nil {
				t.Fatalf("no UEFI firmware for %s (the fixture cache has trixie's OVMF and AAVMF): %v", tc.arch, err)
			}
			if tc.secure {
				vars, err := testbed.EnrollSecureBoot(context.Background(), fw.VarsTemplate, filepath.Join(keys, "PK.crt"),
					[]string{filepath.Join(keys, "KEK.crt")}, []string{filepath.Join(keys, "db.crt")})
				if err != nil {
					t.Fatal(err)
				}
				defer os.Remove(vars)
				fw.VarsTemplate = vars
			}
			mc := config(ref)
			mc.Arch = tc.arch
			mc.Kernel.Cmdline = append(strings.Fields(testbed.DefaultConsole(tc.arch)), "panic=-1")
			mc.Disk.Formats = []string{"raw"}
			tc.edit(mc)
			st := openStore(t)
			start := time.Now()
			p, res, err := build(t, st, mc, append(chain(), disk.New())...)
			if err != nil {
				t.Fatal(err)
			}
			for _, kind := range []string{"source", "composefs", "initramfs", "uki", "disk"} {
				if n := p.Targets[0].Nodes[kind]; n != nil {
					t.Logf("STAGE TIME %s: %s", kind, res.Of(n).Wall.Round(time.Millisecond))
				}
			}
			t.Logf("BUILD TIME source..disk: %s", time.Since(start).Round(time.Millisecond))
			raw := st.Path(output(t, p, res, contract.Disk, contract.DiskRaw.Name).Descriptor)
			digest := ""
			if mc.Composefs.Enabled {
				d, err := readDigest(st, output(t, p, res, "composefs", "digest"))
				if err != nil {
					t.Fatal(err)
				}
				digest = d
			}
			rep := runBoot(t, testbed.Target{Name: tc.arch + "-" + tc.name, Features: tc.features, ComposefsDigest: digest,
				Machine: testbed.Machine{Arch: tc.arch, Firmware: &fw, Disk: raw, Timeout: bootTimeout}}, tc.mustPass...)
			console := strings.Join(rep.Boot.Tail(400), "\n")
			if !strings.Contains(console, "cfs-init: ") {
				t.Errorf("the console shows no cfs-init progress lines (was the builtin initramfs used?)")
			}
			if strings.Contains(console, "cfs-init: FATAL") {
				t.Errorf("cfs-init refused to boot:\n%s", console)
			}
		})
	}
}

// runBoot boots a target with every registered check and requires that
// none fails or warns and that the wanted checks passed.
func runBoot(t *testing.T, tg testbed.Target, mustPass ...string) *testbed.TargetReport {
	t.Helper()
	out := t.TempDir()
	var console bytes.Buffer
	s := testbed.Suite{OutputDir: out, Reporters: testbed.Reporters{
		testbed.NewConsoleReporter(&console, 40),
		testbed.NewJUnitReporter(filepath.Join(out, tg.Name, "junit.xml")),
	}}
	rep, err := s.Run(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reporters.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", console.String())
	b := rep.Boot
	t.Logf("BOOT TIME %s: %s at %.2fs (accel %s), qemu exited at %.2fs", tg.Name, b.Outcome, b.VerdictAt.Seconds(), b.Accel, b.Duration.Seconds())
	results := map[string]testbed.Result{}
	for _, c := range rep.Checks {
		results[c.Name] = c.Result
		if c.Result == testbed.Fail || c.Result == testbed.Warn {
			t.Errorf("check %s: %s: %s", c.Name, c.Result, strings.Join(c.Output, "; "))
		}
	}
	for _, n := range mustPass {
		if results[n] != testbed.Pass {
			t.Errorf("check %s: %s, want PASS", n, results[n])
		}
	}
	return rep
}
