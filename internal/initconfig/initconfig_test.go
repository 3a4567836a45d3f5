package initconfig

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func pubPEM(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestParse(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	good := Config{Version: 1, Modules: []string{"a.ko", "b.ko"}, Composefs: true, Verity: "require", Signed: true, PublicKey: pubPEM(t, &ec.PublicKey), RootLabel: "root"}
	data, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil || got.PublicKey != good.PublicKey || got.Verity != "require" || len(got.Modules) != 2 {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	ost := Config{Version: 1, Composefs: true, Verity: "enable", RootLabel: "root", Ostree: true}
	if data, err = ost.Marshal(); err != nil {
		t.Fatal(err)
	}
	if got, err := Parse(data); err != nil || !got.Ostree {
		t.Fatalf("ostree round trip: %+v, %v", got, err)
	}
	tests := []struct{ name, in, want string }{
		{"not json", "x", "invalid character"},
		{"unknown field", `{"version":1,"verity":"none","root_label":"root","extra":1}`, `unknown field "extra"`},
		{"version", `{"version":2,"verity":"none","root_label":"root"}`, "version 2, want 1"},
		{"verity", `{"version":1,"verity":"maybe","root_label":"root"}`, `verity "maybe"`},
		{"module path", `{"version":1,"verity":"none","root_label":"root","modules":["../x.ko"]}`, "not a plain .ko file name"},
		{"module suffix", `{"version":1,"verity":"none","root_label":"root","modules":["x.ko.xz"]}`, "not a plain .ko file name"},
		{"no label", `{"version":1,"verity":"none"}`, "root_label is empty"},
		{"signed without composefs", `{"version":1,"verity":"none","root_label":"r","signed":true}`, "signed needs composefs"},
		{"signed without key", `{"version":1,"verity":"none","root_label":"r","signed":true,"composefs":true}`, "not a PEM"},
		{"P-384 key", `{"version":1,"verity":"none","root_label":"r","signed":true,"composefs":true,"public_key":` + jsonString(pubPEM(t, &p384.PublicKey)) + `}`, "not P-256"},
		{"RSA key", `{"version":1,"verity":"none","root_label":"r","signed":true,"composefs":true,"public_key":` + jsonString(pubPEM(t, &rk.PublicKey)) + `}`, "unsupported key type"},
		{"signed ostree", `{"version":1,"verity":"none","root_label":"r","signed":true,"composefs":true,"ostree":true}`, "not supported with ostree"},
		{"trailing", `{"version":1,"verity":"none","root_label":"r"} {}`, "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func jsonString(s string) string {
	return `"` + strings.ReplaceAll(s, "\n", `\n`) + `"`
}

const digest = "9c76eecc7b76fcb46199cb27b90cf59a660e10575bb0412128905129d5b1c2aa"

func TestSignVerify(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other := strings.Replace(digest, "9c", "9d", 1)
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa-p256", ec}, {"ed25519", ed}} {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := ParsePublicKey([]byte(pubPEM(t, tc.key.Public())))
			if err != nil {
				t.Fatal(err)
			}
			sig, err := SignDigest(tc.key, digest)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := base64.StdEncoding.DecodeString(string(sig))
			for _, ok := range [][]byte{sig, append(append([]byte{}, sig...), '\n'), raw} {
				if err := VerifyDigest(pub, digest, ok); err != nil {
					t.Errorf("VerifyDigest(%q): %v", ok, err)
				}
			}
			bad := append([]byte{}, raw...)
			bad[len(bad)/2] ^= 1
			for name, c := range map[string]struct {
				pub crypto.PublicKey
				d   string
				sig []byte
			}{
				"other digest": {pub, other, sig},
				"tampered":     {pub, digest, bad},
				"wrong key":    {&ec2.PublicKey, digest, sig},
				"empty":        {pub, digest, nil},
			} {
				if err := VerifyDigest(c.pub, c.d, c.sig); !errors.Is(err, ErrBadSignature) {
					t.Errorf("%s: err = %v, want ErrBadSignature", name, err)
				}
			}
		})
	}
	if _, err := SignDigest(ec, "ABC"); err == nil {
		t.Error("SignDigest accepted a bad digest")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"verity":"none","root_label":"root","modules":["a.ko"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil {
			if _, err := c.Marshal(); err != nil {
				t.Fatalf("parsed config does not marshal: %v", err)
			}
		}
	})
}
