package initramfs

import (
	"regexp"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
)

// Config is the resolved configuration of one initramfs stage instance:
// what Plan returns and Run reads. It holds no host paths (the public key
// is carried as its PEM content), so it is its own cache key.
type Config struct {
	// Source is manifest.InitramfsBuiltin or manifest.InitramfsImage.
	Source string `json:"source"`
	// Arch is the architecture being built (x86_64, aarch64); GOARCH is its
	// Go spelling, which selects the cfs-init binary.
	Arch   string `json:"arch"`
	GOARCH string `json:"goarch"`
	// RootBindingKey is the public key (base64, one line) of a signed
	// ostree commit (composefs.signed with the ostree backend), which goes
	// into the initramfs as /etc/ostree/initramfs-root-binding.key, where
	// ostree-prepare-root reads the keys a signed composefs commit must
	// verify with; the image's own initramfs gets it in an appended cpio
	// archive. Empty otherwise.
	RootBindingKey string `json:"root_binding_key,omitempty"`
	// Kernel is source.kernel: the kernel version the source stage was
	// asked to pick; empty means the image's only kernel. The kernel
	// itself comes from the source stage's analysis at Run time.
	Kernel string `json:"kernel,omitempty"`

	// The rest applies to the builtin initramfs only (zero for image).

	// BaseModules are the modules needed to reach and mount the root
	// ([BaseModules] for the composefs setting); Modules are the
	// manifest's initramfs.modules not already in the base set. Names are
	// normalised ('-' as '_'); dependencies are resolved at Run time.
	BaseModules []string `json:"base_modules,omitempty"`
	Modules     []string `json:"modules,omitempty"`
	// Composefs selects the composefs root (true) or the plain deployment
	// tree; Verity is the composefs verity mode (initconfig.Verity*).
	Composefs bool   `json:"composefs"`
	Verity    string `json:"verity,omitempty"`
	// Signed makes cfs-init require a valid digest signature by PublicKey
	// (a PEM PKIX ECDSA P-256 or Ed25519 key).
	Signed    bool   `json:"signed"`
	PublicKey string `json:"public_key,omitempty"`
	// RootLabel is the GPT partition name of the root partition.
	RootLabel string `json:"root_label,omitempty"`
	// Ostree makes cfs-init boot the ostree deployment ostree= names
	// (deploy.backend = "ostree"), as ostree-prepare-root does.
	Ostree bool `json:"ostree,omitempty"`
	// InitSHA256 is the hex SHA-256 of the embedded cfs-init binary for
	// GOARCH, so that a new init binary is a new cache key.
	InitSHA256 string `json:"init_sha256,omitempty"`
}

// moduleName is what a kernel module name looks like.
var moduleName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// initConfig is the cfs-init configuration the builtin initramfs carries
// (its module list is filled in by initramfs.WriteBuiltin).
func (c *Config) initConfig() initconfig.Config {
	return initconfig.Config{
		Version:   initconfig.Version,
		Composefs: c.Composefs,
		Verity:    c.Verity,
		Signed:    c.Signed,
		PublicKey: c.PublicKey,
		RootLabel: c.RootLabel,
		Ostree:    c.Ostree,
	}
}
