package boottest

import (
	"context"
	"testing"
	"time"

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
// for each arch, on disks of the shared build: the testbed version booted
// with Secure Boot enforced (the agent's report end), and the unsigned
// version refused by the firmware. budget-ratio is the verdict time over
// the budget (30 s boot, 15 s refusal): below 1 meets it. boot/refusal
// relates the full boot to the refusal measured in the same run (the
// firmware's share of a boot).
//
//	go test -run '^$' -bench Verdict -benchtime 1x ./stages/boottest
func BenchmarkVerdict(b *testing.B) {
	for _, arch := range []string{"x86_64", "aarch64"} {
		b.Run(arch, func(b *testing.B) {
			requireBoot(b, arch)
			bt := build(b)
			c := bt.config(b, vTestbed, arch)
			fw, err := PrepareFirmware(context.Background(), c, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			verdict := func(disk, digest string, want testbed.Outcome) time.Duration {
				tg := c.Target(disk, digest, fw)
				res, err := testbed.Boot(context.Background(), tg.Machine, b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				if res.Outcome != want || res.VerdictAt == 0 {
					b.Fatalf("boot %s (%s), want %s", res.Outcome, res.Reason, want)
				}
				return res.VerdictAt
			}
			signed, unsigned := bt.disk(b, vTestbed, arch), bt.disk(b, vUnsigned, arch)
			digest := bt.digest(b, vTestbed, arch)
			var boot, refusal time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				boot += verdict(signed, digest, testbed.OutcomePoweredOff)
				refusal += verdict(unsigned, "", testbed.OutcomeRefused)
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
