package testbed

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

// Feature is a property of a boot target that checks can require or
// conflict with.
type Feature string

// Features of boot targets.
const (
	FeatureComposefs  Feature = "composefs"  // composefs root expected (composefs= on the command line)
	FeaturePlain      Feature = "plain"      // plain root expected (composefs disabled)
	FeatureUEFI       Feature = "uefi"       // booted through UEFI firmware
	FeatureSecureBoot Feature = "secureboot" // Secure Boot enforced with enrolled keys
	FeatureRefusal    Feature = "refusal"    // the firmware is expected to refuse the image
	// FeatureSignedComposefs means the composefs digest is signed and the
	// builtin initramfs must have verified the signature.
	FeatureSignedComposefs Feature = "composefs-signed"
	// FeatureSystemd means the image's init is systemd: the agent is
	// delivered at boot (AgentDelivery) and runs after multi-user.target.
	FeatureSystemd Feature = "systemd"
	// FeatureSysroot means the physical root partition must be mounted
	// read-only at /sysroot (a disk boot through the initramfs).
	FeatureSysroot Feature = "sysroot"
	// FeatureReboot means the disk is booted twice through one kept qcow2
	// overlay ([BootTwice]): the checks see the second boot, whose
	// [BootResult.Previous] is the first.
	FeatureReboot Feature = "reboot"
	// FeatureTamper means the harness changed one byte of a composefs
	// object on the disk after a first boot had enabled fs-verity on it,
	// and told the agent the file's path (AgentOptions.Tampered).
	FeatureTamper Feature = "tamper"
	// FeatureOstree means the disk is an ostree sysroot (deploy.backend =
	// "ostree"): the booted system must be the deployment of
	// [Target.OstreeDeployment], as the image's own `ostree admin status`
	// reports it.
	FeatureOstree Feature = "ostree"
	// FeatureImageInitramfs means the disk boots the image's own
	// initramfs (initramfs.source = "image"), not the builtin cfs-init.
	FeatureImageInitramfs Feature = "image-initramfs"
)

// Check is one host-side check, declared as data and registered by name.
type Check struct {
	Name        string   // unique; [protocol.ValidName] syntax
	Description string   // one line
	Tags        []string // free-form selection tags ("composefs", "secureboot", …)
	// Requires lists features the target must have; otherwise the check is
	// reported as SKIP with the missing feature.
	Requires []Feature
	// Conflicts lists features the target must not have.
	Conflicts []Feature
	// Timeout bounds Run (default 1 minute); the boot itself has its own.
	Timeout time.Duration
	// Run performs the check. It reports through h and may call
	// h.Fatalf/h.Skip to stop early.
	Run func(h *H)
}

// Registry is a set of checks by name. The zero value is empty and ready.
type Registry struct {
	mu     sync.Mutex
	checks map[string]Check
}

// DefaultRegistry holds the checks that topic packages register in init().
var DefaultRegistry = &Registry{}

// Register adds c to the default registry; see [Registry.Register].
func Register(c Check) { DefaultRegistry.Register(c) }

// Register adds a check. It panics (a programming error) on an invalid or
// duplicate name, a missing Run, or a feature both required and in
// conflict.
func (r *Registry) Register(c Check) {
	if err := protocol.ValidName(c.Name); err != nil {
		panic(fmt.Sprintf("testbed: registering check: %v", err))
	}
	if c.Run == nil {
		panic(fmt.Sprintf("testbed: check %s has no Run", c.Name))
	}
	for _, f := range c.Requires {
		for _, g := range c.Conflicts {
			if f == g {
				panic(fmt.Sprintf("testbed: check %s both requires and conflicts with %s", c.Name, f))
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checks == nil {
		r.checks = map[string]Check{}
	}
	if _, dup := r.checks[c.Name]; dup {
		panic(fmt.Sprintf("testbed: check %s registered twice", c.Name))
	}
	r.checks[c.Name] = c
}

// Checks returns the registered checks sorted by name.
func (r *Registry) Checks() []Check {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Check, 0, len(r.checks))
	for _, c := range r.checks {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns the named check.
func (r *Registry) Get(name string) (Check, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.checks[name]
	return c, ok
}
