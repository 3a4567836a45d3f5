package boottest

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/testbed"
)

// Files of a boot test in its work directory.
const (
	ResultsFile = "results.json"
	JUnitFile   = "junit.xml"
	ConsoleFile = "console.log"
)

// consoleTail is how many console lines a failure message carries.
const consoleTail = 25

// Outcome is what [Test] produced.
type Outcome struct {
	Results *artifacts.BootTestResults
	// Dir holds ResultsFile, JUnitFile and ConsoleFile.
	Dir string
	// Failed names the failed checks (empty when the test passed).
	Failed []string
	// Report is the testbed's report of the boot.
	Report *testbed.TargetReport
}

// Err returns nil when no check failed, else an error naming the failed
// checks, the boot's outcome and the last console lines.
func (o *Outcome) Err() error {
	if len(o.Failed) == 0 {
		return nil
	}
	b := o.Report.Boot
	return fmt.Errorf("boot test of %s failed: %s (boot %s: %s); last console lines:\n%s",
		o.Results.Target, strings.Join(o.Failed, ", "), b.Outcome, b.Reason, strings.Join(b.Tail(consoleTail), "\n"))
}

// Features returns the testbed features of the target a config describes.
func (c *Config) Features() []testbed.Feature {
	f := []testbed.Feature{testbed.FeaturePlain, testbed.FeatureUEFI}
	if c.Expect.Composefs {
		f[0] = testbed.FeatureComposefs
		if c.Expect.Signed {
			f = append(f, testbed.FeatureSignedComposefs)
		}
	}
	if c.SecureBoot != nil {
		f = append(f, testbed.FeatureSecureBoot)
	}
	if c.Reboot {
		f = append(f, testbed.FeatureReboot)
	}
	if c.Expect.Ostree {
		f = append(f, testbed.FeatureOstree)
	}
	if c.Expect.ImageInitramfs {
		f = append(f, testbed.FeatureImageInitramfs)
	}
	return f
}

