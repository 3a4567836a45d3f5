package boottest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/testbed"
	_ "github.com/cfs-compose/cfs-compose/testbed/checks" // registers the checks Resolve validates against
)

// Stage is the boottest stage.
type Stage struct {
	// Report, when set, is called with every boot test that ran to a
	// verdict, passed or failed, before Run returns (cfs-compose test
	// collects the JUnit reports of failed tests with it, which the
	// pipeline does not keep). It may be called from several goroutines
	// at once; the outcome's files are removed after it returns.
	Report func(*Outcome)
}

// New returns the boottest stage.
func New() *Stage { return &Stage{} }

// Kind implements pipeline.Stage.
func (s *Stage) Kind() string { return Kind }

// Version implements pipeline.Stage.
func (s *Stage) Version() string { return Version }

// Inputs implements pipeline.Stage: the disk image, and the composefs
// digest the booted image must have (absent when composefs is disabled).
func (s *Stage) Inputs() []pipeline.Dep {
	return []pipeline.Dep{{Kind: "disk"}, {Kind: "composefs", Optional: true}}
}

// Plan implements pipeline.Stage; see [Resolve].
func (s *Stage) Plan(_ context.Context, pc *pipeline.PlanContext) (any, error) {
	return Resolve(pc.Config, pc.Compose)
}

// Defaults of the manifest's test block, for configs that leave them zero.
const (
	defaultTimeout = 5 * time.Minute
	defaultMemory  = 1 << 30
)

// Resolve is Plan on a manifest config: it returns [pipeline.ErrSkip]
// unless test.boot is set; otherwise it checks test.checks against the
// registered checks, finds the arch's default firmware for what
// test.firmware and test.firmware_vars leave empty (the Secure Boot build
// with test.secureboot), hashes the firmware files and the db certificate,
// and makes the expectations explicit.
func Resolve(mc *manifest.Config, compose manifest.Compose) (*Config, error) {
	if !mc.Test.Boot {
		return nil, pipeline.ErrSkip
	}
	t := mc.Test
	c := &Config{Arch: mc.Arch, Name: targetName(mc, compose), Checks: append([]string{}, t.Checks...),
		Timeout: t.Timeout, MemoryMiB: int(t.Memory >> 20)}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if t.Memory == 0 {
		c.MemoryMiB = defaultMemory >> 20
	}
	if c.Arch != manifest.ArchX86_64 && c.Arch != manifest.ArchAarch64 {
		return nil, fmt.Errorf("boottest: arch %q cannot be boot-tested (want x86_64 or aarch64)", c.Arch)
	}
	if c.MemoryMiB < minMemoryMiB {
		return nil, fmt.Errorf("boottest: test.memory = %d bytes is below %d MiB", t.Memory, minMemoryMiB)
	}
	if _, err := testbed.Select(testbed.DefaultRegistry, c.Checks, nil); err != nil {
		return nil, fmt.Errorf("boottest: test.checks: %w (registered: %s)", err, checkNames())
	}
	c.Expect = Expect{Composefs: mc.Composefs.Enabled, SecureBoot: t.SecureBoot}
	if mc.Composefs.Enabled {
		c.Expect.Verity = mc.Composefs.Verity
		if c.Expect.Verity == "" {
			c.Expect.Verity = manifest.VerityNone
		}
		c.Expect.Signed = mc.Composefs.Signed
	}
	if t.SecureBoot {
		if mc.SecureBoot.Cert == "" {
			return nil, fmt.Errorf("boottest: test.secureboot needs secureboot.cert (the db certificate the UKI is signed with)")
		}
		cert, err := secureboot.LoadCertificate(mc.SecureBoot.Cert)
		if err != nil {
			return nil, fmt.Errorf("boottest: secureboot.cert: %w", err)
		}
		c.SecureBoot = &SecureBoot{DBCert: mc.SecureBoot.Cert, DBCertSHA256: secureboot.Fingerprint(cert)}
		if _, err := testbed.FindVirtFwVars(); err != nil {
			return nil, fmt.Errorf("boottest: test.secureboot enrolls keys with virt-fw-vars: %w", err)
		}
	}
	fw, err := resolveFirmware(mc)
	if err != nil {
		return nil, err
	}
	c.Firmware = *fw
	return c, c.Validate()
}

// targetName is <Product>-<Name>-<Release>.<arch>, the base of the
// published file names.
func targetName(mc *manifest.Config, compose manifest.Compose) string {
	product := compose.Product
	if product == "" {
		product = "Fedora"
	}
	return fmt.Sprintf("%s-%s-%s.%s", product, mc.Name, compose.Release, mc.Arch)
}

// resolveFirmware picks the firmware files and hashes them.
func resolveFirmware(mc *manifest.Config) (*Firmware, error) {
	t := mc.Test
	fw := &Firmware{Code: t.Firmware, Vars: t.FirmwareVars}
	if fw.Code == "" || fw.Vars == "" {
		def, err := testbed.FindFirmware(mc.Arch, t.SecureBoot, testbed.FirmwareDirs())
		if err != nil {
			return nil, fmt.Errorf("boottest: test.firmware is not set and %w", err)
		}
		if fw.Code == "" {
			fw.Code, fw.SMM = def.Code, def.SMM
		}
		if fw.Vars == "" {
			fw.Vars = def.VarsTemplate
		}
	}
	if t.Firmware != "" {
		// Debian names the x86_64 Secure Boot builds *.secboot.fd; they
		// only run with SMM.
		fw.SMM = mc.Arch == manifest.ArchX86_64 && (t.SecureBoot || strings.Contains(fw.Code, "secboot"))
	}
	var err error
	if fw.CodeSHA256, err = fileSHA256(fw.Code); err != nil {
		return nil, fmt.Errorf("boottest: firmware code: %w", err)
	}
	if fw.VarsSHA256, err = fileSHA256(fw.Vars); err != nil {
		return nil, fmt.Errorf("boottest: firmware variable template: %w", err)
	}
	return fw, nil
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func checkNames() string {
	var names []string
	for _, c := range testbed.DefaultRegistry.Checks() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}
