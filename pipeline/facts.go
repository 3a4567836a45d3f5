package pipeline

import (
	"fmt"

	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/internal/bootlayout"
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
	// Backend is the deployment backend, manifest.BackendComposefs or
	// manifest.BackendOstree: which layout the root partition gets and
	// whether the ostree stage runs.
	Backend string
	// Stateroot is the ostree stateroot (ostree backend only, else "").
	Stateroot string
	// RootLabel is the GPT name and file system label of the root
	// partition (the manifest's type = "root" partition: its label, else
	// its name; bootlayout.DefaultRootLabel without one). The disk stage
	// writes it, cfs-init finds the partition by it and the ostree
	// deployment's root= argument names it.
	RootLabel string
	// Initramfs is manifest.InitramfsBuiltin or manifest.InitramfsImage.
	Initramfs string
	// UKI: the uki stage builds a Unified Kernel Image.
	UKI bool
	// Sign: artifacts are signed with SigningKey; SigningPub is its public
	// key (signing.pub, whose default the schema derives from the key).
	Sign                   bool
	SigningKey, SigningPub string
	// OstreeKey is the ed25519 key (signing.ostree_key) that signs the
	// ostree commit; set with ComposefsSigned and the ostree backend.
	OstreeKey string
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
		Backend:   c.Deploy.Backend,
		RootLabel: rootLabel(c.Disk.Partitions),
		Verity:    initconfig.VerityNone,
		Initramfs: c.Initramfs.Source,
		UKI:       c.UKI.Enabled,
		Sign:      c.Signing.Key != "",
		BootTest:  c.Test.Boot,
	}
	if f.Backend == manifest.BackendOstree {
		f.Stateroot = c.Deploy.Stateroot
	}
	if f.Composefs {
		f.Verity = c.Composefs.Verity
		f.ComposefsSigned = c.Composefs.Signed
	}
	if f.ComposefsSigned && f.Ostree() {
		f.OstreeKey = c.Signing.OstreeKey
	}
	if f.Sign {
		f.SigningKey, f.SigningPub = c.Signing.Key, c.Signing.Pub
	}
	return f, nil
}

// Ostree reports whether the target uses the ostree deployment backend.
func (f *Facts) Ostree() bool { return f.Backend == manifest.BackendOstree }

// rootLabel is the GPT name of the manifest's root partition, or
// bootlayout.DefaultRootLabel.
func rootLabel(parts []manifest.Partition) string {
	for _, p := range parts {
		if p.Type == manifest.PartitionRoot {
			if p.Label != "" {
				return p.Label
			}
			if p.Name != "" {
				return p.Name
			}
		}
	}
	return bootlayout.DefaultRootLabel
}
