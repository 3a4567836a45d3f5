package uki_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/uki"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	cfsstage "github.com/cfs-compose/cfs-compose/stages/composefs"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/initramfs"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
	"github.com/cfs-compose/cfs-compose/stages/source"
	ukistage "github.com/cfs-compose/cfs-compose/stages/uki"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

var (
	_ pipeline.Stage = ukistage.New()
	_ pipeline.Keyer = (*ukistage.Config)(nil)
)

// chain is the stages up to the UKI.
func chain() []pipeline.Stage {
	return []pipeline.Stage{source.New(), cfsstage.New(), initramfs.New(), ukistage.New()}
}

// keySet writes a development key set (cosign key pair, Secure Boot PK,
// KEK and db) to a new directory and returns it.
func keySet(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := signing.GenerateKeys(dir, signing.GenerateOptions{Passphrase: []byte(cosignPassword)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// readBlob returns an output's content.
func readBlob(t *testing.T, st *artifacts.Store, o artifacts.Output) []byte {
	t.Helper()
	b, err := os.ReadFile(st.Path(o.Descriptor))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// section returns a UKI section's payload.
func section(t *testing.T, f *uki.File, name string) []byte {
	t.Helper()
	s := f.Section(name)
	if s == nil {
		t.Fatalf("UKI has no %s section", name)
	}
	b, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUKI builds source -> composefs -> initramfs -> uki from the fixture
// image and reads the UKI back: the kernel and stub from the image, the
// initramfs stage's output, the command line with the composefs stage's
// digest, a valid PE checksum, the published name and the facts recorded.
func TestUKI(t *testing.T) {
	requireInitbin(t)
	c := fixtureContent(t)
	ref := fixtureRef(t)
	tests := []struct {
		name        string
		composefs   bool
		cmdline     []string
		wantCmdline string // with DIGEST for the composefs digest
	}{
		{"composefs", true, []string{"console=ttyS0", "panic=-1", `opt="a b"`}, `console=ttyS0 panic=-1 opt="a b" composefs=DIGEST`},
		{"composefs with init arguments", true, []string{"console=ttyS0", "--", "single"}, "console=ttyS0 composefs=DIGEST -- single"},
		{"plain root", false, []string{"console=ttyS0", "quiet"}, "console=ttyS0 quiet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := config(ref)
			mc.Composefs.Enabled = tc.composefs
			mc.Kernel.Cmdline = tc.cmdline
			st := openStore(t)
			p, res, err := build(t, st, mc, chain()...)
			if err != nil {
				t.Fatal(err)
			}
			digest := ""
			if tc.composefs {
				var d artifacts.ComposefsDigest
				if err := json.Unmarshal(readBlob(t, st, output(t, p, res, "composefs", "digest")), &d); err != nil {
					t.Fatal(err)
				}
				digest = d.Digest
			} else if p.Targets[0].Nodes["composefs"] != nil {
				t.Fatal("composefs stage planned although disabled")
			}
			o := output(t, p, res, contract.UKI, contract.UKIImage.Name)
			if o.Publish == nil || o.Publish.Filename != "Fedora-Testbed-41.x86_64.efi" || o.Publish.Type != "" {
				t.Errorf("publish %+v, want Fedora-Testbed-41.x86_64.efi outside images.json", o.Publish)
			}
			data := readBlob(t, st, o)
			f, err := uki.NewFile(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(tc.wantCmdline, "DIGEST", digest)
			if got := string(section(t, f, uki.SectionCmdline)); got != want {
				t.Errorf(".cmdline %q, want %q", got, want)
			}
			if d, err := f.ComposefsDigest(); tc.composefs && (err != nil || d.Hex != digest) {
				t.Errorf("composefs digest on the command line: %+v %v, want %s", d, err, digest)
			} else if !tc.composefs && err == nil {
				t.Errorf("plain root UKI carries a composefs digest %s", d.Hex)
			}
			if !bytes.Equal(section(t, f, uki.SectionLinux), c.Kernel.Vmlinuz) {
				t.Error(".linux is not the image's vmlinuz")
			}
			if !bytes.Equal(section(t, f, uki.SectionInitrd), readBlob(t, st, output(t, p, res, contract.Initramfs, contract.InitramfsArchive.Name))) {
				t.Error(".initrd is not the initramfs stage's output")
			}
			if got := string(section(t, f, uki.SectionUname)); got != c.Kernel.Version {
				t.Errorf(".uname %q, want %q", got, c.Kernel.Version)
			}
			if got := string(section(t, f, uki.SectionOSRel)); got != fixtures.OSRelease(c.Kernel.Version) {
				t.Errorf(".osrel %q", got)
			}
			if sbat := string(section(t, f, uki.SectionSBAT)); !strings.Contains(sbat, uki.DefaultSBAT) {
				t.Errorf(".sbat lacks the default UKI line:\n%s", sbat)
			}
			if sum, err := f.ComputeChecksum(); err != nil || sum != f.CheckSum || f.Signed {
				t.Errorf("checksum %#x computed %#x (%v), signed %t", f.CheckSum, sum, err, f.Signed)
			}
			meta := res.Of(p.Targets[0].Nodes[contract.UKI]).Record.Meta
			var sections map[string]uint32
			json.Unmarshal(meta["sections"], &sections)
			if string(meta["cmdline"]) != mustJSON(want) || string(meta["composefs_digest"]) != mustJSON(digest) ||
				string(meta["signed"]) != "false" || sections[".linux"] != uint32(len(c.Kernel.Vmlinuz)) {
				t.Errorf("meta %s", mustJSON(meta))
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestCacheKey: same inputs are cached; a command line change reruns the
// UKI only; a host stub is keyed by content, not path.
func TestCacheKey(t *testing.T) {
	requireInitbin(t)
	c := fixtureContent(t)
	ref := fixtureRef(t)
	st := openStore(t)
	p1, res1, err := build(t, st, config(ref), chain()...)
	if err != nil {
		t.Fatal(err)
	}
	key1 := res1.Of(p1.Targets[0].Nodes[contract.UKI]).Key
	stubDir := t.TempDir()
	stubA, stubB := filepath.Join(stubDir, "a", c.StubName()), filepath.Join(stubDir, "b", c.StubName())
	for _, p := range []string{stubA, stubB} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, c.Stub, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var hostKey string
	tests := []struct {
		name string
		edit func(*manifest.Config)
		want map[string]pipeline.Status
	}{
		{"unchanged", func(*manifest.Config) {},
			map[string]pipeline.Status{"source": pipeline.StatusCached, "composefs": pipeline.StatusCached, "initramfs": pipeline.StatusCached, "uki": pipeline.StatusCached}},
		{"cmdline changed", func(c *manifest.Config) { c.Kernel.Cmdline = append(c.Kernel.Cmdline, "quiet") },
			map[string]pipeline.Status{"source": pipeline.StatusCached, "composefs": pipeline.StatusCached, "initramfs": pipeline.StatusCached, "uki": pipeline.StatusRan}},
		{"host stub", func(c *manifest.Config) { c.UKI.Stub = stubA },
			map[string]pipeline.Status{"initramfs": pipeline.StatusCached, "uki": pipeline.StatusRan}},
		{"same host stub elsewhere", func(c *manifest.Config) { c.UKI.Stub = stubB },
			map[string]pipeline.Status{"initramfs": pipeline.StatusCached, "uki": pipeline.StatusCached}},
		{"initramfs module added", func(c *manifest.Config) { c.Initramfs.Modules = []string{"vfat"} },
			map[string]pipeline.Status{"composefs": pipeline.StatusCached, "initramfs": pipeline.StatusRan, "uki": pipeline.StatusRan}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := config(ref)
			tc.edit(mc)
			p, res, err := build(t, st, mc, chain()...)
			if err != nil {
				t.Fatal(err)
			}
			for kind, want := range tc.want {
				if got := res.Of(p.Targets[0].Nodes[kind]).Status; got != want {
					t.Errorf("%s: %s, want %s", kind, got, want)
				}
			}
			nr := res.Of(p.Targets[0].Nodes[contract.UKI])
			switch tc.name {
			case "unchanged":
				if nr.Key != key1 {
					t.Error("key changed with nothing changed")
				}
			case "host stub":
				hostKey = nr.Key
				var stub string
				json.Unmarshal(nr.Record.Meta["stub"], &stub)
				if stub != stubA {
					t.Errorf("meta stub %q, want %s", stub, stubA)
				}
				// The fixture's stub on the host gives the same UKI as the
				// image's stub.
				if a, b := nr.Record.Outputs["uki"].Digest, res1.Of(p1.Targets[0].Nodes[contract.UKI]).Record.Outputs["uki"].Digest; a != b {
					t.Errorf("UKI from the host copy of the stub differs: %s vs %s", a, b)
				}
			case "same host stub elsewhere":
				if nr.Key != hostKey {
					t.Error("the stub's path changed the key")
				}
			}
		})
	}
}

// TestStubErrors: a missing or wrong stub is a clear error naming it, at
// plan time for host stubs.
func TestStubErrors(t *testing.T) {
	requireInitbin(t)
	c := fixtureContent(t)
	dir := t.TempDir()
	notPE := filepath.Join(dir, "notpe.efi.stub")
	os.WriteFile(notPE, []byte("#!/bin/sh\n"), 0o644)
	arm := filepath.Join(dir, "linuxaa64.efi.stub")
	armStub := bytes.Clone(c.Stub)
	// The COFF machine field follows the "PE\0\0" signature at e_lfanew.
	peOff := binary.LittleEndian.Uint32(armStub[0x3c:])
	if string(armStub[peOff:peOff+4]) != "PE\x00\x00" {
		t.Fatalf("fixture stub has no PE signature at e_lfanew %#x", peOff)
	}
	binary.LittleEndian.PutUint16(armStub[peOff+4:], 0xaa64)
	os.WriteFile(arm, armStub, 0o644)
	stubPath := "usr/lib/systemd/boot/efi/" + c.StubName()
	noStub := derivedImage(t, ti.Whiteout(stubPath))
	tests := []struct {
		name   string
		image  string
		stub   string
		atPlan bool
		want   []string
	}{
		{"image without stub", noStub, "image", false, []string{"/" + stubPath, `uki { stub = "image" }`}},
		{"host stub missing", fixtureRef(t), filepath.Join(dir, "absent.stub"), true, []string{"uki.stub", filepath.Join(dir, "absent.stub"), "no such file"}},
		{"host stub not a PE", fixtureRef(t), notPE, true, []string{"uki.stub " + notPE, "not a PE image"}},
		{"host stub for another arch", fixtureRef(t), arm, true, []string{"uki.stub " + arm, "PE machine 0xaa64, want 0x8664"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := config(tc.image)
			mc.UKI.Stub = tc.stub
			mc.Lints.Skip = append(mc.Lints.Skip, "stub-missing")
			p, _, err := build(t, openStore(t), mc, chain()...)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if (p == nil) != tc.atPlan {
				t.Errorf("error at plan time: %t, want %t", p == nil, tc.atPlan)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
		})
	}
}

// TestSecureBoot signs the UKI with the db key: sbverify and
// secureboot.VerifyPEFile accept it with the db certificate and refuse it
// with another; the key's paths stay out of the cache key.
func TestSecureBoot(t *testing.T) {
	requireInitbin(t)
	ref := fixtureRef(t)
	keys := keySet(t)
	other := keySet(t)
	st := openStore(t)
	mc := config(ref)
	mc.SecureBoot = manifest.SecureBoot{Key: filepath.Join(keys, "db.key"), Cert: filepath.Join(keys, "db.crt")}
	p, res, err := build(t, st, mc, chain()...)
	if err != nil {
		t.Fatal(err)
	}
	nr := res.Of(p.Targets[0].Nodes[contract.UKI])
	out := st.Path(nr.Record.Outputs[contract.UKIImage.Name].Descriptor)
	db, err := secureboot.LoadCertificate(filepath.Join(keys, "db.crt"))
	if err != nil {
		t.Fatal(err)
	}
	otherDB, err := secureboot.LoadCertificate(filepath.Join(other, "db.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if sigs, err := secureboot.VerifyPEFile(out, []*x509.Certificate{db}); err != nil || len(sigs) != 1 || sigs[0].Trusted != db {
		t.Errorf("VerifyPEFile with the db cert: %v (%d signatures)", err, len(sigs))
	}
	if _, err := secureboot.VerifyPEFile(out, []*x509.Certificate{otherDB}); !errors.Is(err, secureboot.ErrUntrusted) {
		t.Errorf("VerifyPEFile with another cert: %v, want ErrUntrusted", err)
	}
	if _, err := exec.LookPath("sbverify"); err != nil {
		t.Errorf("sbverify is not installed (make deps installs sbsigntool): %v", err)
	} else {
		if o, err := exec.Command("sbverify", "--cert", filepath.Join(keys, "db.crt"), out).CombinedOutput(); err != nil {
			t.Errorf("sbverify --cert db.crt: %v\n%s", err, o)
		}
		if o, err := exec.Command("sbverify", "--cert", filepath.Join(other, "db.crt"), out).CombinedOutput(); err == nil {
			t.Errorf("sbverify accepts another db cert:\n%s", o)
		}
	}
	f, err := uki.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if sum, err := f.ComputeChecksum(); !f.Signed || err != nil || sum != f.CheckSum {
		t.Errorf("signed %t, checksum %#x computed %#x (%v)", f.Signed, f.CheckSum, sum, err)
	}
	if d, err := f.ComposefsDigest(); err != nil || len(d.Hex) != 64 {
		t.Errorf("signed UKI command line: %+v %v", d, err)
	}
	if string(nr.Record.Meta["signed"]) != "true" || string(nr.Record.Meta["db_cert_sha256"]) != mustJSON(secureboot.Fingerprint(db)) {
		t.Errorf("meta %s", mustJSON(nr.Record.Meta))
	}
	var cfg ukistage.Config
	json.Unmarshal(p.Targets[0].Nodes[contract.UKI].KeyConfig, &cfg)
	if cfg.SecureBoot == nil || cfg.SecureBoot.Key != "" || cfg.SecureBoot.Cert != "" || cfg.SecureBoot.CertFingerprint != secureboot.Fingerprint(db) {
		t.Errorf("cache key config %s", p.Targets[0].Nodes[contract.UKI].KeyConfig)
	}

	// The same keys at other paths: cached. Another key: rerun.
	moved := t.TempDir()
	for _, n := range []string{"db.key", "db.crt"} {
		b, _ := os.ReadFile(filepath.Join(keys, n))
		os.WriteFile(filepath.Join(moved, n), b, 0o600)
	}
	for _, tc := range []struct {
		dir  string
		want pipeline.Status
	}{{moved, pipeline.StatusCached}, {other, pipeline.StatusRan}} {
		mc.SecureBoot = manifest.SecureBoot{Key: filepath.Join(tc.dir, "db.key"), Cert: filepath.Join(tc.dir, "db.crt")}
		p, res, err := build(t, st, mc, chain()...)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Of(p.Targets[0].Nodes[contract.UKI]).Status; got != tc.want {
			t.Errorf("keys in %s: %s, want %s", tc.dir, got, tc.want)
		}
	}
}

// TestPlanErrors: key and command line problems are reported when
// planning, naming the file or argument at fault, never key bytes.
func TestPlanErrors(t *testing.T) {
	keys := keySet(t)
	other := keySet(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	keyDir := filepath.Join(dir, "a-directory.key")
	os.Mkdir(keyDir, 0o700)
	dbKey, dbCrt := filepath.Join(keys, "db.key"), filepath.Join(keys, "db.crt")
	keyPEM, _ := os.ReadFile(dbKey)
	tests := []struct {
		name    string
		sb      manifest.SecureBoot
		cmdline []string
		is      error
		want    []string
	}{
		{"key missing", manifest.SecureBoot{Key: filepath.Join(dir, "absent.key"), Cert: dbCrt}, nil, os.ErrNotExist, []string{"secureboot", filepath.Join(dir, "absent.key")}},
		{"key unreadable", manifest.SecureBoot{Key: keyDir, Cert: dbCrt}, nil, nil, []string{"secureboot", keyDir, "is a directory"}},
		{"key garbage", manifest.SecureBoot{Key: garbage, Cert: dbCrt}, nil, secureboot.ErrKeyFormat, []string{"secureboot", garbage}},
		{"cosign key as db key", manifest.SecureBoot{Key: filepath.Join(keys, "cosign.key"), Cert: dbCrt}, nil, secureboot.ErrKeyFormat, []string{filepath.Join(keys, "cosign.key")}},
		{"key of another cert", manifest.SecureBoot{Key: filepath.Join(other, "db.key"), Cert: dbCrt}, nil, secureboot.ErrKeyMismatch, []string{filepath.Join(other, "db.key"), dbCrt}},
		{"cert garbage", manifest.SecureBoot{Key: dbKey, Cert: garbage}, nil, secureboot.ErrCertFormat, []string{"secureboot", garbage}},
		{"cert missing", manifest.SecureBoot{Key: dbKey, Cert: filepath.Join(dir, "absent.crt")}, nil, os.ErrNotExist, []string{filepath.Join(dir, "absent.crt")}},
		{"composefs= given", manifest.SecureBoot{}, []string{"console=ttyS0", "composefs=" + strings.Repeat("a", 64)}, nil, []string{"kernel.cmdline[1]", "sets composefs= itself"}},
		{"composefs.digest= given", manifest.SecureBoot{}, []string{"composefs.digest=v1-sha256-12:00"}, nil, []string{"kernel.cmdline[0]", "composefs.digest"}},
		{"unquoted space", manifest.SecureBoot{}, []string{"console=ttyS0 quiet"}, nil, []string{`kernel.cmdline[0] = "console=ttyS0 quiet" is not one kernel argument`}},
		{"unbalanced quote", manifest.SecureBoot{}, []string{`opt="a`}, nil, []string{"kernel.cmdline[0]", "unbalanced double quote"}},
		{"empty argument", manifest.SecureBoot{}, []string{"quiet", " "}, nil, []string{"kernel.cmdline[1] is empty"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := config("oci:/nonexistent:x")
			mc.SecureBoot = tc.sb
			if tc.cmdline != nil {
				mc.Kernel.Cmdline = tc.cmdline
			}
			_, err := ukistage.Plan(context.Background(), stagetest.PlanContext(t, mc))
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error does not wrap %v", tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			if strings.Contains(err.Error(), "-----BEGIN") || strings.Contains(err.Error(), string(keyPEM[40:80])) {
				t.Errorf("error shows key material: %v", err)
			}
		})
	}
	// Through the pipeline the error is a planning error: nothing runs.
	mc := config(fixtureRef(t))
	mc.SecureBoot = manifest.SecureBoot{Key: garbage, Cert: dbCrt}
	if p, _, err := build(t, openStore(t), mc, chain()...); p != nil || err == nil || !strings.Contains(err.Error(), "planning stage uki") {
		t.Errorf("pipeline: plan %v, err %v", p != nil, err)
	}
}

// TestSkip: uki { enabled = false } plans no uki stage.
func TestSkip(t *testing.T) {
	mc := config("oci:/nonexistent:x")
	mc.UKI.Enabled = false
	if ukistage.New().Used(stagetest.PlanContext(t, mc).Facts) {
		t.Error("a target without a UKI uses the uki stage")
	}
}

// readDigest decodes the composefs stage's digest output.
func readDigest(st *artifacts.Store, o artifacts.Output) (string, error) {
	b, err := os.ReadFile(st.Path(o.Descriptor))
	if err != nil {
		return "", err
	}
	var d artifacts.ComposefsDigest
	if err := json.Unmarshal(b, &d); err != nil {
		return "", err
	}
	return d.Digest, nil
}
