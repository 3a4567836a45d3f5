package handoff

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/internal/fixture"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// env is a compose-like directory plus the keys; the private keys stand in
// for an HSM and are only used through plain crypto operations.
type env struct {
	root    string
	keyDir  string
	keys    Keys
	ecKey   *ecdsa.PrivateKey // the "HSM" cosign key
	rsaKey  *rsa.PrivateKey   // the "HSM" db key
	cosign  *signing.CosignKey
	dbPair  *secureboot.KeyPair
	content map[string][]byte
}

const pass = "hsm-pin"

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{root: t.TempDir(), keyDir: t.TempDir(), content: map[string][]byte{}}
	if _, err := signing.GenerateKeys(e.keyDir, signing.GenerateOptions{Passphrase: []byte(pass), Force: true}); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.cosign, err = signing.LoadCosignKey(filepath.Join(e.keyDir, "cosign.key"), []byte(pass)); err != nil {
		t.Fatal(err)
	}
	if e.dbPair, err = secureboot.LoadKeyPair(filepath.Join(e.keyDir, "db.crt"), filepath.Join(e.keyDir, "db.key")); err != nil {
		t.Fatal(err)
	}
	e.rsaKey = e.dbPair.Key.(*rsa.PrivateKey)
	e.ecKey = exportEC(t, e.keyDir)
	if !e.ecKey.PublicKey.Equal(e.cosign.Public()) {
		t.Fatal("exported cosign key differs from the loaded one")
	}
	e.keys = Keys{Cosign: e.cosign.Public().(*ecdsa.PublicKey), SecureBoot: e.dbPair.Cert}
	files := map[string][]byte{
		"x86_64/images/fedora.composefs":       bytes.Repeat([]byte("erofs-metadata "), 70000),
		"x86_64/images/fedora.x86_64.raw":      bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7}, 512*1024),
		"x86_64/images/SHA256SUMS":             []byte("0000  fedora.x86_64.raw\n"),
		"x86_64/EFI/Linux/fedora.efi":          fixture.EFIStub(t),
		"x86_64/EFI/Linux/fedora-fallback.efi": fixture.EFIStub(t),
	}
	for rel, data := range files {
		e.write(t, rel, data)
	}
	return e
}

