package checks

import (
	"fmt"
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
		Name:        "composefs-verity",
		Description: "the composefs root is mounted with the overlayfs verity mode the manifest asks for",
		Tags:        []string{"composefs", "rootfs"},
		Requires:    []testbed.Feature{testbed.FeatureComposefs},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run:         composefsVerity,
	})
	testbed.Register(testbed.Check{
		Name:        "composefs-signature",
		Description: "the builtin initramfs verified the composefs digest's signature before mounting the image",
		Tags:        []string{"composefs", "signing"},
		Requires:    []testbed.Feature{testbed.FeatureComposefs, testbed.FeatureSignedComposefs},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			h.RequireBooted()
			for _, l := range h.Boot().Lines {
				if strings.Contains(l.Text, signatureVerifiedLine) {
					h.Logf("at %.2fs: %s", l.At.Seconds(), l.Text)
					return
				}
			}
			h.Errorf("the console has no %q line: the initramfs did not check the digest signature", signatureVerifiedLine)
		},
	})
	testbed.Register(testbed.Check{
		Name:        "usr-readonly",
		Description: "writing under /usr fails with EROFS (a composefs root, or an ostree deployment, whose /usr ostree-prepare-root binds read-only)",
		Tags:        []string{"composefs", "ostree", "rootfs"},
		Conflicts:   []testbed.Feature{testbed.FeatureRefusal},
		Run: func(h *testbed.H) {
			if !h.Has(testbed.FeatureComposefs) && !h.Has(testbed.FeatureOstree) {
				h.Skip("a plain root without ostree may keep /usr writable")
			}
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

// signatureVerifiedLine is what cfs-init prints once the detached
// signature of the composefs digest has verified.
const signatureVerifiedLine = "cfs-init: composefs digest signature verified"

// overlayVerity maps the manifest's verity modes to the overlayfs option
// the root must carry ("" for none: overlayfs shows no verity option when
// it is off).
var overlayVerity = map[string]string{"none": "", "enable": "verity=on", "require": "verity=require"}

func composefsVerity(h *testbed.H) {
	want := h.Target().ComposefsVerity
	if want == "" {
		h.Skip("the target expects no particular verity mode")
	}
	opt, known := overlayVerity[want]
	if !known {
		h.Fatalf("unknown expected verity mode %q (want none, enable or require)", want)
	}
	h.RequireBooted()
	options := h.Fact("root-options")
	got := ""
	for _, o := range strings.Split(options, ",") {
		if strings.HasPrefix(o, "verity=") && o != "verity=off" {
			got = o
		}
	}
	if got != opt {
		h.Errorf("root mounted with %s, want %s (verity = %q); options: %s", orNone(got), orNone(opt), want, options)
		return
	}
	h.Logf("root mounted with %s (verity = %q)", orNone(got), want)
}

func orNone(opt string) string {
	if opt == "" {
		return "no verity option"
	}
	return fmt.Sprintf("%q", opt)
}
