package secureboot

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGeneratePKI(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		opts     PKIOptions
		bits     int
		cn       string
		validity time.Duration
		wantErr  string
	}{
		{name: "defaults", opts: PKIOptions{Now: now}, bits: 2048, cn: "cfs-compose test", validity: 10 * 365 * 24 * time.Hour},
		{name: "rsa3072 custom", opts: PKIOptions{Bits: 3072, CommonName: "Example Corp", Validity: 48 * time.Hour, Now: now}, bits: 3072, cn: "Example Corp", validity: 48 * time.Hour},
		{name: "bad size", opts: PKIOptions{Bits: 1024}, wantErr: "RSA size 1024 not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := GeneratePKI(tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			roles := []struct {
				role   string
				kp     *KeyPair
				issuer *KeyPair
				ca     bool
			}{{"PK", p.PK, p.PK, true}, {"KEK", p.KEK, p.PK, true}, {"db", p.DB, p.DB, false}}
			serials := map[string]bool{}
			for _, r := range roles {
				c := r.kp.Cert
				if got, want := c.Subject.CommonName, tc.cn+" "+r.role; got != want {
					t.Errorf("%s subject CN = %q, want %q", r.role, got, want)
				}
				if got := c.PublicKey.(*rsa.PublicKey).N.BitLen(); got != tc.bits {
					t.Errorf("%s key size = %d, want %d", r.role, got, tc.bits)
				}
				if !issuedBy(c, r.issuer.Cert) {
					t.Errorf("%s not issued by %s", r.role, r.issuer.Cert.Subject)
				}
				if c.IsCA != r.ca {
					t.Errorf("%s IsCA = %v, want %v", r.role, c.IsCA, r.ca)
				}
				if got := c.NotAfter.Sub(c.NotBefore); got != tc.validity {
					t.Errorf("%s validity = %v, want %v", r.role, got, tc.validity)
				}
				if c.NotBefore.After(now) {
					t.Errorf("%s NotBefore %v is after now %v", r.role, c.NotBefore, now)
				}
				if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 64 {
					t.Errorf("%s serial %v is not a large positive random number", r.role, c.SerialNumber)
				}
				serials[c.SerialNumber.String()] = true
				if !r.kp.Key.Public().(*rsa.PublicKey).Equal(c.PublicKey) {
					t.Errorf("%s key does not match its certificate", r.role)
				}
			}
			if len(serials) != 3 {
				t.Errorf("serials are not distinct: %v", serials)
			}
			if got := p.DB.Cert.ExtKeyUsage; len(got) != 1 || got[0] != x509.ExtKeyUsageCodeSigning {
				t.Errorf("db ExtKeyUsage = %v, want code signing", got)
			}
		})
	}
}

func TestPKIFilesRoundTrip(t *testing.T) {
	p, err := GeneratePKI(PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := p.Files()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	dir := t.TempDir()
	for _, f := range files {
		names = append(names, f.Name)
		if strings.HasSuffix(f.Name, ".key") != (f.Mode == 0o600) {
			t.Errorf("%s mode %o", f.Name, f.Mode)
		}
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := strings.Join(names, " "), "PK.key PK.crt PK.cer KEK.key KEK.crt KEK.cer db.key db.crt db.cer"; got != want {
		t.Errorf("files = %s, want %s", got, want)
	}
	for _, role := range []struct {
		name string
		kp   *KeyPair
	}{{"PK", p.PK}, {"KEK", p.KEK}, {"db", p.DB}} {
		for _, certFile := range []string{role.name + ".crt", role.name + ".cer"} {
			kp, err := LoadKeyPair(filepath.Join(dir, certFile), filepath.Join(dir, role.name+".key"))
			if err != nil {
				t.Fatalf("LoadKeyPair(%s): %v", certFile, err)
			}
			if !kp.Cert.Equal(role.kp.Cert) {
				t.Errorf("%s: loaded certificate differs", certFile)
			}
			if !strings.Contains(kp.String(), role.kp.Cert.Subject.CommonName) || strings.Contains(kp.String(), "PRIVATE") {
				t.Errorf("String() = %q", kp.String())
			}
		}
	}
}

func TestLoadKeyPairErrors(t *testing.T) {
	p, err := GeneratePKI(PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := p.Files()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	keyData, _ := os.ReadFile(filepath.Join(dir, "db.key"))
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	db := func(ext string) string { return filepath.Join(dir, "db"+ext) }
	tests := []struct {
		name      string
		cert, key string
		is        error
		contains  string
	}{
		{"missing cert", filepath.Join(dir, "nope.crt"), db(".key"), os.ErrNotExist, "nope.crt"},
		{"garbage cert", write("garbage.crt", "not a certificate"), db(".key"), ErrCertFormat, "garbage.crt"},
		{"key as cert", db(".key"), db(".key"), ErrCertFormat, `PEM block type "PRIVATE KEY"`},
		{"missing key", db(".crt"), filepath.Join(dir, "nope.key"), os.ErrNotExist, "nope.key"},
		{"garbage key", db(".crt"), write("garbage.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), ErrKeyFormat, "garbage.key"},
		{"encrypted key", db(".crt"), write("enc.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), ErrKeyFormat, "enc.key"},
		{"wrong key", db(".crt"), filepath.Join(dir, "KEK.key"), ErrKeyMismatch, "KEK.key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadKeyPair(tc.cert, tc.key)
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("err = %q, want it to contain %q", err, tc.contains)
			}
			if strings.Contains(err.Error(), string(keyData[40:80])) {
				t.Errorf("error leaks key material: %v", err)
			}
		})
	}
}