func (e *env) write(t *testing.T, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(e.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.content[rel] = data
}

func (e *env) path(rel string) string { return filepath.Join(e.root, filepath.FromSlash(rel)) }

// exportEC decrypts cosign.key to the raw ECDSA key, as an operator does
// before importing it into an HSM.
func exportEC(t *testing.T, dir string) *ecdsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode(fixture.ReadFile(t, filepath.Join(dir, "cosign.key")))
	der, err := encrypted.Decrypt(block.Bytes, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return key.(*ecdsa.PrivateKey)
}

// hsm signs every item of req with plain crypto, as an HSM would: ECDSA
// over the digest (DER, or raw r||s for every other blob), RSA PKCS#1 v1.5
// over the SHA-256 of the signed attributes.
func (e *env) hsm(t *testing.T, req *Request) *Signatures {
	t.Helper()
	out := &Signatures{Schema: SignaturesSchema}
	for i, it := range req.Items {
		var sig []byte
		var err error
		switch it.Algorithm {
		case AlgECDSAP256SHA256:
			if i%2 == 0 {
				sig, err = ecdsa.SignASN1(rand.Reader, e.ecKey, it.Digest)
			} else {
				r, s, err2 := ecdsa.Sign(rand.Reader, e.ecKey, it.Digest)
				err = err2
				sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
			}
		case AlgRSAPKCS1v15SHA256:
			sig, err = rsa.SignPKCS1v15(rand.Reader, e.rsaKey, crypto.SHA256, it.Digest)
		default:
			t.Fatalf("unknown algorithm %q", it.Algorithm)
		}
		if err != nil {
			t.Fatal(err)
		}
		out.Signatures = append(out.Signatures, Signature{Kind: it.Kind, Path: it.Path, Digest: it.Digest, Signature: sig})
	}
	return out
}

// roundTrip sends req and sigs through their JSON forms, as the hand-off
// does.
func roundTrip(t *testing.T, req *Request, sigs *Signatures) (*Request, *Signatures) {
	t.Helper()
	rb, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	req2, err := ReadRequest(bytes.NewReader(rb))
	if err != nil {
		t.Fatalf("ReadRequest(Marshal()): %v\n%s", err, rb)
	}
	if sigs == nil {
		return req2, nil
	}
	sb, err := sigs.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sigs2, err := ReadSignatures(bytes.NewReader(sb))
	if err != nil {
		t.Fatalf("ReadSignatures(Marshal()): %v\n%s", err, sb)
	}
	return req2, sigs2
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	ukis := []string{"x86_64/EFI/Linux/fedora.efi", "x86_64/EFI/Linux/fedora-fallback.efi"}

	// Round 1: Authenticode for the UKIs.
	req, err := NewRequest(ctx, e.root, []Target{{ukis[0], KindAuthenticode}, {ukis[1], KindAuthenticode}}, e.keys)
	if err != nil {
		t.Fatal(err)
	}
	if req.Keys.Cosign != nil || req.Keys.SecureBoot == nil || req.Keys.SecureBoot.Fingerprint == nil {
		t.Fatalf("keys = %+v", req.Keys)
	}
	req, _ = roundTrip(t, req, nil)
	sigs := e.hsm(t, req)
	req, sigs = roundTrip(t, req, sigs)
	res, err := Apply(ctx, e.root, req, sigs, e.keys)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(res.Written, " "); got != strings.Join(ukis, " ") {
		t.Errorf("written = %s", got)
	}
	for _, u := range ukis {
		if _, err := secureboot.VerifyPEFile(e.path(u), []*x509.Certificate{e.dbPair.Cert}); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(fixture.Tool(t, "sbverify", "sbsigntool"), "--cert", filepath.Join(e.keyDir, "db.crt"), e.path(u)).CombinedOutput()
		if err != nil {
			t.Errorf("sbverify %s: %v\n%s", u, err, out)
		}
		out, err = exec.Command(fixture.Tool(t, "osslsigncode", "osslsigncode"), "verify", "-CAfile", filepath.Join(e.keyDir, "db.crt"), "-in", e.path(u)).CombinedOutput()
		if err != nil {
			t.Errorf("osslsigncode verify %s: %v\n%s", u, err, out)
		}
	}
	// Same bytes as signing locally with the db key.
	local := filepath.Join(t.TempDir(), "local.efi")
	if err := os.WriteFile(local, fixture.EFIStub(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := secureboot.SignPE(ctx, e.dbPair, local, local); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fixture.ReadFile(t, local), fixture.ReadFile(t, e.path(ukis[0]))) {
		t.Error("offline-signed UKI differs from the locally signed one")
	}

	// Round 2: detached signatures for everything, the signed UKI included.
	blobs := []string{"x86_64/images/fedora.composefs", ukis[0], "x86_64/images/fedora.x86_64.raw", "x86_64/images/SHA256SUMS"}
	var targets []Target
	for _, b := range blobs {
		targets = append(targets, Target{b, KindBlob})
	}
	req, err = NewRequest(ctx, e.root, targets, e.keys)
	if err != nil {
		t.Fatal(err)
	}
	req, sigs = roundTrip(t, req, e.hsm(t, req))
	if _, err := Apply(ctx, e.root, req, sigs, e.keys); err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		res, err := signing.VerifyFile(e.keys.Cosign, e.path(b), nil)
		if err != nil || !res.Sig || !res.Bundle {
			t.Fatalf("VerifyFile(%s) = %+v, %v", b, res, err)
		}
		// Raw r||s signatures were converted: the .sig is DER.
		sig, _ := signing.DecodeSig(fixture.ReadFile(t, e.path(b)+signing.SigSuffix))
		if sig[0] != 0x30 {
			t.Errorf("%s.sig is not DER", b)
		}
	}
	t.Run("cosign CLI", func(t *testing.T) {
		cosign := fixture.Cosign(t)
		trust := filepath.Join(t.TempDir(), "trusted-root.json")
		if err := os.WriteFile(trust, []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, b := range blobs {
			for _, args := range [][]string{
				{"verify-blob", "--key", filepath.Join(e.keyDir, "cosign.pub"), "--signature", e.path(b) + ".sig", "--insecure-ignore-tlog=true", e.path(b)},
				{"verify-blob", "--key", filepath.Join(e.keyDir, "cosign.pub"), "--bundle", e.path(b) + ".sigstore.json", "--new-bundle-format", "--trusted-root", trust, "--insecure-ignore-tlog=true", e.path(b)},
			} {
				cmd := exec.Command(cosign, args...)
				cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "Verified OK") {
					t.Errorf("cosign %s: %v\n%s", strings.Join(args[:4], " "), err, out)
				}
			}
		}
	})
}

// TestOpenSSLSigner uses the openssl CLI as the external signer with the
// commands docs/signing.md gives operators.
func TestOpenSSLSigner(t *testing.T) {
	openssl := fixture.Tool(t, "openssl", "openssl")
	ctx := context.Background()
	e := newEnv(t)
	req, err := NewRequest(ctx, e.root, []Target{{"x86_64/EFI/Linux/fedora.efi", KindAuthenticode}, {"x86_64/images/fedora.composefs", KindBlob}}, e.keys)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	ecPEM := filepath.Join(work, "cosign-ec.pem")
	der, err := x509.MarshalPKCS8PrivateKey(e.ecKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ecPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	sigs := &Signatures{Schema: SignaturesSchema}
	for i, it := range req.Items {
		in := filepath.Join(work, fmt.Sprintf("in%d", i))
		out := filepath.Join(work, fmt.Sprintf("sig%d", i))
		var args []string
		switch it.Kind {
		case KindBlob:
			// ECDSA over the 32-byte digest itself.
			if err := os.WriteFile(in, it.Digest, 0o600); err != nil {
				t.Fatal(err)
			}
			args = []string{"pkeyutl", "-sign", "-inkey", ecPEM, "-in", in, "-out", out}
		case KindAuthenticode:
			// RSA PKCS#1 v1.5 SHA-256 over the signed attributes.
			if err := os.WriteFile(in, it.SignedAttributes, 0o600); err != nil {
				t.Fatal(err)
			}
			args = []string{"dgst", "-sha256", "-sign", filepath.Join(e.keyDir, "db.key"), "-out", out, in}
		}
		if b, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, b)
		}
		sigs.Signatures = append(sigs.Signatures, Signature{Kind: it.Kind, Path: it.Path, Signature: fixture.ReadFile(t, out)})
	}
	if _, err := Apply(ctx, e.root, req, sigs, e.keys); err != nil {
		t.Fatal(err)
	}
	if _, err := secureboot.VerifyPEFile(e.path("x86_64/EFI/Linux/fedora.efi"), []*x509.Certificate{e.dbPair.Cert}); err != nil {
		t.Fatal(err)
	}
	if _, err := signing.VerifyFile(e.keys.Cosign, e.path("x86_64/images/fedora.composefs"), nil); err != nil {
		t.Fatal(err)
	}
}

