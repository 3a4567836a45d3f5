package checks

import (
	"strings"

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
	testbed.Register(testbed.Check{
		Name:        "object-tamper",
		Description: "a file whose composefs object was changed by one byte (EIO, fs-verity), removed (ENOENT) or replaced by a copy without fs-verity (EIO, overlayfs verity=on/require) on the disk is refused when read, and the system still starts",
		Tags:        []string{"composefs", "verity"},
		Requires:    []testbed.Feature{testbed.FeatureTamper, testbed.FeatureComposefs},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run:         guest("object-tamper"),
	})
	testbed.Register(testbed.Check{
		Name:        "ostree-booted",
		Description: "the image's own `ostree admin status` shows the compose's deployment as the booted one",
		Tags:        []string{"ostree", "systemd"},
		Requires:    []testbed.Feature{testbed.FeatureOstree, testbed.FeatureSystemd},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			guest("ostree-booted")(h)
			if want := h.Target().OstreeDeployment; want != "" {
				if got := h.Fact("ostree-booted"); got != want {
					h.Errorf("the guest booted deployment %q, the compose wrote %q", got, want)
				}
			}
		},
	})
	testbed.Register(testbed.Check{
		Name:        "image-initramfs",
		Description: "the initramfs that ran is the image's own (dracut, with ostree-prepare-root for an ostree sysroot), not the builtin cfs-init",
		Tags:        []string{"initramfs", "systemd"},
		Requires:    []testbed.Feature{testbed.FeatureImageInitramfs, testbed.FeatureSystemd},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run:         guest("image-initramfs"),
	})
	testbed.Register(testbed.Check{
		Name:        "persist-reboot",
		Description: "a second boot of the same disk finds the tokens the first wrote to /etc and /var/lib, and the same machine-id",
		Tags:        []string{"systemd", "persistence"},
		Requires:    []testbed.Feature{testbed.FeatureReboot, testbed.FeatureSystemd},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run:         persistReboot,
	})
}

// persistKeys are the agent's persistence facts: "new:<token>" when it
// wrote the token (first boot), the token when it found it.
var persistKeys = []string{"persist-etc", "persist-var-lib"}

func persistReboot(h *testbed.H) {
	first := h.Boot().Previous
	if first == nil {
		b := h.Boot()
		h.Fatalf("no second boot: the first boot ended %s (%s) with report begun=%v ended=%v", b.Outcome, b.Reason, b.Report.Begun, b.Report.Ended)
	}
	h.RequireBooted()
	fact := func(b *testbed.BootResult, which, key string) string {
		v, ok := b.Report.Fact(key)
		if !ok {
			h.Fatalf("the agent reported no fact %q on the %s boot", key, which)
		}
		return v
	}
	for _, k := range persistKeys {
		w, r := fact(first, "first", k), fact(h.Boot(), "second", k)
		tok, ok := strings.CutPrefix(w, "new:")
		switch {
		case !ok:
			h.Errorf("%s: the first boot did not write a new token: %q", k, w)
		case r == w || strings.HasPrefix(r, "new:"):
			h.Errorf("%s: the second boot did not find the first boot's token %s, it wrote a new one: %q", k, tok, r)
		case r != tok:
			h.Errorf("%s: the second boot found %q, the first boot wrote %q", k, r, tok)
		default:
			h.Logf("%s: token %s written on the first boot, found on the second", k, tok)
		}
	}
	m1, m2 := fact(first, "first", "machine-id"), fact(h.Boot(), "second", "machine-id")
	switch {
	case m1 == "" || m1 == "uninitialized":
		h.Errorf("machine-id on the first boot is %q", m1)
	case m1 != m2:
		h.Errorf("machine-id changed across the reboot: %s, then %s", m1, m2)
	default:
		h.Logf("machine-id %s on both boots", m1)
	}
}
