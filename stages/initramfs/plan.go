package initramfs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/internal/kmod"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/initramfs/initbin"
)

// Kind is the stage kind.
const Kind = "initramfs"

// Version is the stage implementation version (part of every cache key).
const Version = "1"

// Output is the name of the stage's output: the initramfs archive.
const Output = "initramfs"

// DefaultRootLabel is the root partition's GPT name when the manifest
// declares no root partition label (docs/boot-layout.md).
const DefaultRootLabel = "root"

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

// Stage is the initramfs stage.
type Stage struct {
	// initBinary returns the cfs-init binary for a GOARCH; nil means
	// initbin.Binary (tests substitute it).
	initBinary func(goarch string) ([]byte, error)
}

// New returns the initramfs stage.
func New() *Stage { return &Stage{} }

// Kind implements pipeline.Stage.
func (s *Stage) Kind() string { return Kind }

// Version implements pipeline.Stage.
func (s *Stage) Version() string { return Version }

// Inputs implements pipeline.Stage: the source stage's tree and analysis.
func (s *Stage) Inputs() []pipeline.Dep { return []pipeline.Dep{{Kind: "source"}} }

func (s *Stage) binary(goarch string) ([]byte, error) {
	if s.initBinary != nil {
		return s.initBinary(goarch)
	}
	return initbin.Binary(goarch)
}

// Plan implements pipeline.Stage (see [Resolve]).
func (s *Stage) Plan(_ context.Context, pc *pipeline.PlanContext) (any, error) {
	return s.Resolve(pc.Config)
}

// Resolve is Plan on a manifest config. It checks the module names, reads
// and checks the composefs public key when the digest is signed, and
// fingerprints the embedded cfs-init binary.
func (s *Stage) Resolve(mc *manifest.Config) (*Config, error) {
	g, err := goarch(mc.Arch)
	if err != nil {
		return nil, err
	}
	src := mc.Initramfs.Source
	if src == "" {
		src = manifest.InitramfsBuiltin
	}
	c := &Config{Source: src, Arch: mc.Arch, GOARCH: g, Kernel: mc.Source.Kernel}
	if src != manifest.InitramfsBuiltin {
		if err := c.Validate(); err != nil {
			return nil, err
		}
		return c, nil
	}

	c.Composefs = mc.Composefs.Enabled
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
	c.Verity = initconfig.VerityNone
	if c.Composefs {
		if mc.Composefs.Verity != "" {
			c.Verity = mc.Composefs.Verity
		}
		if c.Signed = mc.Composefs.Signed; c.Signed {
			if c.PublicKey, err = publicKey(mc.Signing); err != nil {
				return nil, fmt.Errorf("composefs.signed: %w", err)
			}
		}
	}
	c.RootLabel = rootLabel(mc.Disk.Partitions)
	bin, err := s.binary(g)
	if err != nil {
		return nil, fmt.Errorf("the builtin initramfs needs cfs-init: %w", err)
	}
	sum := sha256.Sum256(bin)
	c.InitSHA256 = hex.EncodeToString(sum[:])
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// publicKey reads the key the composefs digest signature is checked with:
// signing.pub, else signing.key with .key replaced by .pub (the manifest's
// own default). It returns the key re-encoded as PEM, so equivalent files
// give the same config.
func publicKey(s manifest.Signing) (string, error) {
	path := s.Pub
	if path == "" {
		if s.Key == "" {
			return "", errors.New("needs signing { key } (its public key goes into the initramfs)")
		}
		path = strings.TrimSuffix(s.Key, ".key") + ".pub"
	}
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

// rootLabel is the GPT name of the manifest's root partition (the disk
// stage writes it), or [DefaultRootLabel].
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
	return DefaultRootLabel
}

// NewWithInit returns the initramfs stage with bin in place of the
// embedded cfs-init binaries. Tests use it to pin the pipeline's assembly
// independently of the compiled /init's bytes.
func NewWithInit(bin func(goarch string) ([]byte, error)) *Stage {
	return &Stage{initBinary: bin}
}
