package signing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	keyOnce sync.Once
	testKey *CosignKey
)

// newKey returns a cosign key made through the real file format.
func newKey(t testing.TB) *CosignKey {
	t.Helper()
	priv, _, err := GenerateCosignKeyPair([]byte("test"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseCosignKey(priv, []byte("test"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sharedKey(t testing.TB) *CosignKey {
	keyOnce.Do(func() { testKey = newKey(t) })
	return testKey
}

func writeBlob(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSignVerifyFile(t *testing.T) {
	ctx := context.Background()
	k := sharedKey(t)
	pub := k.Public().(*ecdsa.PublicKey)
	other := newKey(t).Public().(*ecdsa.PublicKey)
	dir := t.TempDir()
	blob := writeBlob(t, dir, "image.erofs", bytes.Repeat([]byte("composefs"), 10000))
	if err := SignFile(ctx, k, blob, nil); err != nil {
		t.Fatal(err)
	}
	res, err := VerifyFile(pub, blob, nil)
	if err != nil || !res.Sig || !res.Bundle {
		t.Fatalf("VerifyFile = %+v, %v", res, err)
	}
	// The bundle has the cosign shape.
	var b struct {
		MediaType            string `json:"mediaType"`
		VerificationMaterial struct {
			PublicKey struct{ Hint string } `json:"publicKey"`
		} `json:"verificationMaterial"`
		MessageSignature struct {
			MessageDigest struct {
				Algorithm string `json:"algorithm"`
				Digest    []byte `json:"digest"`
			} `json:"messageDigest"`
			Signature []byte `json:"signature"`
		} `json:"messageSignature"`
	}
	raw, _ := os.ReadFile(blob + BundleSuffix)
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	digest, _ := HashFile(blob)
	if b.MediaType != BundleMediaType || b.VerificationMaterial.PublicKey.Hint != k.Hint() ||
		b.MessageSignature.MessageDigest.Algorithm != "SHA2_256" || !bytes.Equal(b.MessageSignature.MessageDigest.Digest, digest) {
		t.Errorf("bundle = %s", raw)
	}
	sigFile, _ := os.ReadFile(blob + SigSuffix)
	if sig, _ := DecodeSig(sigFile); !bytes.Equal(sig, b.MessageSignature.Signature) {
		t.Error(".sig and bundle carry different signatures")
	}

	tampered := writeBlob(t, dir, "tampered", append(mustRead(t, blob), 0))
	copyFile(t, blob+SigSuffix, tampered+SigSuffix)
	copyFile(t, blob+BundleSuffix, tampered+BundleSuffix)
	onlySig := writeBlob(t, dir, "only-sig", mustRead(t, blob))
	copyFile(t, blob+SigSuffix, onlySig+SigSuffix)
	onlyBundle := writeBlob(t, dir, "only-bundle", mustRead(t, blob))
	copyFile(t, blob+BundleSuffix, onlyBundle+BundleSuffix)
	badBundle := writeBlob(t, dir, "bad-bundle", mustRead(t, blob))
	copyFile(t, blob+SigSuffix, badBundle+SigSuffix)
	writeBlob(t, dir, "bad-bundle"+BundleSuffix, []byte(`{"mediaType":"nonsense"}`))
	unsigned := writeBlob(t, dir, "unsigned", []byte("x"))

	tests := []struct {
		name     string
		pub      *ecdsa.PublicKey
		path     string
		digest   []byte
		want     FileResult
		is       error
		contains string
	}{
		{"precomputed digest", pub, blob, digest, FileResult{true, true}, nil, ""},
		{"only .sig", pub, onlySig, nil, FileResult{Sig: true}, nil, ""},
		{"only bundle", pub, onlyBundle, nil, FileResult{Bundle: true}, nil, ""},
		{"wrong key", other, blob, nil, FileResult{}, ErrBadSignature, "image.erofs.sig"},
		{"tampered", pub, tampered, nil, FileResult{}, ErrBadSignature, "tampered.sig"},
		{"wrong digest given", pub, blob, make([]byte, 32), FileResult{}, ErrBadSignature, ".sig"},
		{"broken bundle", pub, badBundle, nil, FileResult{Sig: true}, ErrBadSignature, "bad-bundle.sigstore.json"},
		{"unsigned", pub, unsigned, nil, FileResult{}, os.ErrNotExist, "unsigned"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := VerifyFile(tc.pub, tc.path, tc.digest)
			if res != tc.want {
				t.Errorf("result = %+v, want %+v", res, tc.want)
			}
			if tc.is == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("err = %v, want %v naming %q", err, tc.is, tc.contains)
			}
		})
	}
}

func TestSignFilePrecomputedDigest(t *testing.T) {
	// A precomputed digest is used as given: the file is not read.
	k := sharedKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "never-written.raw")
	digest := sha256.Sum256([]byte("content elsewhere"))
	if err := SignFile(context.Background(), k, path, digest[:]); err != nil {
		t.Fatal(err)
	}
	res, err := VerifyFile(k.Public().(*ecdsa.PublicKey), path, digest[:])
	if err != nil || !res.Sig || !res.Bundle {
		t.Fatalf("VerifyFile = %+v, %v", res, err)
	}
}

func TestMarshalBundleDeterministic(t *testing.T) {
	k := sharedKey(t)
	digest := sha256.Sum256([]byte("x"))
	sig, err := k.Sign(context.Background(), digest[:])
	if err != nil {
		t.Fatal(err)
	}
	first, err := MarshalBundle(k.Public(), digest[:], sig)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := MarshalBundle(k.Public(), digest[:], sig)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, first) {
			t.Fatalf("bundle bytes vary:\n%s\n%s", first, again)
		}
	}
	if bytes.ContainsAny(first, " \n") {
		t.Errorf("bundle is not compact: %s", first)
	}
}

func TestWriteSignaturesRejectsBadSignature(t *testing.T) {
	k := sharedKey(t)
	dir := t.TempDir()
	path := writeBlob(t, dir, "f", []byte("data"))
	digest, _ := HashFile(path)
	other := newKey(t)
	sig, _ := other.Sign(context.Background(), digest)
	err := WriteSignatures(path, k.Public(), digest, sig)
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("err = %v, want ErrBadSignature", err)
	}
	for _, suffix := range []string{SigSuffix, BundleSuffix} {
		if _, err := os.Stat(path + suffix); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s written despite a bad signature", suffix)
		}
	}
}

