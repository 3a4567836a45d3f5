package checks

import (
	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

func init() {
	testbed.Register(testbed.Check{
		Name:        "uefi-boot",
		Description: "the guest was booted through UEFI and can read its EFI variables",
		Tags:        []string{"firmware"},
		Requires:    []testbed.Feature{testbed.FeatureUEFI},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			h.RequireBooted()
			if sb := h.Fact("secureboot"); sb == "unsupported" {
				h.Fatalf("the guest sees no /sys/firmware/efi: not booted through UEFI")
			}
			h.RequireGuestPass("secureboot")
		},
	})
	testbed.Register(testbed.Check{
		Name:        "secureboot-enabled",
		Description: "the guest reports Secure Boot enabled (user mode) and the kernel locked down",
		Tags:        []string{"firmware", "secureboot"},
		Requires:    []testbed.Feature{testbed.FeatureUEFI, testbed.FeatureSecureBoot},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			h.RequireBooted()
			if c := h.GuestCheck("secureboot"); c.Status != protocol.Pass {
				h.Errorf("guest secureboot check %s: %s", c.Status, c.Detail)
			}
			if sb := h.Fact("secureboot"); sb != "enabled" {
				h.Fatalf("Secure Boot is %s in the guest, want enabled", sb)
			}
			if sm, ok := h.Report().Fact("setupmode"); ok && sm != "0" {
				h.Errorf("SetupMode=%s: the firmware is not in user mode", sm)
			}
			switch ld, _ := h.Report().Fact("lockdown"); ld {
			case "integrity", "confidentiality":
				h.Logf("kernel lockdown: %s", ld)
			default:
				h.Warnf("kernel lockdown is %q under Secure Boot", ld)
			}
		},
	})
	testbed.Register(testbed.Check{
		Name:        "secureboot-disabled",
		Description: "without enrolled keys the guest reports Secure Boot disabled",
		Tags:        []string{"firmware"},
		Requires:    []testbed.Feature{testbed.FeatureUEFI},
		Conflicts:   []testbed.Feature{testbed.FeatureSecureBoot, testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			h.RequireBooted()
			if sb := h.Fact("secureboot"); sb != "disabled" {
				h.Errorf("Secure Boot is %s in the guest, want disabled", sb)
			}
		},
	})
}