func TestApplyRefuses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	otherKeys := t.TempDir()
	if _, err := signing.GenerateKeys(otherKeys, signing.GenerateOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	otherPub, err := signing.LoadPublicKey(filepath.Join(otherKeys, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	otherCert, err := secureboot.LoadCertificate(filepath.Join(otherKeys, "db.crt"))
	if err != nil {
		t.Fatal(err)
	}
	targets := []Target{
		{"x86_64/images/fedora.composefs", KindBlob},
		{"x86_64/EFI/Linux/fedora.efi", KindAuthenticode},
		{"x86_64/images/SHA256SUMS", KindBlob},
	}
	req, err := NewRequest(ctx, e.root, targets, e.keys)
	if err != nil {
		t.Fatal(err)
	}
	good := e.hsm(t, req)

	mutate := func(f func(s *Signatures)) *Signatures {
		c := &Signatures{Schema: good.Schema, Signatures: append([]Signature(nil), good.Signatures...)}
		f(c)
		return c
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) // changes the tree; undone by restore
		sigs  *Signatures
		keys  Keys
		is    error
		in    string
	}{
		{name: "bad blob signature", sigs: mutate(func(s *Signatures) { s.Signatures[2].Signature = good.Signatures[0].Signature }), keys: e.keys, is: ErrBadSignature, in: "SHA256SUMS"},
		{name: "bad authenticode signature", sigs: mutate(func(s *Signatures) {
			b := append([]byte(nil), good.Signatures[1].Signature...)
			b[10] ^= 1
			s.Signatures[1].Signature = b
		}), keys: e.keys, is: ErrBadSignature, in: "fedora.efi"},
		{name: "missing signature", sigs: mutate(func(s *Signatures) { s.Signatures = s.Signatures[:2] }), keys: e.keys, is: ErrMissing, in: "SHA256SUMS"},
		{name: "unrequested signature", sigs: mutate(func(s *Signatures) {
			s.Signatures = append(s.Signatures, Signature{Kind: KindBlob, Path: "x86_64/images/fedora.x86_64.raw", Signature: []byte{1}})
		}), keys: e.keys, is: ErrSchema, in: "fedora.x86_64.raw"},
		{name: "kind mismatch", sigs: mutate(func(s *Signatures) { s.Signatures[0].Kind = KindAuthenticode }), keys: e.keys, is: ErrSchema, in: "fedora.composefs"},
		{name: "digest echo mismatch", sigs: mutate(func(s *Signatures) { s.Signatures[0].Digest = make([]byte, 32) }), keys: e.keys, is: ErrBadSignature, in: "fedora.composefs"},
		{name: "blob changed", setup: func(t *testing.T) { e.write(t, "x86_64/images/SHA256SUMS", []byte("changed\n")) }, sigs: good, keys: e.keys, is: ErrChanged, in: "SHA256SUMS"},
		{name: "UKI changed", setup: func(t *testing.T) {
			b := append([]byte(nil), fixture.EFIStub(t)...)
			b[0x3000] ^= 1
			e.write(t, "x86_64/EFI/Linux/fedora.efi", b)
		}, sigs: good, keys: e.keys, is: ErrChanged, in: "fedora.efi"},
		{name: "other cosign key", sigs: good, keys: Keys{Cosign: otherPub, SecureBoot: e.keys.SecureBoot}, is: ErrKeyMismatch, in: "cosign key"},
		{name: "other db cert", sigs: good, keys: Keys{Cosign: e.keys.Cosign, SecureBoot: otherCert}, is: ErrKeyMismatch, in: "db certificate"},
	}
	snapshot := map[string][]byte{}
	for rel, data := range e.content {
		snapshot[rel] = data
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			before := treeState(t, e.root)
			_, err := Apply(ctx, e.root, req, tc.sigs, tc.keys)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.in) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.is, tc.in)
			}
			if after := treeState(t, e.root); after != before {
				t.Errorf("tree changed by a refused Apply:\nbefore %s\nafter  %s", before, after)
			}
			for rel, data := range snapshot {
				e.write(t, rel, data)
			}
		})
	}
	// Finally the good signatures apply.
	if _, err := Apply(ctx, e.root, req, good, e.keys); err != nil {
		t.Fatal(err)
	}
}

