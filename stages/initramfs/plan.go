package initramfs

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"slices"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/internal/kmod"
	"github.com/cfs-compose/cfs-compose/internal/ostree"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/initramfs/initbin"
)

// Version is the stage implementation version (part of every cache key).
const Version = "1"

// BaseModules returns the modules the builtin initramfs always asks for:
// the virtio disk and ext4 (the root partition), plus loop, erofs and
// overlay for a composefs root. Modules the kernel has built in (ext4 on
// Debian and Fedora kernels) are skipped when resolving.
func BaseModules(composefs bool) []string {
	m := []string{"virtio_blk", "ext4"}
	if composefs {
		m = append(m, "loop", "erofs", "overlay")
	}
	return m
}

// stage is the initramfs stage.
type stage struct {
	// initBinary returns the cfs-init binary for a GOARCH; nil means
	// initbin.Binary (tests substitute it).
	initBinary func(goarch string) ([]byte, error)
}

// New returns the initramfs stage.
func New() pipeline.Stage { return define(&stage{}) }

// NewWithInit returns the initramfs stage with bin in place of the
// embedded cfs-init binaries. Tests use it to pin the pipeline's assembly
// independently of the compiled /init's bytes.
func NewWithInit(bin func(goarch string) ([]byte, error)) pipeline.Stage {
	return define(&stage{initBinary: bin})
}

func define(s *stage) pipeline.Stage {
	return pipeline.Define(pipeline.Spec[Config]{
		Kind: contract.Initramfs, Version: Version,
		Inputs: []pipeline.Dep{{Kind: contract.Source}},
		Plan:   s.plan, Run: s.run,
	})
}

func (s *stage) binary(goarch string) ([]byte, error) {
	if s.initBinary != nil {
		return s.initBinary(goarch)
	}
	return initbin.Binary(goarch)
}

// plan resolves the builtin initramfs's contents from the target's facts:
// the modules (names checked), the composefs mode and, for a signed
// digest, the public key; it fingerprints the embedded cfs-init binary.
func (s *stage) plan(_ context.Context, pc *pipeline.PlanContext) (*Config, error) {
	mc, f := pc.Config, pc.Facts
	c := &Config{Source: f.Initramfs, Arch: f.Arch.Name, GOARCH: f.Arch.GOARCH, Kernel: mc.Source.Kernel}
	if f.OstreeKey != "" {
		k, err := ostree.LoadSigningKey(f.OstreeKey)
		if err != nil {
			return nil, fmt.Errorf("signing.ostree_key: %w", err)
		}
		c.RootBindingKey = ostree.PublicKeyText(k.Public().(ed25519.PublicKey))
	}
	if f.Initramfs != manifest.InitramfsBuiltin {
		return c, nil
	}
	c.Composefs = f.Composefs
	c.BaseModules = BaseModules(c.Composefs)
	c.Modules = []string{}
	for i, m := range mc.Initramfs.Modules {
		if !moduleName.MatchString(m) {
			return nil, fmt.Errorf("initramfs.modules[%d] = %q: not a kernel module name (letters, digits, '_' and '-', no path or .ko suffix)", i, m)
		}
		n := kmod.Name(m)
		if !slices.Contains(c.BaseModules, n) && !slices.Contains(c.Modules, n) {
			c.Modules = append(c.Modules, n)
		}
	}
	c.Verity = f.Verity
	if c.Signed = f.ComposefsSigned; c.Signed {
		var err error
		if c.PublicKey, err = publicKey(f.SigningPub); err != nil {
			return nil, fmt.Errorf("composefs.signed: %w", err)
		}
	}
	c.RootLabel = f.RootLabel
	c.Ostree = f.Ostree()
	bin, err := s.binary(f.Arch.GOARCH)
	if err != nil {
		return nil, fmt.Errorf("the builtin initramfs needs cfs-init: %w", err)
	}
	sum := sha256.Sum256(bin)
	c.InitSHA256 = hex.EncodeToString(sum[:])
	return c, nil
}

// publicKey reads the key the composefs digest signature is checked with
// (signing.pub). It returns the key re-encoded as PEM, so equivalent files
// give the same config.
func publicKey(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the public key: %w", err)
	}
	pub, err := initconfig.ParsePublicKey(data)
	if err != nil {
		return "", fmt.Errorf("public key %s: %w", path, err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("public key %s: %w", path, err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}