func TestDecodeSig(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []byte
		ok   bool
	}{
		{"plain", "AQID", []byte{1, 2, 3}, true},
		{"trailing newline", "AQID\n", []byte{1, 2, 3}, true},
		{"not base64", "!!!", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeSig([]byte(tc.in))
			if (err == nil) != tc.ok || !bytes.Equal(got, tc.want) {
				t.Fatalf("DecodeSig(%q) = %v, %v", tc.in, got, err)
			}
			if err != nil && !errors.Is(err, ErrBadSignature) {
				t.Errorf("err %v does not wrap ErrBadSignature", err)
			}
		})
	}
}

// FuzzVerifyBundle checks that bundle parsing and verification of arbitrary
// input returns an error rather than panicking, and never accepts a bundle
// for the wrong digest.
func FuzzVerifyBundle(f *testing.F) {
	k := sharedKey(f)
	digest := sha256.Sum256([]byte("fuzz"))
	sig, err := k.Sign(context.Background(), digest[:])
	if err != nil {
		f.Fatal(err)
	}
	good, err := MarshalBundle(k.Public(), digest[:], sig)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{}}`))
	pub := k.Public().(*ecdsa.PublicKey)
	wrong := sha256.Sum256([]byte("other"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = VerifyBundle(pub, digest[:], data)
		if VerifyBundle(pub, wrong[:], data) == nil {
			t.Fatal("bundle verified for a digest nobody signed")
		}
	})
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, mustRead(t, from), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Compile-time check: *CosignKey is a Signer.
var _ Signer = (*CosignKey)(nil)
