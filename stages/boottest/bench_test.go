package boottest

import (
	"context"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/testbed"
)

// Time budgets (issues 6 and 7): a boot test reaches its verdict within
// 30 s under TCG, a refusal within 15 s.
const (
	bootBudget    = 30 * time.Second
	refusalBudget = 15 * time.Second
)

// BenchmarkVerdict measures the time from QEMU's start to the verdict of
// the boot test on this host's accelerator (TCG on the build machines),
// for each arch: the signed testbed disk booted with Secure Boot enforced
// (the agent's report end), and an unsigned UKI refused by the firmware.
// budget-ratio is the verdict time over the budget (30 s boot, 15 s
// refusal): below 1 meets it. refusal-ratio relates the full boot to the
// refusal measured in the same run (the firmware's share of a boot).
//
//	go test -run '^$' -bench Verdict -benchtime 1x ./stages/boottest
func BenchmarkVerdict(b *testing.B) {
	for _, arch := range []string{"x86_64", "aarch64"} {
		b.Run(arch, func(b *testing.B) {
			tb := testing.TB(b)
			requireBoot(tb, arch)
			ab := base(tb, arch)
			firmwareEnv(tb, ab)
			pki, err := secureboot.GeneratePKI(secureboot.PKIOptions{})
			if err != nil {
				b.Fatal(err)
			}
			cfg := testbedConfig(arch)
			cfg.SecureBoot = manifest.SecureBoot{Cert: writeCert(tb, b.TempDir(), pki.DB), Key: "db.key"}
			cfg.Test.SecureBoot = true
			c, err := Resolve(cfg, manifests{}.Compose())
			if err != nil {
				b.Fatal(err)
			}
			signed := ab.build(tb, b.TempDir(), imageOpts{composefs: true, verity: manifest.VerityEnable, uki: ukiSigned, signer: pki.DB})
			unsigned := ab.build(tb, b.TempDir(), imageOpts{composefs: true, verity: manifest.VerityEnable})
			fw, err := PrepareFirmware(context.Background(), c, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			verdict := func(img *testImage, want testbed.Outcome) time.Duration {
				tg := c.Target(img.disk, img.digest, fw)
				res, err := testbed.Boot(context.Background(), tg.Machine, b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				if res.Outcome != want || res.VerdictAt == 0 {
					b.Fatalf("boot %s (%s), want %s", res.Outcome, res.Reason, want)
				}
				return res.VerdictAt
			}
			var boot, refusal time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				boot += verdict(signed, testbed.OutcomePoweredOff)
				refusal += verdict(unsigned, testbed.OutcomeRefused)
			}
			n := float64(b.N)
			b.ReportMetric(boot.Seconds()/n, "boot-verdict-s")
			b.ReportMetric(refusal.Seconds()/n, "refusal-verdict-s")
			b.ReportMetric(boot.Seconds()/n/bootBudget.Seconds(), "boot-budget-ratio")
			b.ReportMetric(refusal.Seconds()/n/refusalBudget.Seconds(), "refusal-budget-ratio")
			b.ReportMetric(boot.Seconds()/refusal.Seconds(), "boot/refusal")
		})
	}
}