// treeState lists every file below root with its size and a short hash.
func treeState(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(&b, "%s:%d:%x ", rel, len(data), data[:min(len(data), 8)])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestNewRequestRefuses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	tests := []struct {
		name    string
		targets []Target
		keys    Keys
		is      error
		in      string
	}{
		{"both kinds for one file", []Target{{"x86_64/EFI/Linux/fedora.efi", KindAuthenticode}, {"x86_64/EFI/Linux/fedora.efi", KindBlob}}, e.keys, ErrSchema, "two requests"},
		{"twice", []Target{{"x86_64/images/SHA256SUMS", KindBlob}, {"x86_64/images/SHA256SUMS", KindBlob}}, e.keys, ErrSchema, "listed twice"},
		{"escape", []Target{{"../etc/passwd", KindBlob}}, e.keys, ErrSchema, "../etc/passwd"},
		{"absolute", []Target{{"/etc/passwd", KindBlob}}, e.keys, ErrSchema, "/etc/passwd"},
		{"unclean", []Target{{"x86_64//images/SHA256SUMS", KindBlob}}, e.keys, ErrSchema, "x86_64//images"},
		{"unknown kind", []Target{{"x86_64/images/SHA256SUMS", "gpg"}}, e.keys, ErrSchema, `"gpg"`},
		{"missing file", []Target{{"x86_64/images/nope", KindBlob}}, e.keys, os.ErrNotExist, "nope"},
		{"not a PE", []Target{{"x86_64/images/SHA256SUMS", KindAuthenticode}}, e.keys, nil, "SHA256SUMS"},
		{"no cosign key", []Target{{"x86_64/images/SHA256SUMS", KindBlob}}, Keys{SecureBoot: e.keys.SecureBoot}, nil, "without a cosign public key"},
		{"no db cert", []Target{{"x86_64/EFI/Linux/fedora.efi", KindAuthenticode}}, Keys{Cosign: e.keys.Cosign}, nil, "without a Secure Boot certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRequest(ctx, e.root, tc.targets, tc.keys)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.in) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.is, tc.in)
			}
		})
	}
}

