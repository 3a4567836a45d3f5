package boottest

import (
	"context"
	"fmt"
	"strings"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/testbed"
	_ "github.com/cfs-compose/cfs-compose/testbed/checks" // registers the checks Resolve validates against
)

// New returns the boottest stage. A target runs it when test { boot }.
func New() pipeline.Stage { return NewWithReport(nil) }

// NewWithReport returns the boottest stage calling report with every
// boot test that ran to a verdict, passed or failed, before the stage's
// Run returns (cfs-compose test collects the JUnit reports of failed tests
// with it, which the pipeline does not keep). report may be called from
// several goroutines at once; the outcome's files are removed after it
// returns. A nil report is not called.
func NewWithReport(report func(*Outcome)) pipeline.Stage {
	return pipeline.Define(pipeline.Spec[Config]{
		Kind: contract.BootTest, Version: Version,
		// The source tree says how the agent gets in (AgentMode).
		Inputs: []pipeline.Dep{{Kind: contract.Disk}, {Kind: contract.Composefs, Optional: true}, {Kind: contract.Ostree, Optional: true}, {Kind: contract.Source}},
		When:   func(f *pipeline.Facts) bool { return f.BootTest },
		Plan:   Plan,
		Run: func(ctx context.Context, rc *pipeline.RunContext, c *Config) error {
			return run(ctx, rc, c, report)
		},
	})
}

// Plan checks test.checks against the registered checks, finds the arch's
// default firmware for what test.firmware and test.firmware_vars leave
// empty (the Secure Boot build with test.secureboot), hashes the firmware
// files and the db certificate, and makes the expectations explicit from
// the target's facts.
func Plan(_ context.Context, pc *pipeline.PlanContext) (*Config, error) {
	mc, f := pc.Config, pc.Facts
	t := mc.Test
	c := &Config{Arch: f.Arch.Name, Name: artifacts.Basename(pc.Compose.Product, mc.Name, pc.Compose.Release, f.Arch.Name),
		Checks: append([]string{}, t.Checks...), Timeout: Seconds(t.Timeout), MemoryMiB: int(t.Memory >> 20)}
	if c.MemoryMiB < minMemoryMiB {
		return nil, fmt.Errorf("boottest: test.memory = %d bytes is below %d MiB", t.Memory, minMemoryMiB)
	}
	if _, err := testbed.Select(testbed.DefaultRegistry, c.Checks, nil); err != nil {
		return nil, fmt.Errorf("boottest: test.checks: %w (registered: %s)", err, checkNames())
	}
	c.ExtraDirs = append([]string(nil), mc.Rootfs.ExtraDirs...)
	c.AgentSHA256 = agentSHA256(f.Arch.Name)
	c.Reboot = t.Reboot
	c.Expect = Expect{Composefs: f.Composefs, SecureBoot: t.SecureBoot,
		Ostree: f.Ostree(), ImageInitramfs: f.Initramfs == manifest.InitramfsImage}
	if f.Composefs {
		c.Expect.Verity, c.Expect.Signed = f.Verity, f.ComposefsSigned
	}
	if t.SecureBoot {
		cert, err := secureboot.LoadCertificate(mc.SecureBoot.Cert)
		if err != nil {
			return nil, fmt.Errorf("boottest: secureboot.cert: %w", err)
		}
		c.SecureBoot = &SecureBoot{DBCert: mc.SecureBoot.Cert, DBCertSHA256: secureboot.Fingerprint(cert)}
		if _, err := testbed.FindVirtFwVars(); err != nil {
			return nil, fmt.Errorf("boottest: test.secureboot enrolls keys with virt-fw-vars: %w", err)
		}
	}
	fw, err := resolveFirmware(mc, f)
	if err != nil {
		return nil, err
	}
	c.Firmware = *fw
	return c, nil
}

// resolveFirmware picks the firmware files and hashes them.
func resolveFirmware(mc *manifest.Config, f *pipeline.Facts) (*Firmware, error) {
	t := mc.Test
	fw := &Firmware{Code: t.Firmware, Vars: t.FirmwareVars}
	if fw.Code == "" || fw.Vars == "" {
		def, err := testbed.FindFirmware(f.Arch.Name, t.SecureBoot, testbed.FirmwareDirs())
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
		fw.SMM = f.Arch.SecureBootSMM && (t.SecureBoot || strings.Contains(fw.Code, "secboot"))
	}
	code, _, err := artifacts.HashFile(fw.Code)
	if err != nil {
		return nil, fmt.Errorf("boottest: firmware code: %w", err)
	}
	vars, _, err := artifacts.HashFile(fw.Vars)
	if err != nil {
		return nil, fmt.Errorf("boottest: firmware variable template: %w", err)
	}
	fw.CodeSHA256, fw.VarsSHA256 = code.Hex(), vars.Hex()
	return fw, nil
}

func checkNames() string {
	var names []string
	for _, c := range testbed.DefaultRegistry.Checks() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}
