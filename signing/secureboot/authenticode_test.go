package secureboot

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/pe"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/signing/internal/fixture"
)

var (
	pkiOnce           sync.Once
	testPKI, otherPKI *PKI
	pkiErr            error
)

// pkis returns two independent test hierarchies, made once per run.
func pkis(t testing.TB) (*PKI, *PKI) {
	t.Helper()
	pkiOnce.Do(func() {
		if testPKI, pkiErr = GeneratePKI(PKIOptions{}); pkiErr == nil {
			otherPKI, pkiErr = GeneratePKI(PKIOptions{CommonName: "other"})
		}
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return testPKI, otherPKI
}

// writePKI writes p's files to a new directory and returns it.
func writePKI(t testing.TB, p *PKI) string {
	t.Helper()
	dir := t.TempDir()
	files, err := p.Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// stubFile writes the real systemd EFI stub to dir/name.
func stubFile(t testing.TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, fixture.EFIStub(t), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runTool runs a host tool and returns its combined output and whether it
// exited 0.
func runTool(t *testing.T, name string, args ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), err == nil
}

// checkTools runs sbverify and osslsigncode against the signed image with
// the given CA file and requires the outcome want.
func checkTools(t *testing.T, image, caFile string, want bool) {
	t.Helper()
	fixture.Tool(t, "sbverify", "sbsigntool")
	fixture.Tool(t, "osslsigncode", "osslsigncode")
	out, ok := runTool(t, "sbverify", "--cert", caFile, image)
	if ok != want || (want && !strings.Contains(out, "Signature verification OK")) {
		t.Errorf("sbverify --cert %s %s: ok=%v, want %v:\n%s", filepath.Base(caFile), filepath.Base(image), ok, want, out)
	}
	out, ok = runTool(t, "osslsigncode", "verify", "-CAfile", caFile, "-in", image)
	if ok != want || (want && !strings.Contains(out, "Succeeded")) {
		t.Errorf("osslsigncode verify -CAfile %s %s: ok=%v, want %v:\n%s", filepath.Base(caFile), filepath.Base(image), ok, want, out)
	}
}

func TestSignPE(t *testing.T) {
	ctx := context.Background()
	p, other := pkis(t)
	keys := writePKI(t, p)
	otherKeys := writePKI(t, other)
	dir := t.TempDir()
	unsigned := stubFile(t, dir, "stub.efi")
	signed := filepath.Join(dir, "stub.signed.efi")

	kp, err := LoadKeyPair(filepath.Join(keys, "db.crt"), filepath.Join(keys, "db.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := SignPE(ctx, kp, unsigned, signed); err != nil {
		t.Fatal(err)
	}
	sigs, err := VerifyPEFile(signed, []*x509.Certificate{p.DB.Cert})
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, err := ImageDigest(bytes.NewReader(fixture.EFIStub(t)))
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 1 || !sigs[0].Signer.Equal(p.DB.Cert) || !sigs[0].Trusted.Equal(p.DB.Cert) || !bytes.Equal(sigs[0].ImageDigest, wantDigest) {
		t.Fatalf("signatures = %+v", sigs)
	}
	// The PE checksum is fixed (osslsigncode checks it) and the image still
	// parses as PE.
	f, err := pe.Open(signed)
	if err != nil {
		t.Fatal(err)
	}
	dd := f.OptionalHeader.(*pe.OptionalHeader64).DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
	f.Close()
	if dd.Size == 0 {
		t.Fatal("no certificate table in the signed image")
	}

	t.Run("external tools accept", func(t *testing.T) {
		checkTools(t, signed, filepath.Join(keys, "db.crt"), true)
	})
	t.Run("wrong cert refused", func(t *testing.T) {
		_, err := VerifyPEFile(signed, []*x509.Certificate{other.DB.Cert, other.KEK.Cert, other.PK.Cert})
		if !errors.Is(err, ErrUntrusted) {
			t.Fatalf("err = %v, want ErrUntrusted", err)
		}
		checkTools(t, signed, filepath.Join(otherKeys, "db.crt"), false)
	})
	t.Run("unsigned", func(t *testing.T) {
		_, err := VerifyPEFile(unsigned, []*x509.Certificate{p.DB.Cert})
		if !errors.Is(err, ErrNotSigned) || !strings.Contains(err.Error(), "stub.efi") {
			t.Fatalf("err = %v, want ErrNotSigned naming the file", err)
		}
		checkTools(t, unsigned, filepath.Join(keys, "db.crt"), false)
	})
	t.Run("tampered", func(t *testing.T) {
		data, err := os.ReadFile(signed)
		if err != nil {
			t.Fatal(err)
		}
		// One byte in the middle of .text.
		data[0x2000] ^= 1
		tampered := filepath.Join(dir, "tampered.efi")
		if err := os.WriteFile(tampered, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyPEFile(tampered, []*x509.Certificate{p.DB.Cert}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("err = %v, want ErrBadSignature", err)
		}
		out, ok := runTool(t, "sbverify", "--cert", filepath.Join(keys, "db.crt"), tampered)
		if ok {
			t.Errorf("sbverify accepted a tampered image:\n%s", out)
		}
	})
	t.Run("resign in place replaces", func(t *testing.T) {
		again := filepath.Join(dir, "again.efi")
		data, _ := os.ReadFile(signed)
		if err := os.WriteFile(again, data, 0o600); err != nil {
			t.Fatal(err)
		}
		okp := &KeyPair{Cert: other.DB.Cert, Key: other.DB.Key}
		if err := SignPE(ctx, okp, again, again); err != nil {
			t.Fatal(err)
		}
		sigs, err := VerifyPEFile(again, []*x509.Certificate{other.DB.Cert})
		if err != nil || len(sigs) != 1 {
			t.Fatalf("sigs = %d, err = %v", len(sigs), err)
		}
		if _, err := VerifyPEFile(again, []*x509.Certificate{p.DB.Cert}); !errors.Is(err, ErrUntrusted) {
			t.Errorf("old signature still trusted: %v", err)
		}
		st, _ := os.Stat(again)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode = %o, want the input's 0600", st.Mode().Perm())
		}
		left, _ := filepath.Glob(filepath.Join(dir, ".again.efi.tmp*"))
		if len(left) != 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
	t.Run("not a PE", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.efi")
		if err := os.WriteFile(bad, []byte("MZ but not really a PE image"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "bad.signed.efi")
		err := SignPE(ctx, kp, bad, out)
		if err == nil || !strings.Contains(err.Error(), "bad.efi") {
			t.Fatalf("err = %v, want an error naming bad.efi", err)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("output written despite error: %v", err)
		}
	})
}

func TestPrepareAttach(t *testing.T) {
	ctx := context.Background()
	p, other := pkis(t)
	keys := writePKI(t, p)
	dir := t.TempDir()
	unsigned := stubFile(t, dir, "uki.efi")

	pending, err := Prepare(ctx, unsigned, p.DB.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(pending.SignedAttributes); !bytes.Equal(sum[:], pending.Digest) {
		t.Fatal("Digest is not SHA-256(SignedAttributes)")
	}
	if pending.SignedAttributes[0] != 0x31 {
		t.Fatalf("SignedAttributes tag %#x, want SET (0x31)", pending.SignedAttributes[0])
	}
	wantImage, _ := ImageDigest(bytes.NewReader(fixture.EFIStub(t)))
	if !bytes.Equal(pending.ImageDigest, wantImage) {
		t.Fatal("ImageDigest differs from ImageDigest()")
	}
	again, err := Prepare(ctx, unsigned, p.DB.Cert)
	if err != nil || !bytes.Equal(again.SignedAttributes, pending.SignedAttributes) {
		t.Fatalf("Prepare is not deterministic (err %v)", err)
	}

	// The "HSM": plain RSA PKCS#1 v1.5 over the attribute bytes.
	dbKey := p.DB.Key.(*rsa.PrivateKey)
	sig, err := rsa.SignPKCS1v15(rand.Reader, dbKey, crypto.SHA256, pending.Digest)
	if err != nil {
		t.Fatal(err)
	}
	attached := filepath.Join(dir, "uki.attached.efi")
	if err := AttachSignature(ctx, unsigned, attached, p.DB.Cert, pending, sig); err != nil {
		t.Fatal(err)
	}
	checkTools(t, attached, filepath.Join(keys, "db.crt"), true)

	// RSA PKCS#1 v1.5 is deterministic: the result equals SignPE's.
	direct := filepath.Join(dir, "uki.direct.efi")
	if err := SignPE(ctx, p.DB, unsigned, direct); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(attached)
	d, _ := os.ReadFile(direct)
	if !bytes.Equal(a, d) {
		t.Error("attached signature image differs from the directly signed image")
	}

	otherSig, err := rsa.SignPKCS1v15(rand.Reader, other.DB.Key.(*rsa.PrivateKey), crypto.SHA256, pending.Digest)
	if err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(dir, "changed.efi")
	data := append([]byte(nil), fixture.EFIStub(t)...)
	data[0x2000] ^= 1
	if err := os.WriteFile(changed, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		cert    *x509.Certificate
		pending *Pending
		sig     []byte
		is      error
	}{
		{"other key", unsigned, p.DB.Cert, pending, otherSig, ErrBadSignature},
		{"garbage", unsigned, p.DB.Cert, pending, []byte("not a signature"), ErrBadSignature},
		{"image changed", changed, p.DB.Cert, pending, sig, ErrAttributesChanged},
		{"no pending, wrong signature", changed, p.DB.Cert, nil, sig, ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.efi")
			err := AttachSignature(ctx, tc.in, out, tc.cert, tc.pending, tc.sig)
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output written despite error")
			}
		})
	}
}

func TestChainsTo(t *testing.T) {
	p, other := pkis(t)
	// leaf is issued by KEK, which PK issued.
	leafKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "leaf"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.KEK.Cert, &leafKey.PublicKey, p.KEK.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	certs := func(c ...*x509.Certificate) []*x509.Certificate { return c }
	tests := []struct {
		name     string
		leaf     *x509.Certificate
		embedded []*x509.Certificate
		db       []*x509.Certificate
		want     *x509.Certificate
	}{
		{"self-signed db entry", p.DB.Cert, certs(p.DB.Cert), certs(p.DB.Cert), p.DB.Cert},
		{"issuer in db", leaf, certs(leaf), certs(other.DB.Cert, p.KEK.Cert), p.KEK.Cert},
		{"root in db via embedded KEK", leaf, certs(leaf, p.KEK.Cert), certs(p.PK.Cert), p.PK.Cert},
		{"root in db, KEK not embedded", leaf, certs(leaf), certs(p.PK.Cert), nil},
		{"other hierarchy", leaf, certs(leaf, p.KEK.Cert), certs(other.PK.Cert, other.KEK.Cert, other.DB.Cert), nil},
		{"empty db", p.DB.Cert, certs(p.DB.Cert), nil, nil},
		{"same subject, other key", p.DB.Cert, certs(p.DB.Cert), certs(sameSubject(t, p.DB.Cert)), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := chainsTo(tc.leaf, tc.embedded, tc.db)
			if (got == nil) != (tc.want == nil) || (got != nil && !got.Equal(tc.want)) {
				t.Fatalf("chainsTo = %v, want %v", subject(got), subject(tc.want))
			}
		})
	}
}

func subject(c *x509.Certificate) string {
	if c == nil {
		return "<nil>"
	}
	return c.Subject.String()
}

// sameSubject returns a self-signed certificate with c's subject and
// serial but a new key: a look-alike that must not be trusted.
func sameSubject(t *testing.T, c *x509.Certificate) *x509.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: c.SerialNumber, Subject: c.Subject, NotBefore: c.NotBefore, NotAfter: c.NotAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
