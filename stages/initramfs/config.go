package initramfs

import (
	"encoding/hex"
	"fmt"
	"regexp"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
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
	// InitSHA256 is the hex SHA-256 of the embedded cfs-init binary for
	// GOARCH, so that a new init binary is a new cache key.
	InitSHA256 string `json:"init_sha256,omitempty"`
}

// moduleName is what a kernel module name looks like.
var moduleName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate checks a config for internal consistency (no I/O).
func (c *Config) Validate() error {
	if _, err := goarch(c.Arch); err != nil {
		return err
	}
	if g, _ := goarch(c.Arch); g != c.GOARCH {
		return fmt.Errorf("goarch %q does not match arch %q (want %q)", c.GOARCH, c.Arch, g)
	}
	switch c.Source {
	case manifest.InitramfsImage:
		if len(c.BaseModules) > 0 || len(c.Modules) > 0 || c.Signed || c.PublicKey != "" || c.InitSHA256 != "" {
			return fmt.Errorf("initramfs source %q takes no modules, keys or init binary", c.Source)
		}
		return nil
	case manifest.InitramfsBuiltin:
	default:
		return fmt.Errorf("initramfs.source = %q: want %q or %q", c.Source, manifest.InitramfsBuiltin, manifest.InitramfsImage)
	}
	for _, m := range append(append([]string(nil), c.BaseModules...), c.Modules...) {
		if !moduleName.MatchString(m) {
			return fmt.Errorf("module %q is not a kernel module name", m)
		}
	}
	if b, err := hex.DecodeString(c.InitSHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("init_sha256 %q is not a hex SHA-256", c.InitSHA256)
	}
	ic := c.initConfig()
	if err := ic.Validate(); err != nil {
		return err
	}
	return nil
}

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
	}
}

// goarch maps an architecture to its Go spelling.
func goarch(arch string) (string, error) {
	switch arch {
	case manifest.ArchX86_64:
		return "amd64", nil
	case manifest.ArchAarch64:
		return "arm64", nil
	}
	return "", fmt.Errorf("unsupported architecture %q (want %s or %s)", arch, manifest.ArchX86_64, manifest.ArchAarch64)
}
