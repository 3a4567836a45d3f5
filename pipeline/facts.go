package pipeline

import (
	"fmt"

	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// Facts are the per-target decisions made once, when the plan is made,
// from the target's resolved manifest configuration (whose defaults and
// allowed values the manifest schema owns). Stages receive them in
// [PlanContext]; which stages a target runs is decided from them
// ([Spec.When]), and no stage re-derives them.
type Facts struct {
	Target Target
	// Arch is the target's architecture, with every arch-specific fact.
	Arch *arch.Arch
	// Composefs is the contingency switch: the root is a composefs mount
	// (the composefs stage runs) or a plain deployment tree.
	Composefs bool
	// Verity is the composefs mount's overlayfs verity mode
	// (initconfig.Verity*); initconfig.VerityNone when composefs is off.
	Verity string
	// ComposefsSigned binds the composefs digest with a signature the
	// initramfs checks (never without composefs).
	ComposefsSigned bool
	// Initramfs is manifest.InitramfsBuiltin or manifest.InitramfsImage.
	Initramfs string
	// UKI: the uki stage builds a Unified Kernel Image.
	UKI bool
	// Sign: artifacts are signed with SigningKey; SigningPub is its public
	// key (signing.pub, whose default the schema derives from the key).
	Sign                   bool
	SigningKey, SigningPub string
	// BootTest: the disk image is boot-tested as the last stage.
	BootTest bool
}

// FactsOf decides the facts of one target.
func FactsOf(t Target, c *manifest.Config) (*Facts, error) {
	a, err := arch.Lookup(c.Arch)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	f := &Facts{
		Target:    t,
		Arch:      a,
		Composefs: c.Composefs.Enabled,
		Verity:    initconfig.VerityNone,
		Initramfs: c.Initramfs.Source,
		UKI:       c.UKI.Enabled,
		Sign:      c.Signing.Key != "",
		BootTest:  c.Test.Boot,
	}
	if f.Composefs {
		f.Verity = c.Composefs.Verity
		f.ComposefsSigned = c.Composefs.Signed
	}
	if f.Sign {
		f.SigningKey, f.SigningPub = c.Signing.Key, c.Signing.Pub
	}
	return f, nil
}