// PrepareFirmware returns the firmware to boot with. With Secure Boot it
// generates a throwaway PK and KEK, enrolls them with the config's db
// certificate into a copy of the variable store template in dir
// (virt-fw-vars; an unformatted template is first formatted by booting the
// firmware once, [testbed.FormatVars]), and returns the firmware with that
// store as its template.
func PrepareFirmware(ctx context.Context, c *Config, dir string) (*testbed.Firmware, error) {
	fw := &testbed.Firmware{Code: c.Firmware.Code, VarsTemplate: c.Firmware.Vars, SMM: c.Firmware.SMM}
	if c.SecureBoot == nil {
		return fw, nil
	}
	cert, err := secureboot.LoadCertificate(c.SecureBoot.DBCert)
	if err != nil {
		return nil, fmt.Errorf("boottest: db certificate: %w", err)
	}
	if got := secureboot.Fingerprint(cert); got != c.SecureBoot.DBCertSHA256 {
		return nil, fmt.Errorf("boottest: db certificate %s changed since planning (sha256 %s, planned %s)", c.SecureBoot.DBCert, got, c.SecureBoot.DBCertSHA256)
	}
	pki, err := secureboot.GeneratePKI(secureboot.PKIOptions{CommonName: "cfs-compose boottest"})
	if err != nil {
		return nil, err
	}
	keys := filepath.Join(dir, "secureboot")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	certFile := func(name string, der []byte) (string, error) {
		p := filepath.Join(keys, name)
		return p, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	}
	pk, err := certFile("PK.crt", pki.PK.Cert.Raw)
	if err != nil {
		return nil, err
	}
	kek, err := certFile("KEK.crt", pki.KEK.Cert.Raw)
	if err != nil {
		return nil, err
	}
	db, err := certFile("db.crt", cert.Raw)
	if err != nil {
		return nil, err
	}
	v, err := testbed.FindVirtFwVars()
	if err != nil {
		return nil, err
	}
	template := c.Firmware.Vars
	if err := testbed.CheckVarsTemplate(template); errors.Is(err, testbed.ErrUnformattedVars) {
		// bookworm's AAVMF_VARS.fd: let the firmware format a copy first.
		template = filepath.Join(dir, "formatted-vars.fd")
		if err := testbed.FormatVars(ctx, c.Arch, *fw, template, filepath.Join(dir, "format")); err != nil {
			return nil, fmt.Errorf("boottest: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("boottest: %w", err)
	}
	vars := filepath.Join(dir, "secureboot-vars.fd")
	if err := v.Enroll(ctx, template, vars, pk, []string{kek}, []string{db}); err != nil {
		return nil, fmt.Errorf("boottest: enrolling Secure Boot keys: %w", err)
	}
	fw.VarsTemplate = vars
	return fw, nil
}

// Target returns the testbed target for booting disk (a raw image) with
// firmware fw; digest is the composefs digest the boot must mount.
func (c *Config) Target(disk, digest string, fw *testbed.Firmware) testbed.Target {
	// Every boot test boots a disk through an initramfs that leaves the
	// root partition at /sysroot.
	t := testbed.Target{Name: c.Name, Features: append(c.Features(), testbed.FeatureSysroot),
		Machine: testbed.Machine{Arch: c.Arch, MemoryMiB: c.MemoryMiB, Firmware: fw, Disk: disk, DiskFormat: "raw", Timeout: time.Duration(c.Timeout)}}
	if c.Expect.Composefs {
		t.ComposefsDigest, t.ComposefsVerity = digest, c.Expect.Verity
	}
	return t
}

// Image is what the boot test boots and what the boot must come up in.
type Image struct {
	// Disk is the raw disk image.
	Disk string
	// ComposefsDigest is the composefs digest the boot must mount
	// (required when Expect.Composefs).
	ComposefsDigest string
	// OstreeDeployment is the deployment the boot must come up in, as
	// `ostree admin status` names it ("STATEROOT CHECKSUM.SERIAL";
	// required when Expect.Ostree).
	OstreeDeployment string
}

// Test boots im.Disk per c and runs the checks, writing ResultsFile,
// JUnitFile and ConsoleFile into dir (created if needed; scratch files go
// there too). agent is AgentPID1 or AgentSystemd ([AgentMode]); with
// AgentSystemd the agent is delivered at boot and the systemd checks
// apply. Check results go to log as they are made, go-test style. The
// error is for problems of the harness (no QEMU, no firmware, unreadable
// files); failed checks are in the outcome ([Outcome.Err]).
func Test(ctx context.Context, c *Config, im Image, agent, dir string, log io.Writer) (*Outcome, error) {
	disk, digest := im.Disk, im.ComposefsDigest
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Expect.Composefs && digest == "" {
		return nil, errors.New("boottest: composefs is enabled but there is no composefs digest to check the boot against")
	}
	if c.Expect.Ostree && im.OstreeDeployment == "" {
		return nil, errors.New("boottest: the disk is an ostree sysroot but there is no deployment to check the boot against")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fw, err := PrepareFirmware(ctx, c, dir)
	if err != nil {
		return nil, err
	}
	tg := c.Target(disk, digest, fw)
	tg.OstreeDeployment = im.OstreeDeployment
	extra, err := agentArgs(ctx, c, agent, filepath.Join(dir, "agent"))
	if err != nil {
		return nil, err
	}
	if extra != nil {
		tg.Features = append(tg.Features, testbed.FeatureSystemd)
		tg.Machine.ExtraArgs = append(tg.Machine.ExtraArgs, extra...)
	}
	boot := testbed.Boot
	if c.Reboot {
		boot = testbed.BootTwice
	}
	b, err := boot(ctx, tg.Machine, filepath.Join(dir, "boot"))
	if err != nil {
		return nil, fmt.Errorf("boottest: booting %s: %w", c.Name, err)
	}
	if err := publishConsole(b, filepath.Join(dir, ConsoleFile)); err != nil {
		return nil, fmt.Errorf("boottest: console log: %w", err)
	}
	// Reports name the console by its published file name.
	b.ConsoleLog, b.OutputDir = c.Name+"."+ConsoleFile, ""
	s := testbed.Suite{Checks: c.Checks, Reporters: testbed.Reporters{
		testbed.NewConsoleReporter(log, consoleTail),
		testbed.NewJUnitReporter(filepath.Join(dir, JUnitFile)),
	}}
	rep, err := s.CheckBoot(ctx, tg, b)
	if err != nil {
		return nil, fmt.Errorf("boottest: %w", err)
	}
	if err := s.Reporters.Close(); err != nil {
		return nil, fmt.Errorf("boottest: writing reports: %w", err)
	}
	o := &Outcome{Dir: dir, Report: rep, Results: results(c, tg, rep)}
	for _, ch := range rep.Checks {
		if ch.Result == testbed.Fail {
			o.Failed = append(o.Failed, ch.Name)
		}
	}
	if err := writeJSON(filepath.Join(dir, ResultsFile), o.Results); err != nil {
		return nil, err
	}
	return o, nil
}

// publishConsole moves the boot's console log to dest; after a reboot
// the first boot's log comes first, then a separator line, then the
// second boot's.
func publishConsole(b *testbed.BootResult, dest string) error {
	if b.Previous == nil {
		return atomicfile.PublishKeep(b.ConsoleLog, dest)
	}
	var buf bytes.Buffer
	for i, p := range []string{b.Previous.ConsoleLog, b.ConsoleLog} {
		if i > 0 {
			buf.WriteString("=== second boot of the same disk (test.reboot) ===\n")
		}
		log, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		buf.Write(log)
	}
	return os.WriteFile(dest, buf.Bytes(), 0o644)
}

// results converts a target report into the published results document.
func results(c *Config, tg testbed.Target, rep *testbed.TargetReport) *artifacts.BootTestResults {
	b := rep.Boot
	r := &artifacts.BootTestResults{
		Schema: artifacts.BootTestSchema, Target: c.Name, Arch: c.Arch, Result: rep.Result.String(),
		Outcome: b.Outcome.String(), Reason: b.Reason, Accel: b.Accel,
		VerdictSeconds: round(b.VerdictAt.Seconds()), QEMUSeconds: round(b.Duration.Seconds()),
		ComposefsDigest: tg.ComposefsDigest, Facts: b.Report.Facts, ProtocolErrors: b.Report.Errors,
		Checks: []artifacts.BootTestCheck{},
	}
	if b.Previous != nil {
		r.FirstBootFacts = b.Previous.Report.Facts
		r.FirstBootVerdictSeconds = round(b.Previous.VerdictAt.Seconds())
	}
	for _, f := range tg.Features {
		r.Features = append(r.Features, string(f))
	}
	slices.Sort(r.Features)
	for _, ch := range rep.Checks {
		r.Checks = append(r.Checks, artifacts.BootTestCheck{Name: ch.Name, Result: ch.Result.String(),
			Description: ch.Description, Seconds: round(ch.Duration.Seconds()), Output: ch.Output})
	}
	for _, g := range b.Report.Checks {
		var out []string
		if g.Detail != "" {
			out = []string{g.Detail}
		}
		r.GuestChecks = append(r.GuestChecks, artifacts.BootTestCheck{Name: g.Name, Result: string(g.Status), Output: out})
	}
	return r
}

func round(s float64) float64 { return float64(int64(s*1000+0.5)) / 1000 }

func writeJSON(p string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("boottest: encoding %s: %w", filepath.Base(p), err)
	}
	return os.WriteFile(p, buf.Bytes(), 0o644)
}
