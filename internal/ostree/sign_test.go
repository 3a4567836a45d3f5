package ostree

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testKey is a fixed ed25519 key (seed 0x01…0x20).
func testKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func TestByteArraysAndMeta(t *testing.T) {
	sigs := [][]byte{bytes.Repeat([]byte{1}, 64), {}, {2, 3}}
	b, err := MarshalDict([]MetaEntry{{MetaSignEd25519, ByteArrays(sigs)}, {"k", String("v")}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseDict(b)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := m[0].Value.AsByteArrays()
	if len(m) != 2 || m[0].Key != MetaSignEd25519 || !ok || len(got) != 3 || !bytes.Equal(got[0], sigs[0]) || len(got[1]) != 0 || !bytes.Equal(got[2], sigs[2]) {
		t.Fatalf("round trip: %+v", m)
	}
	if _, ok := m[1].Value.AsByteArrays(); ok {
		t.Error("a string reads as aay")
	}
	if _, err := ParseDict(b[:len(b)-3]); err == nil {
		t.Error("truncated metadata parsed")
	}
}

func TestSecretKeyText(t *testing.T) {
	k := testKey()
	got, err := ParseSecretKeyText(base64.StdEncoding.EncodeToString(k))
	if err != nil || !got.Equal(k) {
		t.Fatalf("ParseSecretKeyText = %v, %v", got, err)
	}
	other := ed25519.NewKeyFromSeed(make([]byte, 32))
	mixed := append(append([]byte{}, k[:32]...), other[32:]...)
	for name, text := range map[string]string{"not base64": "%%%", "short": base64.StdEncoding.EncodeToString(k[:32]),
		"mismatched halves": base64.StdEncoding.EncodeToString(mixed)} {
		if _, err := ParseSecretKeyText(text); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// glibDecodeMeta decodes an a{sv} with ostree.sign.ed25519 (aay) using
// GLib's own GVariant code (python3-gi), the serializer ostree uses, and
// returns the signatures, hex encoded, one per line.
const glibDecodeMeta = `
import sys
import gi
gi.require_version("GLib", "2.0")
from gi.repository import GLib
data = open(sys.argv[1], "rb").read()
v = GLib.Variant.new_from_bytes(GLib.VariantType.new("a{sv}"), GLib.Bytes.new(data), False)
if not v.is_normal_form():
    sys.exit("not in normal form")
if v.get_data_as_bytes().get_data() != data:
    sys.exit("GLib re-serializes it differently")
d = v.unpack()
assert list(d) == ["ostree.sign.ed25519"], list(d)
for sig in d["ostree.sign.ed25519"]:
    print(bytes(sig).hex())
`

// TestSignOracle signs a commit with SignCommit and WriteCommitMeta and
// checks the detached metadata with independent implementations: GLib's
// GVariant code (python3-gi) must decode it as the a{sv} ostree reads,
// in normal form and byte-identical when re-serialized, and OpenSSL must
// verify the signature over the .commit file's bytes with the public key.
// (Debian's ostree 2025.2 is built without ed25519 support: `ostree sign`
// there says "Requested signature type is not implemented", so it cannot
// be the oracle.) VerifyCommit must accept the signature and refuse a
// changed one, another key, and a commit without signatures.
func TestSignOracle(t *testing.T) {
	for _, tool := range []string{"/usr/bin/python3", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (make deps installs python3-gi and openssl): %v", tool, err)
		}
	}
	tree, ours := t.TempDir(), t.TempDir()
	if err := makeTree(tree, oracleTree); err != nil {
		t.Fatal(err)
	}
	tr, open, err := loadDir(tree)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(ours, &Options{Open: open})
	if err != nil {
		t.Fatal(err)
	}
	root, err := w.WriteTree(tr)
	if err != nil {
		t.Fatal(err)
	}
	cm := &Commit{Subject: "signed", Metadata: []MetaEntry{RefBinding("cfs/test")}, Timestamp: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		RootContents: root.Contents, RootMeta: root.Meta}
	commit, err := w.WriteCommit(cm)
	if err != nil {
		t.Fatal(err)
	}
	data, err := cm.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	key := testKey()
	pub := key.Public().(ed25519.PublicKey)
	sig := SignCommit(data, key)
	if err := w.WriteCommitMeta(commit, []MetaEntry{{MetaSignEd25519, ByteArrays([][]byte{sig})}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(ours, filepath.FromSlash(ObjectPath(commit, ObjectCommitMeta)))
	out, err := exec.Command("/usr/bin/python3", "-c", glibDecodeMeta, metaPath).CombinedOutput()
	if err != nil {
		t.Fatalf("GLib decoding %s: %v: %s", metaPath, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != hex.EncodeToString(sig) {
		t.Errorf("GLib reads signatures %q, want %x", got, sig)
	}

	// OpenSSL verifies the signature over the commit object's bytes.
	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"pub.pem": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), "sig": sig}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	commitPath := filepath.Join(ours, filepath.FromSlash(ObjectPath(commit, ObjectCommit)))
	if out, err := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", filepath.Join(dir, "pub.pem"), "-rawin",
		"-in", commitPath, "-sigfile", filepath.Join(dir, "sig")).CombinedOutput(); err != nil {
		t.Errorf("openssl pkeyutl -verify: %v: %s", err, out)
	}

	meta, err := openDir(t, ours).ReadCommitMeta(commit)
	if err != nil {
		t.Fatal(err)
	}
	other := ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)
	if i, err := VerifyCommit(data, meta, []ed25519.PublicKey{other, pub}); err != nil || i != 1 {
		t.Errorf("VerifyCommit = %d, %v", i, err)
	}
	bad := bytes.Clone(sig)
	bad[10] ^= 1
	for name, tt := range map[string]struct {
		meta []MetaEntry
		keys []ed25519.PublicKey
	}{
		"changed signature": {[]MetaEntry{{MetaSignEd25519, ByteArrays([][]byte{bad})}}, []ed25519.PublicKey{pub}},
		"another key":       {meta, []ed25519.PublicKey{other}},
		"no signatures":     {nil, []ed25519.PublicKey{pub}},
	} {
		if _, err := VerifyCommit(data, tt.meta, tt.keys); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: VerifyCommit = %v, want ErrSignature", name, err)
		}
	}
	if _, err := openDir(t, ours).ReadCommitMeta(root.Contents); !errors.Is(err, ErrNotExist) {
		t.Errorf("ReadCommitMeta of a commit without: %v", err)
	}
}

func TestParseSigningKey(t *testing.T) {
	k := testKey()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for name, data := range map[string][]byte{"PKCS#8 PEM": pkcs8, "ostree text": []byte(base64.StdEncoding.EncodeToString(k) + "\n")} {
		got, err := ParseSigningKey(data)
		if err != nil || !got.Equal(k) {
			t.Errorf("%s: %v, %v", name, got, err)
		}
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	for name, tt := range map[string]struct {
		data []byte
		err  string
	}{
		"ECDSA":     {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), "ostree signs with ed25519"},
		"encrypted": {pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), "want an unencrypted PKCS#8"},
		"garbage":   {[]byte("not a key"), "ed25519 secret key"},
	} {
		if _, err := ParseSigningKey(tt.data); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, want %q", name, err, tt.err)
		}
	}
}
