package boottest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/testbed"
)

// TestSecureBootRefusals boots, with Secure Boot enforced (a throwaway PK
// and KEK and the testbed version's db certificate, enrolled as the stage
// does), disks of the shared build whose UKI the firmware must refuse: the
// unsigned version, the version signed with a db key that is not enrolled,
// and the testbed disk with one byte of the UKI's .cmdline changed. The
// harness must recognise the refusal and stop QEMU at once. The testbed
// disk with one byte of the composefs image changed on the root partition
// must get past the firmware (its UKI is intact) and be refused by the
// initramfs (cfs-init: FATAL).
func TestSecureBootRefusals(t *testing.T) {
	for _, arch := range []string{"x86_64", "aarch64"} {
		t.Run(arch, func(t *testing.T) {
			requireBoot(t, arch)
			b := build(t)
			c := b.config(t, vTestbed, arch)
			refused := []testbed.Feature{testbed.FeatureUEFI, testbed.FeatureSecureBoot, testbed.FeatureRefusal}
			for _, tc := range []struct {
				name string
				disk func(t *testing.T) string
			}{
				{"unsigned", func(t *testing.T) string { return b.disk(t, vUnsigned, arch) }},
				{"cmdline-changed", func(t *testing.T) string { return b.tamperCmdline(t, vTestbed, arch, t.TempDir()) }},
				{"other-key", func(t *testing.T) string { return b.disk(t, vOtherKey, arch) }},
			} {
				t.Run(tc.name, func(t *testing.T) {
					rep := bootTarget(t, c, tc.disk(t), "", refused)
					bt := rep.Boot
					if r := resultsOf(rep)["firmware-refusal"]; r != testbed.Pass {
						t.Fatalf("firmware-refusal = %s: outcome %s (%s)", r, bt.Outcome, bt.Reason)
					}
					if !strings.Contains(bt.Reason, "Access Denied") && !strings.Contains(bt.Reason, "No bootable option") {
						t.Errorf("refusal reason %q", bt.Reason)
					}
					checkStoppedAtOnce(t, bt)
				})
			}
			t.Run("composefs-image-changed", func(t *testing.T) {
				disk := b.tamperImage(t, vTestbed, arch, t.TempDir())
				rep := bootTarget(t, c, disk, b.digest(t, vTestbed, arch), c.Features())
				bt := rep.Boot
				if bt.Outcome != testbed.OutcomeInitFatal || !strings.Contains(bt.Reason, "cfs-init: FATAL: composefs image digest mismatch") {
					t.Fatalf("boot %s (%s), want cfs-init: FATAL: composefs image digest mismatch", bt.Outcome, bt.Reason)
				}
				if bt.Report.Begun {
					t.Error("the image's init ran")
				}
				if r := resultsOf(rep)["composefs-root"]; r != testbed.Fail {
					t.Errorf("composefs-root = %s after the initramfs refused the image", r)
				}
				// The signed UKI passed the firmware: the refusal is the
				// initramfs's.
				if _, ok := bt.Find("Access Denied"); ok {
					t.Error("the firmware refused the signed UKI")
				}
				checkStoppedAtOnce(t, bt)
			})
		})
	}
}

// checkStoppedAtOnce checks that QEMU was killed right after the verdict
// and reports the refusal time against the budget.
func checkStoppedAtOnce(t *testing.T, b *testbed.BootResult) {
	t.Helper()
	if b.VerdictAt == 0 {
		t.Fatalf("no verdict line: %s (%s)", b.Outcome, b.Reason)
	}
	if lag := b.Duration - b.VerdictAt; lag > 2*time.Second {
		t.Errorf("QEMU ran %.2fs after the verdict: not stopped at once", lag.Seconds())
	}
	within := "within"
	if b.Duration > refusalBudget {
		within = "OVER"
	}
	t.Logf("REFUSAL TIME %s: %s at %.2fs, QEMU stopped at %.2fs (%s the %s budget): %s",
		t.Name(), b.Outcome, b.VerdictAt.Seconds(), b.Duration.Seconds(), within, refusalBudget, b.Reason)
}

// TestSecureBootUnformattedVars boots the aarch64 testbed disk with Secure
// Boot enforced on bookworm's AAVMF (qemu-efi-aarch64), whose
// AAVMF_VARS.fd is all zeros: the stage has the firmware format a copy
// first, enrolls the keys into it, and the signed UKI boots with Secure
// Boot enabled.
func TestSecureBootUnformattedVars(t *testing.T) {
	requireBoot(t, "aarch64")
	code, vars := "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"
	if err := testbed.CheckVarsTemplate(vars); !errors.Is(err, testbed.ErrUnformattedVars) {
		t.Skipf("SKIPPING: %s is not an unformatted template (qemu-efi-aarch64 from bookworm ships one): %v", vars, err)
	}
	b := build(t)
	cfg := *b.set[vTestbed]["aarch64"]
	cfg.Test.Firmware, cfg.Test.FirmwareVars = code, vars
	start := time.Now()
	nr, st, logs, err := runStage(t, &cfg, b.disk(t, vTestbed, "aarch64"), b.digest(t, vTestbed, "aarch64"))
	if err != nil {
		t.Fatalf("stage failed: %v\nlogs:\n%s", err, logs)
	}
	t.Logf("format, enroll and boot: %.1fs", time.Since(start).Seconds())
	checkOutputs(t, st, nr.Record, "Fedora-Testbed-41.aarch64", []string{"agent-report", "uefi-boot", "secureboot-enabled",
		"composefs-root", "composefs-digest", "composefs-signature"})
}
