package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
)

// encryptKey builds a cosign-style encrypted key file for an arbitrary
// private key and PEM type (to test what ParseCosignKey accepts).
func encryptKey(t *testing.T, key any, pemType string, pass []byte) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encrypted.Encrypt(der, pass)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: enc})
}

func TestGenerateAndLoadCosignKey(t *testing.T) {
	pass := []byte("correct horse")
	priv, pub, err := GenerateCosignKeyPair(pass)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(priv), "-----BEGIN "+PEMTypeSigstorePrivateKey+"-----\n") {
		t.Fatalf("private key PEM starts %q", priv[:50])
	}
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "cosign.key")
	if err := os.WriteFile(keyPath, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	pubPath := filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := LoadCosignKey(keyPath, pass)
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Equal(k.Public()) {
		t.Fatal("cosign.pub does not match cosign.key")
	}
	digest := sha256.Sum256([]byte("payload"))
	sig, err := k.Sign(context.Background(), digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyDigest(p, digest[:], sig); err != nil {
		t.Fatal(err)
	}
	hint, _ := KeyHint(p)
	raw, err := k.priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v", k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k)} {
		if !strings.Contains(s, hint) || strings.Contains(s, fmt.Sprintf("%x", raw)) || strings.Contains(s, fmt.Sprint(raw)) {
			t.Errorf("formatted key %q does not identify by hint only", s)
		}
	}
	if _, err := k.Sign(context.Background(), digest[:20]); err == nil {
		t.Error("Sign accepted a 20-byte digest")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.Sign(ctx, digest[:]); !errors.Is(err, context.Canceled) {
		t.Errorf("Sign with a cancelled context: %v", err)
	}
}

func TestParseCosignKeyErrors(t *testing.T) {
	pass := []byte("pw")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	good := encryptKey(t, ec, PEMTypeSigstorePrivateKey, pass)
	corrupt := []byte(strings.Replace(string(good), "\n", "\nAAAA", 1))
	tests := []struct {
		name     string
		data     []byte
		pass     string
		is       error
		contains string
	}{
		{"legacy COSIGN type", encryptKey(t, ec, PEMTypeCosignPrivateKey, pass), "pw", nil, ""},
		{"sigstore type", good, "pw", nil, ""},
		{"empty passphrase key", encryptKey(t, ec, PEMTypeSigstorePrivateKey, nil), "", nil, ""},
		{"wrong passphrase", good, "nope", ErrDecrypt, "authentication failed"},
		{"corrupt envelope", corrupt, "pw", ErrDecrypt, "malformed"},
		{"not PEM", []byte("hello"), "pw", ErrKeyFormat, "no PEM block"},
		{"plain PKCS#8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), "pw", ErrKeyFormat, `"PRIVATE KEY"`},
		{"P-384", encryptKey(t, p384, PEMTypeSigstorePrivateKey, pass), "pw", ErrKeyFormat, "ECDSA P-384"},
		{"ed25519", encryptKey(t, ed, PEMTypeSigstorePrivateKey, pass), "pw", ErrKeyFormat, "ed25519"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "my.key")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := LoadCosignKey(path, []byte(tc.pass))
			if tc.is == nil {
				if err != nil || k == nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, tc.contains) {
				t.Errorf("err = %q, want the path and %q", msg, tc.contains)
			}
			if strings.Contains(msg, string(good[40:70])) {
				t.Errorf("error leaks secrets: %q", msg)
			}
		})
	}
	if _, err := LoadCosignKey(filepath.Join(t.TempDir(), "missing.key"), pass); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.key") {
		t.Errorf("missing file: %v", err)
	}
}

func TestParsePublicKey(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	good, err := MarshalPublicKey(ec.Public())
	if err != nil {
		t.Fatal(err)
	}
	bad384, _ := MarshalPublicKey(p384.Public())
	tests := []struct {
		name     string
		data     []byte
		contains string
	}{
		{"good", good, ""},
		{"P-384", bad384, "ECDSA P-384"},
		{"garbage", []byte("x"), "no PEM block"},
		{"cert type", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), `"CERTIFICATE"`},
		{"bad DER", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2}}), "not a supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := ParsePublicKey(tc.data)
			if tc.contains == "" {
				if err != nil || !pub.Equal(ec.Public()) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrKeyFormat) || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("err = %v, want ErrKeyFormat with %q", err, tc.contains)
			}
		})
	}
}

func TestGenerateKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	paths, err := GenerateKeys(dir, GenerateOptions{Passphrase: []byte("pw")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cosign.key", "cosign.pub", "PK.key", "PK.crt", "PK.cer", "KEK.key", "KEK.crt", "KEK.cer", "db.key", "db.crt", "db.cer"}
	if len(paths) != len(want) {
		t.Fatalf("paths = %v", paths)
	}
	for i, p := range paths {
		if filepath.Base(p) != want[i] {
			t.Errorf("path %d = %s, want %s", i, p, want[i])
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		wantMode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".key") {
			wantMode = 0o600
		}
		if st.Mode().Perm() != wantMode {
			t.Errorf("%s mode %o, want %o", p, st.Mode().Perm(), wantMode)
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("key dir mode %o, want 0700", st.Mode().Perm())
	}
	if _, err := LoadCosignKey(filepath.Join(dir, "cosign.key"), []byte("pw")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "db.key"))

	// Without Force nothing is touched, and the error names the file.
	_, err = GenerateKeys(dir, GenerateOptions{Passphrase: []byte("other")})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "cosign.key") {
		t.Fatalf("err = %v, want ErrExists naming cosign.key", err)
	}
	if _, err := LoadCosignKey(filepath.Join(dir, "cosign.key"), []byte("pw")); err != nil {
		t.Fatalf("key changed without --force: %v", err)
	}
	// One existing file is enough to refuse.
	lone := t.TempDir()
	if err := os.WriteFile(filepath.Join(lone, "KEK.crt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKeys(lone, GenerateOptions{}); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "KEK.crt") {
		t.Fatalf("err = %v, want ErrExists naming KEK.crt", err)
	}
	if ents, _ := os.ReadDir(lone); len(ents) != 1 {
		t.Errorf("files written despite refusal: %v", ents)
	}

	// With Force everything is replaced.
	if _, err := GenerateKeys(dir, GenerateOptions{Passphrase: []byte("other"), Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCosignKey(filepath.Join(dir, "cosign.key"), []byte("other")); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "db.key"))
	if string(before) == string(after) {
		t.Error("db.key not replaced with Force")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
