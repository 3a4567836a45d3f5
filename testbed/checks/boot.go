package checks

import (
	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

func init() {
	testbed.Register(testbed.Check{
		Name:        "agent-report",
		Description: "the guest ran the test agent, which reported a complete, well-formed result and powered off",
		Tags:        []string{"boot"},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run:         agentReport,
	})
	testbed.Register(testbed.Check{
		Name:        "firmware-refusal",
		Description: "the firmware refused to start the image (and the harness stopped QEMU at once)",
		Tags:        []string{"boot", "secureboot"},
		Requires:    []testbed.Feature{testbed.FeatureRefusal},
		Run:         firmwareRefusal,
	})
}

func agentReport(h *testbed.H) {
	h.RequireBooted()
	r := h.Report()
	if r.Version != protocol.Version {
		h.Errorf("agent protocol version %q, want %s", r.Version, protocol.Version)
	}
	for _, e := range r.Errors {
		h.Errorf("protocol error in the console: %s", e)
	}
	h.Logf("agent reported %d checks and %d facts; verdict at %.2fs (kernel %s, %s)",
		len(r.Checks), len(r.Facts), h.Boot().VerdictAt.Seconds(), r.Facts["kernel"], r.Facts["arch"])
}

func firmwareRefusal(h *testbed.H) {
	b := h.Boot()
	if b.Outcome != testbed.OutcomeRefused {
		h.Fatalf("the firmware did not refuse the image: outcome %s (%s)", b.Outcome, b.Reason)
	}
	if b.Report.Begun {
		h.Errorf("the agent started although the firmware refused the image")
	}
	h.Logf("refused at %.2fs: %s", b.VerdictAt.Seconds(), b.Reason)
}
