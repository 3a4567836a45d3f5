package boottest

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/testbed"
)

// fakeFirmware writes firmware files with the Debian names into a
// directory on $CFS_FIRMWARE_DIRS and returns it.
func fakeFirmware(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"OVMF_CODE_4M.fd": "code", "OVMF_CODE_4M.secboot.fd": "secboot code", "OVMF_VARS_4M.fd": "vars",
		"AAVMF_CODE.fd": "aa code", "AAVMF_CODE.secboot.fd": "aa secboot code", "AAVMF_VARS.fd": "\x00\x00\x00\x00",
	} {
		write(t, filepath.Join(dir, name), []byte(content), 0o644)
	}
	t.Setenv("CFS_FIRMWARE_DIRS", dir)
	t.Setenv("CFS_VIRT_FW_VARS", "/bin/true")
	return dir
}

func TestResolve(t *testing.T) {
	fwDir := fakeFirmware(t)
	pki, err := secureboot.GeneratePKI(secureboot.PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cert := writeCert(t, t.TempDir(), pki.DB)
	custom := filepath.Join(t.TempDir(), "MY_CODE.secboot.fd")
	write(t, custom, []byte("custom code"), 0o644)
	sum := func(s string) string { d, _, _ := artifacts.HashFile(writeTemp(t, s)); return d.Hex() }

	tests := []struct {
		name    string
		arch    string
		edit    func(c *manifest.Config)
		wantErr string
		check   func(t *testing.T, c *Config)
	}{
		{name: "boot off is skipped", arch: "x86_64", edit: func(c *manifest.Config) { c.Test.Boot = false }, wantErr: errNotUsed.Error()},
		{name: "the test block as the manifest resolves it", arch: "x86_64", edit: func(c *manifest.Config) { c.Test.Timeout, c.Test.Memory = 5*time.Minute, 1<<30 },
			check: func(t *testing.T, c *Config) {
				want := Config{Arch: "x86_64", Name: "Fedora-Testbed-41.x86_64", Checks: []string{}, Timeout: Seconds(5 * time.Minute), MemoryMiB: 1024,
					Firmware: Firmware{Code: filepath.Join(fwDir, "OVMF_CODE_4M.fd"), CodeSHA256: sum("code"),
						Vars: filepath.Join(fwDir, "OVMF_VARS_4M.fd"), VarsSHA256: sum("vars")},
					Expect: Expect{Composefs: true, Verity: "enable"}, AgentSHA256: agentSHA256("x86_64")}
				if !equalJSON(t, c, &want) {
					t.Errorf("got %s", mustJSON(t, c))
				}
				if got := c.Features(); len(got) != 2 || got[0] != testbed.FeatureComposefs || got[1] != testbed.FeatureUEFI {
					t.Errorf("features %v", got)
				}
			}},
		{name: "secure boot", arch: "x86_64", edit: func(c *manifest.Config) {
			c.Test.SecureBoot, c.SecureBoot.Cert, c.Composefs.Signed, c.Composefs.Verity = true, cert, true, "require"
		}, check: func(t *testing.T, c *Config) {
			if c.SecureBoot == nil || c.SecureBoot.DBCertSHA256 != secureboot.Fingerprint(pki.DB.Cert) || c.SecureBoot.DBCert != cert {
				t.Errorf("secure boot %+v", c.SecureBoot)
			}
			if !c.Firmware.SMM || filepath.Base(c.Firmware.Code) != "OVMF_CODE_4M.secboot.fd" {
				t.Errorf("firmware %+v", c.Firmware)
			}
			if c.Expect != (Expect{Composefs: true, Verity: "require", Signed: true, SecureBoot: true}) {
				t.Errorf("expect %+v", c.Expect)
			}
			f := c.Features()
			if len(f) != 4 || f[2] != testbed.FeatureSignedComposefs || f[3] != testbed.FeatureSecureBoot {
				t.Errorf("features %v", f)
			}
		}},
		{name: "plain root", arch: "aarch64", edit: func(c *manifest.Config) {
			c.Composefs = manifest.Composefs{Enabled: false, Verity: "require", Signed: true}
		},
			check: func(t *testing.T, c *Config) {
				if c.Expect != (Expect{}) || c.Features()[0] != testbed.FeaturePlain {
					t.Errorf("expect %+v features %v", c.Expect, c.Features())
				}
				if filepath.Base(c.Firmware.Code) != "AAVMF_CODE.fd" || c.Firmware.SMM {
					t.Errorf("firmware %+v", c.Firmware)
				}
			}},
		{name: "manifest firmware", arch: "x86_64", edit: func(c *manifest.Config) { c.Test.Firmware = custom },
			check: func(t *testing.T, c *Config) {
				if c.Firmware.Code != custom || !c.Firmware.SMM || c.Firmware.CodeSHA256 != sum("custom code") || filepath.Base(c.Firmware.Vars) != "OVMF_VARS_4M.fd" {
					t.Errorf("firmware %+v", c.Firmware)
				}
			}},
		{name: "check selection", arch: "x86_64", edit: func(c *manifest.Config) { c.Test.Checks = []string{"composefs-*", "tag:secureboot"} },
			check: func(t *testing.T, c *Config) {
				if strings.Join(c.Checks, " ") != "composefs-* tag:secureboot" {
					t.Errorf("checks %v", c.Checks)
				}
			}},
		{name: "unknown check", arch: "x86_64", edit: func(c *manifest.Config) { c.Test.Checks = []string{"composefs-root", "no-such-check"} },
			wantErr: `test.checks: testbed: check pattern "no-such-check" matches no registered check`},
		{name: "bad cert", arch: "x86_64", edit: func(c *manifest.Config) { c.Test.SecureBoot, c.SecureBoot.Cert = true, custom },
			wantErr: "secureboot.cert: "},
		{name: "unformatted vars are formatted at run time", arch: "aarch64", edit: func(c *manifest.Config) { c.Test.SecureBoot, c.SecureBoot.Cert = true, cert },
			check: func(t *testing.T, c *Config) {
				if filepath.Base(c.Firmware.Vars) != "AAVMF_VARS.fd" || c.Firmware.VarsSHA256 != sum("\x00\x00\x00\x00") || c.Firmware.SMM {
					t.Errorf("firmware %+v", c.Firmware)
				}
			}},
		{name: "missing firmware file", arch: "x86_64", edit: func(c *manifest.Config) { c.Test.FirmwareVars = "/nonexistent/VARS.fd" },
			wantErr: "firmware variable template: open /nonexistent/VARS.fd"},
		{name: "too little memory", arch: "x86_64", edit: func(c *manifest.Config) { c.Test.Memory = 64 << 20 },
			wantErr: "below 128 MiB"},
		{name: "unknown arch", arch: "riscv64", wantErr: `unsupported architecture "riscv64"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := testbedConfig(tt.arch)
			if tt.edit != nil {
				tt.edit(mc)
			}
			c, err := resolve(mc, manifests{}.Compose())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.wantErr == errNotUsed.Error() && !errors.Is(err, errNotUsed) {
					t.Fatalf("err = %v is not errNotUsed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// TestCacheKey checks that the cache key holds the firmware's and the
// certificate's digests, not their paths.
func TestCacheKey(t *testing.T) {
	fakeFirmware(t)
	pki, err := secureboot.GeneratePKI(secureboot.PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mc := testbedConfig("x86_64")
	mc.Test.SecureBoot, mc.SecureBoot.Cert = true, writeCert(t, t.TempDir(), pki.DB)
	a := mustResolve(t, mc)
	ka := mustJSON(t, a.CacheKey())
	for _, p := range []string{a.Firmware.Code, a.Firmware.Vars, a.SecureBoot.DBCert} {
		if strings.Contains(ka, p) {
			t.Errorf("cache key holds the path %s: %s", p, ka)
		}
	}
	if !strings.Contains(ka, a.Firmware.CodeSHA256) || !strings.Contains(ka, a.SecureBoot.DBCertSHA256) {
		t.Errorf("cache key lacks the digests: %s", ka)
	}
	// The same files elsewhere give the same key.
	moved := fakeFirmware(t)
	mc.SecureBoot.Cert = writeCert(t, t.TempDir(), pki.DB)
	b := mustResolve(t, mc)
	if b.Firmware.Code == a.Firmware.Code || !strings.HasPrefix(b.Firmware.Code, moved) {
		t.Fatalf("firmware not moved: %s", b.Firmware.Code)
	}
	if kb := mustJSON(t, b.CacheKey()); kb != ka {
		t.Errorf("moving the files changed the key:\n%s\n%s", ka, kb)
	}
	// Other content gives another key.
	write(t, b.Firmware.Vars, []byte("other vars"), 0o644)
	if kc := mustJSON(t, mustResolve(t, mc).CacheKey()); kc == ka {
		t.Error("changing the variable template kept the key")
	}
	// test.reboot and the agent's digest are in the key.
	for name, edit := range map[string]func(c *Config){
		"reboot": func(c *Config) { c.Reboot = true },
		"agent":  func(c *Config) { c.AgentSHA256 = strings.Repeat("0", 64) },
	} {
		c := mustResolve(t, mc)
		k0 := mustJSON(t, c.CacheKey())
		edit(c)
		if mustJSON(t, c.CacheKey()) == k0 {
			t.Errorf("changing %s kept the key", name)
		}
	}
	mc.Test.Reboot = true
	if c := mustResolve(t, mc); !c.Reboot || !slices.Contains(c.Features(), testbed.FeatureReboot) {
		t.Errorf("test.reboot: config reboot %v, features %v", c.Reboot, c.Features())
	}
}

func TestValidate(t *testing.T) {
	fakeFirmware(t)
	good := mustResolve(t, testbedConfig("x86_64"))
	tests := []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no name", func(c *Config) { c.Name = "" }, "no target name"},
		{"timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
		{"firmware", func(c *Config) { c.Firmware.Vars = "" }, "firmware"},
		{"digest", func(c *Config) { c.Firmware.CodeSHA256 = "" }, "digests"},
		{"secure boot mismatch", func(c *Config) { c.Expect.SecureBoot = true }, "expect.secureboot"},
		{"plain with verity", func(c *Config) { c.Expect.Composefs = false }, "without composefs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *good
			tt.edit(&c)
			err := c.Validate()
			if (err == nil) != (tt.want == "") || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	write(t, p, []byte(content), 0o644)
	return p
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func equalJSON(t *testing.T, a, b any) bool { return mustJSON(t, a) == mustJSON(t, b) }

// TestLogWriter checks that the console reporter's output becomes one log
// event per line, including a trailing partial line on Flush.
func TestLogWriter(t *testing.T) {
	var buf strings.Builder
	lw := &logWriter{log: newTestLogger(&buf)}
	lw.Write([]byte("first line\nsecond "))
	lw.Write([]byte("line\nthird"))
	lw.Flush()
	got := buf.String()
	for _, want := range []string{`"message":"first line"`, `"message":"second line"`, `"message":"third"`} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 3 {
		t.Errorf("%d events:\n%s", n, got)
	}
}

func newTestLogger(w *strings.Builder) zerolog.Logger { return zerolog.New(w) }

// errNotUsed is what resolve returns for a target that does not run the
// stage.
var errNotUsed = errors.New("the target does not run the boottest stage")

// resolve plans the stage for mc as the pipeline does: facts first, then
// the stage's When and Plan.
func resolve(mc *manifest.Config, compose manifest.Compose) (*Config, error) {
	f, err := pipeline.FactsOf(pipeline.Target{Variant: mc.Variant, Name: mc.Name, Arch: mc.Arch}, mc)
	if err != nil {
		return nil, err
	}
	if !New().Used(f) {
		return nil, errNotUsed
	}
	return Plan(context.Background(), &pipeline.PlanContext{Config: mc, Facts: f, Compose: compose})
}
