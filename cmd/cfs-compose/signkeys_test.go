package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// TestLoadBuildKeys: the build's pre-flight loads every configured key
// and names the file and the targets of each one that fails.
func TestLoadBuildKeys(t *testing.T) {
	keys := testKeys(t)
	other := testKeys(t)
	corrupt := t.TempDir()
	for name, data := range map[string]string{"cosign.key": "garbage\n", "db.key": "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"} {
		if err := os.WriteFile(filepath.Join(corrupt, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := func() testManifests {
		return testManifests{
			"coreos": {"x86_64": variantConfig("coreos", keys, true, true), "aarch64": variantConfig("coreos", keys, true, true)},
			"iot":    {"x86_64": variantConfig("iot", keys, true, false)},
		}
	}
	tests := []struct {
		name     string
		m        func() testManifests
		env      []string
		variants []string
		want     []string // substrings of the error; none: success
		is       error
	}{
		{"all good", good, []string{passwordEnv + "=" + testPass}, nil, nil, nil},
		{"wrong passphrase", good, []string{passwordEnv + "=nope"}, nil,
			[]string{"nothing was run", "signing.key of coreos/aarch64, coreos/x86_64, iot/x86_64: loading cosign key " + filepath.Join(keys, "cosign.key")}, signing.ErrDecrypt},
		{"no passphrase and no terminal", good, nil, nil, []string{"no passphrase: set CFS_SIGNING_PASSWORD"}, nil},
		{"missing key file", func() testManifests {
			m := good()
			m["iot"]["x86_64"].Signing.Key = filepath.Join(keys, "missing.key")
			return m
		}, []string{passwordEnv + "=" + testPass}, nil, []string{"signing.key of iot/x86_64: reading cosign key: open " + filepath.Join(keys, "missing.key")}, os.ErrNotExist},
		{"corrupt cosign key", func() testManifests {
			m := good()
			m["iot"]["x86_64"].Signing.Key = filepath.Join(corrupt, "cosign.key")
			return m
		}, []string{passwordEnv + "=" + testPass}, nil, []string{"loading cosign key " + filepath.Join(corrupt, "cosign.key") + ": signing: not a supported cosign key"}, signing.ErrKeyFormat},
		{"public key of another key", func() testManifests {
			m := good()
			m["iot"]["x86_64"].Signing.Pub = filepath.Join(other, "cosign.pub")
			return m
		}, []string{passwordEnv + "=" + testPass}, nil, []string{"signing.pub of iot/x86_64: " + filepath.Join(other, "cosign.pub") + " (key "}, nil},
		{"missing public key", func() testManifests {
			m := good()
			m["coreos"]["aarch64"].Signing.Pub = filepath.Join(keys, "missing.pub")
			return m
		}, []string{passwordEnv + "=" + testPass}, nil, []string{"signing.pub of coreos/aarch64: reading public key: open " + filepath.Join(keys, "missing.pub")}, os.ErrNotExist},
		{"encrypted Secure Boot key", func() testManifests {
			m := good()
			m["coreos"]["x86_64"].SecureBoot.Key = filepath.Join(corrupt, "db.key")
			m["coreos"]["aarch64"].SecureBoot.Key = filepath.Join(corrupt, "db.key")
			return m
		}, []string{passwordEnv + "=" + testPass}, nil, []string{"secureboot.key/cert of coreos/aarch64, coreos/x86_64: loading private key " + filepath.Join(corrupt, "db.key")}, secureboot.ErrKeyFormat},
		{"Secure Boot key of another certificate", func() testManifests {
			m := good()
			m["coreos"]["x86_64"].SecureBoot.Cert = filepath.Join(other, "db.crt")
			return m
		}, []string{passwordEnv + "=" + testPass}, nil, []string{"secureboot.key/cert of coreos/x86_64"}, secureboot.ErrKeyMismatch},
		{"only the selected variants", func() testManifests {
			m := good()
			m["iot"]["x86_64"].Signing.Key = filepath.Join(keys, "missing.key")
			return m
		}, []string{passwordEnv + "=" + testPass}, []string{"coreos"}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			g := testGlobals(&log)
			g.environ = tc.env
			k, err := g.loadBuildKeys(tc.m(), tc.variants, nil)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if s, ok := k.secret(passwordEnv); !ok || s != testPass {
					t.Errorf("secret = %q, %v", s, ok)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error does not wrap %v: %v", tc.is, err)
			}
			if strings.Contains(err.Error(), testPass) {
				t.Errorf("error shows the passphrase: %v", err)
			}
		})
	}
}

// TestFinalizeSums: SHA256SUMS is signed when every target uses the same
// key, and otherwise left unsigned with the reason in compose.json, which
// verify repeats.
func TestFinalizeSums(t *testing.T) {
	keysA, keysB := testKeys(t), testKeys(t)
	tests := []struct {
		name    string
		m       testManifests
		signed  bool
		reason  string
		sbCerts int
	}{
		{"one key for two variants", testManifests{
			"coreos": {"x86_64": variantConfig("coreos", keysA, true, true)},
			"iot":    {"x86_64": variantConfig("iot", keysA, true, true)},
		}, true, "", 1},
		{"two keys", testManifests{
			"coreos": {"x86_64": variantConfig("coreos", keysA, true, true)},
			"iot":    {"x86_64": variantConfig("iot", keysB, true, true)},
		}, false, "targets use different signing keys (coreos/x86_64: ", 2},
		{"one variant unsigned", testManifests{
			"coreos": {"x86_64": variantConfig("coreos", keysA, true, true)},
			"iot":    {"x86_64": variantConfig("iot", keysA, false, true)},
		}, false, "iot/x86_64: no key", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			rec := buildFixture(t, tc.m, filepath.Join(base, "cache"), filepath.Join(base, "out"))
			c, err := openCompose(rec.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if c.Signing == nil || c.Signing.Sums.Signed != tc.signed || !strings.Contains(c.Signing.Sums.Reason, tc.reason) {
				t.Fatalf("signing record %+v", c.Signing)
			}
			_, err = os.Stat(filepath.Join(rec.Dir, "SHA256SUMS.sig"))
			if (err == nil) != tc.signed {
				t.Fatalf("SHA256SUMS.sig exists: %v", err == nil)
			}
			if len(c.Signing.SecureBoot) != tc.sbCerts {
				t.Errorf("secureboot record %+v", c.Signing.SecureBoot)
			}
			pub := filepath.Join(keysA, "cosign.pub")
			code, out, errOut := runCLI("verify", rec.Dir, "--key", pub)
			switch {
			case tc.signed && code != 0:
				t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
			case !tc.signed && (code != 1 || !hasRow(out, "SHA256SUMS", "sig", "FAIL", "(the build did not sign it: targets use different signing keys") || !strings.Contains(out, tc.reason)):
				t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
			}
			if tc.name == "two keys" {
				code, _, errOut := runCLI("verify", rec.Dir)
				if code != 2 || !strings.Contains(errOut, "--key is required: the compose was signed with 2 keys") {
					t.Errorf("verify without --key: exit %d\n%s", code, errOut)
				}
			}
		})
	}
}

// TestLoadBuildKeysWarnsOpenKeys: the pre-flight warns, as ssh does, about
// a private key that group or others can read, and goes on (issue 13 item 25).
func TestLoadBuildKeysWarnsOpenKeys(t *testing.T) {
	tests := []struct {
		name  string
		chmod map[string]os.FileMode // key file -> mode
		want  []string               // substrings of the log; none: no warning
	}{
		{"owner-only keys", nil, nil},
		{"readable cosign key", map[string]os.FileMode{"cosign.key": 0o644},
			[]string{"unprotected private key", "cosign.key has permissions 0644, which are too open", "signing.key", "coreos/x86_64"}},
		{"readable Secure Boot key", map[string]os.FileMode{"db.key": 0o640},
			[]string{"unprotected private key", "db.key has permissions 0640", "secureboot.key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys := testKeys(t)
			if err := os.Chmod(keys, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, mode := range tc.chmod {
				if err := os.Chmod(filepath.Join(keys, name), mode); err != nil {
					t.Fatal(err)
				}
			}
			var log bytes.Buffer
			g := testGlobals(&log)
			m := testManifests{"coreos": {"x86_64": variantConfig("coreos", keys, true, true)}}
			if _, err := g.loadBuildKeys(m, nil, nil); err != nil {
				t.Fatal(err)
			}
			if len(tc.want) == 0 && strings.Contains(log.String(), "unprotected") {
				t.Errorf("unexpected warning:\n%s", log.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(log.String(), w) {
					t.Errorf("log does not mention %q:\n%s", w, log.String())
				}
			}
		})
	}
}
