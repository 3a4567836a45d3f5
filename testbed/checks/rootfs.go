package checks

import (
	"strings"

	"github.com/cfs-compose/cfs-compose/testbed"
)

func init() {
	testbed.Register(testbed.Check{
		Name:        "composefs-root",
		Description: "/ is an overlay whose lower layer is the EROFS image (composefs)",
		Tags:        []string{"composefs", "rootfs"},
		Requires:    []testbed.Feature{testbed.FeatureComposefs},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			h.RequireBooted()
			if mode := h.Fact("mode"); mode != "composefs" {
				h.Errorf("the agent ran in %s mode (no composefs= on the command line?)", mode)
			}
			h.RequireGuestPass("composefs-root")
		},
	})
	testbed.Register(testbed.Check{
		Name:        "composefs-digest",
		Description: "the mounted image's fs-verity digest equals the composefs= digest on the command line (and the expected one)",
		Tags:        []string{"composefs", "rootfs"},
		Requires:    []testbed.Feature{testbed.FeatureComposefs},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			h.RequireBooted()
			h.RequireGuestPass("composefs-digest")
			if want := h.Target().ComposefsDigest; want != "" {
				if got := h.Fact("composefs"); !strings.EqualFold(got, want) {
					h.Errorf("the guest booted composefs=%s, the compose built %s", got, want)
				}
			}
		},
	})
	testbed.Register(testbed.Check{
		Name:        "usr-readonly",
		Description: "writing under /usr fails with EROFS",
		Tags:        []string{"composefs", "rootfs"},
		Requires:    []testbed.Feature{testbed.FeatureComposefs},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			h.RequireBooted()
			h.RequireGuestPass("usr-readonly")
		},
	})
	testbed.Register(testbed.Check{
		Name:        "plain-root",
		Description: "with composefs disabled, / is a plain root and no composefs digest was recorded",
		Tags:        []string{"rootfs"},
		Requires:    []testbed.Feature{testbed.FeaturePlain},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			h.RequireBooted()
			if mode := h.Fact("mode"); mode != "plain" {
				h.Errorf("the agent ran in %s mode, want plain", mode)
			}
			h.RequireGuestPass("plain-root")
		},
	})
	for _, dir := range []string{"etc", "var"} {
		name := dir + "-writable"
		testbed.Register(testbed.Check{
			Name:        name,
			Description: "a file can be created, written and removed in /" + dir,
			Tags:        []string{"rootfs"},
			Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
			Run: func(h *testbed.H) {
				h.RequireBooted()
				h.RequireGuestPass(name)
			},
		})
	}
}