func TestReadRequestValidation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	req, err := NewRequest(ctx, e.root, []Target{{"x86_64/EFI/Linux/fedora.efi", KindAuthenticode}, {"x86_64/images/SHA256SUMS", KindBlob}}, e.keys)
	if err != nil {
		t.Fatal(err)
	}
	good, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) string {
		if !strings.Contains(string(good), old) {
			t.Fatalf("request JSON lacks %q", old)
		}
		return strings.Replace(string(good), old, new, 1)
	}
	it := req.Items[1]
	tests := []struct {
		name string
		doc  string
		in   string
	}{
		{"schema", edit(RequestSchema, "v0"), "schema"},
		{"unknown field", edit(`"schema"`, `"extra": 1, "schema"`), "unknown field"},
		{"trailing data", string(good) + "{}", "trailing data"},
		{"bad hex", edit(fmt.Sprintf("%x", []byte(it.Digest)), "zz"), "invalid hex"},
		{"short digest", edit(fmt.Sprintf(`"digest": "%x"`, []byte(it.Digest)), `"digest": "00"`), "32 bytes"},
		{"blob digest not sha256", edit(fmt.Sprintf(`"digest": "%x"`, []byte(it.Digest)), fmt.Sprintf(`"digest": "%x"`, make([]byte, 32))), "file's sha256"},
		{"path escape", edit(`"x86_64/images/SHA256SUMS"`, `"../SHA256SUMS"`), "../SHA256SUMS"},
		{"wrong algorithm", edit(`"algorithm": "ecdsa-p256-sha256"`, `"algorithm": "ed25519"`), "algorithm"},
		{"hint mismatch", edit(req.Keys.Cosign.Hint, "AAAA"), "hint does not match"},
		{"fingerprint mismatch", edit(fmt.Sprintf("%x", []byte(req.Keys.SecureBoot.Fingerprint)), fmt.Sprintf("%x", make([]byte, 32))), "fingerprint does not match"},
		{"attributes tampered", edit(`"signed_attributes": "`, `"signed_attributes": "AAAA`), "SHA-256(signed_attributes)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRequest(strings.NewReader(tc.doc))
			if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tc.in) {
				t.Fatalf("err = %v, want ErrSchema mentioning %q", err, tc.in)
			}
		})
	}
}

func TestReadSignaturesValidation(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		in   string
	}{
		{"schema", `{"schema":"x","signatures":[]}`, "schema"},
		{"kind", `{"schema":"cfs-compose.signatures/v1","signatures":[{"kind":"gpg","path":"a","signature":"AQ=="}]}`, `"gpg"`},
		{"path", `{"schema":"cfs-compose.signatures/v1","signatures":[{"kind":"blob","path":"/a","signature":"AQ=="}]}`, `"/a"`},
		{"empty signature", `{"schema":"cfs-compose.signatures/v1","signatures":[{"kind":"blob","path":"a","signature":""}]}`, "1 to 1024 bytes"},
		{"twice", `{"schema":"cfs-compose.signatures/v1","signatures":[{"kind":"blob","path":"a","signature":"AQ=="},{"kind":"blob","path":"a","signature":"AQ=="}]}`, "listed twice"},
		{"not base64", `{"schema":"cfs-compose.signatures/v1","signatures":[{"kind":"blob","path":"a","signature":"!"}]}`, "illegal base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSignatures(strings.NewReader(tc.doc))
			if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tc.in) {
				t.Fatalf("err = %v, want ErrSchema mentioning %q", err, tc.in)
			}
		})
	}
}

// FuzzReadRequest: any input is either rejected or yields a request that
// re-encodes to an equivalent valid request.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(`{"schema":"cfs-compose.signing-request/v1","keys":{},"items":[]}`))
	f.Add([]byte(`{"schema":"cfs-compose.signing-request/v1","keys":{},"items":[{"kind":"blob","path":"a"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ReadRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		b, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ReadRequest(bytes.NewReader(b)); err != nil {
			t.Fatalf("re-encoded request invalid: %v", err)
		}
	})
}

// FuzzReadSignatures: any input is either rejected or re-encodes to a valid
// document.
func FuzzReadSignatures(f *testing.F) {
	f.Add([]byte(`{"schema":"cfs-compose.signatures/v1","signatures":[{"kind":"blob","path":"a/b","signature":"AQ=="}]}`))
	f.Add([]byte(`{"schema":"cfs-compose.signatures/v1","signatures":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ReadSignatures(bytes.NewReader(data))
		if err != nil {
			return
		}
		b, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ReadSignatures(bytes.NewReader(b)); err != nil {
			t.Fatalf("re-encoded signatures invalid: %v", err)
		}
	})
}
