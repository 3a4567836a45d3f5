package checks

import (
	"github.com/cfs-compose/cfs-compose/testbed"
)

// Checks of a real operating system booted from its disk: systemd as PID 1
// (the agent delivered at boot), the read-only root and /sysroot.
func init() {
	guest := func(name string) func(*testbed.H) {
		return func(h *testbed.H) {
			h.RequireBooted()
			h.RequireGuestPass(name)
		}
	}
	testbed.Register(testbed.Check{
		Name:        "systemd-running",
		Description: "PID 1 is systemd and `systemctl is-system-running --wait` says running (degraded fails, listing the failed units)",
		Tags:        []string{"systemd", "boot"},
		Requires:    []testbed.Feature{testbed.FeatureSystemd},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			guest("systemd-running")(h)
			if d := h.Fact("agent-delivery"); d != "systemd" {
				h.Errorf("the agent ran as %q, want delivered at boot into systemd", d)
			}
		},
	})
	testbed.Register(testbed.Check{
		Name:        "root-full",
		Description: "statfs of the composefs root reports the EROFS image: 100 % used and small",
		Tags:        []string{"composefs", "rootfs"},
		Requires:    []testbed.Feature{testbed.FeatureComposefs, testbed.FeatureSystemd},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run:         guest("root-full"),
	})
	testbed.Register(testbed.Check{
		Name:        "root-immutable",
		Description: "mkdir at / fails with EROFS or EPERM, writes under /usr fail, and rootfs.extra_dirs exist",
		Tags:        []string{"rootfs"},
		Requires:    []testbed.Feature{testbed.FeatureSystemd},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run:         guest("root-immutable"),
	})
	testbed.Register(testbed.Check{
		Name:        "sysroot",
		Description: "the physical root partition is mounted read-only at /sysroot",
		Tags:        []string{"rootfs"},
		Requires:    []testbed.Feature{testbed.FeatureSysroot},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run:         guest("sysroot"),
	})
}
