package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/handoff"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// hsm makes the raw signatures a request asks for with plain Go crypto,
// standing in for an HSM or an air-gapped host.
type hsm struct {
	cosign   *signing.CosignKey
	db       *secureboot.KeyPair
	rawECDSA bool // return r||s (PKCS#11 CKM_ECDSA) instead of DER
}

func newHSM(t *testing.T, keys string) *hsm {
	t.Helper()
	k, err := signing.LoadCosignKey(filepath.Join(keys, "cosign.key"), []byte(testPass))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := secureboot.LoadKeyPair(filepath.Join(keys, "db.crt"), filepath.Join(keys, "db.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &hsm{cosign: k, db: kp}
}

// sign answers a request file with a signatures file.
func (h *hsm) sign(t *testing.T, reqFile, sigFile string) *handoff.Request {
	t.Helper()
	f, err := os.Open(reqFile)
	if err != nil {
		t.Fatal(err)
	}
	req, err := handoff.ReadRequest(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	sigs := &handoff.Signatures{Schema: handoff.SignaturesSchema}
	for i, it := range req.Items {
		var sig []byte
		switch it.Kind {
		case handoff.KindBlob:
			sig, err = h.cosign.Sign(context.Background(), it.Digest)
			if err == nil && h.rawECDSA && i%2 == 0 {
				var rs struct{ R, S *big.Int }
				if _, err := asn1.Unmarshal(sig, &rs); err != nil {
					t.Fatal(err)
				}
				sig = append(rs.R.FillBytes(make([]byte, 32)), rs.S.FillBytes(make([]byte, 32))...)
			}
		case handoff.KindAuthenticode:
			sig, err = h.db.Key.Sign(rand.Reader, it.Digest, crypto.SHA256)
		}
		if err != nil {
			t.Fatal(err)
		}
		sigs.Signatures = append(sigs.Signatures, handoff.Signature{Kind: it.Kind, Path: it.Path, Digest: it.Digest, Signature: sig})
	}
	b, err := sigs.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sigFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return req
}

// changed lists the files that differ between two snapshots (added,
// removed or modified).
func changed(before, after map[string]string) []string {
	var out []string
	for p, d := range after {
		if before[p] != d {
			out = append(out, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// TestSignHandoff walks the documented two-round offline signing of a
// compose built without any private key on the build host.
func TestSignHandoff(t *testing.T) {
	keys := testKeys(t)
	base := t.TempDir()
	cache, out := filepath.Join(base, "cache"), filepath.Join(base, "out")
	m := testManifests{"testbed": {"x86_64": variantConfig("testbed", "", false, false)}}
	rec1 := buildFixture(t, m, cache, out)
	dir1 := rec1.Dir
	c1, err := openCompose(dir1)
	if err != nil {
		t.Fatal(err)
	}
	tg := c1.Targets[0]
	if c1.Signing == nil || c1.Signing.Sums.Signed || c1.Signing.Sums.Reason != "no target has a signing key" {
		t.Fatalf("signing record %+v", c1.Signing)
	}
	pub, crt := filepath.Join(keys, "cosign.pub"), filepath.Join(keys, "db.crt")
	h := newHSM(t, keys)
	keyArgs := []string{"--key", pub, "--db-cert", crt}

	// Round 1: Authenticode for the UKI.
	req1 := filepath.Join(base, "req1.json")
	code, stdout, stderr := runCLI(append([]string{"sign", "--request", dir1, "-o", req1}, keyArgs...)...)
	if code != 0 || !strings.Contains(stderr, "authenticode signing request for 1 item(s)") {
		t.Fatalf("request 1: exit %d\n%s%s", code, stdout, stderr)
	}
	var raw map[string]any
	data, _ := os.ReadFile(req1)
	if err := json.Unmarshal(data, &raw); err != nil || raw["schema"] != handoff.RequestSchema {
		t.Fatalf("request 1: %v\n%s", err, data)
	}
	sigs1 := filepath.Join(base, "sigs1.json")
	r1 := h.sign(t, req1, sigs1)
	if len(r1.Items) != 1 || r1.Items[0].Path != tg.UKI || r1.Items[0].Kind != handoff.KindAuthenticode || len(r1.Items[0].AuthenticodeSHA256) != 32 {
		t.Fatalf("request 1 items: %+v", r1.Items)
	}

	// A bad signature: nothing changes.
	before := snapshot(t, dir1)
	bad := filepath.Join(base, "bad.json")
	b, _ := os.ReadFile(sigs1)
	var doc handoff.Signatures
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc.Signatures[0].Signature[10] ^= 1
	b, _ = doc.Marshal()
	os.WriteFile(bad, b, 0o644)
	code, stdout, stderr = runCLI(append([]string{"--cache-dir", cache, "sign", "--apply", dir1, bad}, keyArgs...)...)
	if code != 1 || !strings.Contains(stderr, "signature does not verify") {
		t.Fatalf("bad signature: exit %d\n%s%s", code, stdout, stderr)
	}
	if ch := changed(before, snapshot(t, dir1)); len(ch) != 0 {
		t.Fatalf("a refused apply changed %v", ch)
	}

	// Apply round 1 (the request is rebuilt from the compose).
	code, stdout, stderr = runCLI(append([]string{"--cache-dir", cache, "sign", "--apply", dir1, sigs1}, keyArgs...)...)
	if code != 0 || !strings.Contains(stdout, tg.UKI) || !strings.Contains(stderr, "Cache: the uki stage") {
		t.Fatalf("apply 1: exit %d\n%s%s", code, stdout, stderr)
	}
	if ch := changed(before, snapshot(t, dir1)); !slices.Equal(ch, []string{tg.UKI}) {
		t.Fatalf("apply 1 changed %v, want only the UKI", ch)
	}
	if _, err := secureboot.VerifyPEFile(filepath.Join(dir1, tg.UKI), []*x509.Certificate{h.db.Cert}); err != nil {
		t.Fatalf("signed UKI: %v", err)
	}
	// The compose is now inconsistent until the rebuild, and says so.
	code, stdout, _ = runCLI(append([]string{"verify", dir1}, keyArgs...)...)
	if code != 1 || !hasRow(stdout, tg.Raw, "disk-uki", "FAIL", "rebuild the disk") || !hasRow(stdout, tg.UKI, "sha256", "FAIL", "") {
		t.Fatalf("verify after round 1: exit %d\n%s", code, stdout)
	}
	code, _, stderr = runCLI(append([]string{"sign", "--request", dir1, "--round", "blob"}, keyArgs...)...)
	if code != 1 || !strings.Contains(stderr, "rebuild (cfs-compose build)") {
		t.Fatalf("blob request on a stale compose: exit %d\n%s", code, stderr)
	}

	// Rebuild: the uki stage is cached with the signed UKI, the disk reruns.
	rec2 := buildFixture(t, m, cache, out)
	status := map[string]string{}
	for _, s := range rec2.Stages {
		status[s.Kind] = string(s.Status)
	}
	if status["uki"] != "cached" || status["composefs"] != "cached" || status["disk"] != "ran" {
		t.Fatalf("rebuild stage statuses %v", status)
	}
	dir2 := rec2.Dir
	signedUKI, _ := os.ReadFile(filepath.Join(dir1, tg.UKI))
	if got, _ := os.ReadFile(filepath.Join(dir2, tg.UKI)); !bytes.Equal(got, signedUKI) {
		t.Fatal("the rebuilt compose does not carry the signed UKI")
	}

	// Round 2: blob signatures of every artifact and SHA256SUMS.
	req2 := filepath.Join(base, "req2.json")
	code, stdout, stderr = runCLI(append([]string{"sign", "--request", dir2, "-o", req2}, keyArgs...)...)
	if code != 0 || !strings.Contains(stderr, "blob signing request for 4 item(s)") {
		t.Fatalf("request 2: exit %d\n%s%s", code, stdout, stderr)
	}
	h.rawECDSA = true
	sigs2 := filepath.Join(base, "sigs2.json")
	r2 := h.sign(t, req2, sigs2)
	var paths []string
	for _, it := range r2.Items {
		paths = append(paths, it.Path)
	}
	if want := []string{tg.Composefs, tg.UKI, tg.Raw, "SHA256SUMS"}; !slices.Equal(paths, want) {
		t.Fatalf("request 2 paths %v, want %v", paths, want)
	}
	// The wrong key is refused before anything is written.
	other := testKeys(t)
	before = snapshot(t, dir2)
	code, _, stderr = runCLI("sign", "--apply", dir2, sigs2, "--request-file", req2, "--key", filepath.Join(other, "cosign.pub"), "--db-cert", crt)
	if code != 1 || !strings.Contains(stderr, "key differs from the one the request names") {
		t.Fatalf("wrong key: exit %d\n%s", code, stderr)
	}
	code, stdout, stderr = runCLI(append([]string{"sign", "--apply", dir2, sigs2, "--request-file", req2}, keyArgs...)...)
	if code != 0 {
		t.Fatalf("apply 2: exit %d\n%s%s", code, stdout, stderr)
	}
	var want []string
	for _, p := range paths {
		want = append(want, p+".sig", p+".sigstore.json")
	}
	slices.Sort(want)
	if ch := changed(before, snapshot(t, dir2)); !slices.Equal(ch, want) {
		t.Fatalf("apply 2 changed %v, want only %v", ch, want)
	}
	code, stdout, stderr = runCLI(append([]string{"verify", dir2}, keyArgs...)...)
	if code != 0 {
		t.Fatalf("verify after round 2: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(append([]string{"sign", "--request", dir2}, keyArgs...)...)
	if code != 0 || stdout != "" || !strings.Contains(stderr, "Nothing to sign") {
		t.Fatalf("request 3: exit %d\n%s%s", code, stdout, stderr)
	}

	// The cache record now says where the signed UKI came from.
	st, err := artifacts.Open(context.Background(), cache, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := st.GetRecord(tg.UKIKey)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(r.Meta["authenticode"]), "offline hand-off") {
		t.Errorf("uki record meta %s", r.Meta["authenticode"])
	}
}
