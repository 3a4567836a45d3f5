package composedir

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/handoff"
)

func genKey(t *testing.T) *signing.CosignKey {
	t.Helper()
	priv, _, err := signing.GenerateCosignKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := signing.ParseCosignKey(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignSums(t *testing.T) {
	a, b := genKey(t), genKey(t)
	tests := []struct {
		name   string
		keys   map[string]signing.Signer
		signed bool
		reason string
	}{
		{"no targets", map[string]signing.Signer{}, false, "no target has a signing key"},
		{"no keys", map[string]signing.Signer{"a/x86_64": nil, "b/x86_64": nil}, false, "no target has a signing key"},
		{"one key", map[string]signing.Signer{"a/x86_64": a, "a/aarch64": a, "b/x86_64": a}, true, ""},
		{"two keys", map[string]signing.Signer{"a/x86_64": a, "b/x86_64": b}, false, "targets use different signing keys (a/x86_64: " + a.Hint() + ", b/x86_64: " + b.Hint() + ")"},
		{"one unsigned", map[string]signing.Signer{"a/x86_64": a, "b/x86_64": nil}, false, "b/x86_64: no key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(strings.Repeat("0", 64)+"  x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := SignSums(context.Background(), dir, tc.keys)
			if err != nil {
				t.Fatal(err)
			}
			if r.Signed != tc.signed || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("record %+v", r)
			}
			res, err := signing.VerifyFile(a.Public().(*ecdsa.PublicKey), filepath.Join(dir, "SHA256SUMS"), nil)
			if tc.signed {
				if err != nil || !res.Sig || !res.Bundle || r.Hint != a.Hint() || len(r.Files) != 2 {
					t.Fatalf("signatures: %+v, %v, record %+v", res, err, r)
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("unsigned SHA256SUMS has signatures: %v", err)
			}
		})
	}
}

// testOutputs names the stage outputs as cmd/cfs-compose does (from
// stages/contract), spelled out so the test does not import the stages.
var testOutputs = Outputs{
	Composefs: OutputRef{"composefs", "image"},
	UKI:       OutputRef{"uki", "uki"},
	Raw:       OutputRef{"disk", "raw"},
	Qcow2:     OutputRef{"disk", "qcow2"},
}

// writeCompose writes a compose directory with the given compose.json.
func writeCompose(t *testing.T, record string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files["compose.json"] = record
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const goodRecord = `{"schema": 1, "targets": [{"variant": "coreos", "name": "CoreOS", "arch": "x86_64",
  "stages": {"composefs": "c1", "uki": "u1", "disk": "d1", "sign": "s1"}}],
 "stages": [
  {"id": "c1", "kind": "composefs", "outputs": {"image": {"digest": "sha256:00", "size": 1, "mediaType": "x", "publish": {"filename": "Fedora-CoreOS-41.x86_64.cfs"}},
                                             "digest": {"digest": "sha256:01", "size": 1, "mediaType": "x"}}},
  {"id": "u1", "kind": "uki", "key": "abcdef0123456789", "outputs": {"uki": {"digest": "sha256:02", "size": 1, "mediaType": "x", "publish": {"filename": "Fedora-CoreOS-41.x86_64.efi"}}}},
  {"id": "d1", "kind": "disk", "outputs": {"raw": {"digest": "sha256:03", "size": 1, "mediaType": "x", "publish": {"filename": "Fedora-CoreOS-41.x86_64.raw", "dir": "images"}}}},
  {"id": "s1", "kind": "sign", "outputs": {}}],
 "extra": {"signing": {"cosign": [{"pub": "/keys/cosign.pub", "hint": "h", "targets": ["coreos/x86_64"]}], "sha256sums": {"signed": true, "hint": "h"}}}}`

func TestOpen(t *testing.T) {
	c, err := Open(writeCompose(t, goodRecord, map[string]string{}), testOutputs)
	if err != nil {
		t.Fatal(err)
	}
	want := Target{Composefs: "CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.cfs", UKI: "CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.efi",
		Raw: "CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.raw", UKIKey: "abcdef0123456789"}
	got := c.Targets[0]
	if len(c.Targets) != 1 || got.Composefs != want.Composefs || got.UKI != want.UKI || got.Raw != want.Raw || got.Qcow2 != "" || got.UKIKey != want.UKIKey {
		t.Fatalf("target %+v", got)
	}
	if len(c.Artifacts()) != 3 || len(c.UKIs()) != 1 || c.Signing == nil || c.Signing.Cosign[0].Pub != "/keys/cosign.pub" {
		t.Fatalf("artifacts %v, UKIs %v, signing %+v", c.Artifacts(), c.UKIs(), c.Signing)
	}

	tests := []struct {
		name   string
		record string
		want   string
	}{
		{"unknown stage id", strings.Replace(goodRecord, `"uki": "u1"`, `"uki": "zz"`, 1), "stage uki zz is not in compose.json"},
		{"file name with a slash", strings.Replace(goodRecord, `Fedora-CoreOS-41.x86_64.raw"`, `../../x.raw"`, 1), `bad file name "../../x.raw"`},
		{"bad signing record", strings.Replace(goodRecord, `"signed": true`, `"signed": "yes"`, 1), "extra.signing"},
		{"not JSON", "{", "reading compose record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(writeCompose(t, tc.record, map[string]string{}), testOutputs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestHandoffRefusals(t *testing.T) {
	ctx := context.Background()
	k := genKey(t)
	pub := k.Public().(*ecdsa.PublicKey)
	dir := writeCompose(t, goodRecord, map[string]string{
		"CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.cfs": "composefs image",
		"CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.efi": "not a PE",
		"CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.raw": "disk",
		"SHA256SUMS":           "0000000000000000000000000000000000000000000000000000000000000000  CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.cfs\n",
		"metadata/images.json": "{}",
	})
	c, err := Open(dir, testOutputs)
	if err != nil {
		t.Fatal(err)
	}
	keys := handoff.Keys{Cosign: pub}
	sigsFor := func(kind handoff.Kind, paths ...string) *handoff.Signatures {
		s := &handoff.Signatures{Schema: handoff.SignaturesSchema}
		for _, p := range paths {
			s.Signatures = append(s.Signatures, handoff.Signature{Kind: kind, Path: p, Signature: []byte{1}})
		}
		return s
	}
	tests := []struct {
		name string
		run  func() error
		is   error
		want string
	}{
		{"unknown round", func() error { _, _, err := c.Request(ctx, keys, "third"); return err }, nil, `unknown round "third"`},
		{"blob round without a key", func() error { _, _, err := c.Request(ctx, handoff.Keys{}, RoundBlob); return err }, nil, "needs the cosign public key"},
		{"authenticode round without a certificate", func() error { _, _, err := c.Request(ctx, keys, RoundAuthenticode); return err }, nil, "needs the db certificate"},
		{"artifact not listed", func() error { _, _, err := c.Request(ctx, keys, RoundBlob); return err }, ErrStale, "Fedora-CoreOS-41.x86_64.efi is not listed in SHA256SUMS"},
		{"signature for a file that is no artifact", func() error {
			_, err := c.RequestFor(ctx, sigsFor(handoff.KindBlob, "metadata/images.json"), keys)
			return err
		}, ErrNotArtifact, "metadata/images.json (blob)"},
		{"Authenticode for a disk image", func() error {
			_, err := c.RequestFor(ctx, sigsFor(handoff.KindAuthenticode, "CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.raw"), keys)
			return err
		}, ErrNotArtifact, "x86_64.raw (authenticode)"},
		{"no signatures", func() error { _, err := c.RequestFor(ctx, sigsFor(handoff.KindBlob), keys); return err }, handoff.ErrSchema, "lists no signature"},
		{"stale artifact", func() error {
			req, err := c.RequestFor(ctx, sigsFor(handoff.KindBlob, "CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.cfs"), keys)
			if err != nil {
				return err
			}
			_, err = c.Apply(ctx, req, sigsFor(handoff.KindBlob, "CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.cfs"), keys)
			return err
		}, ErrStale, "rebuild (cfs-compose build)"},
		{"request naming a foreign file", func() error {
			req := &handoff.Request{Schema: handoff.RequestSchema, Items: []handoff.Item{{Kind: handoff.KindBlob, Path: "compose.json"}}}
			_, err := c.Apply(ctx, req, sigsFor(handoff.KindBlob, "compose.json"), keys)
			return err
		}, ErrNotArtifact, "compose.json (blob)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %v, want %q (%v)", err, tc.want, tc.is)
			}
			if _, err := os.Stat(filepath.Join(dir, "CoreOS/x86_64/images/Fedora-CoreOS-41.x86_64.cfs.sig")); err == nil {
				t.Fatal("a refused hand-off wrote a signature")
			}
		})
	}
}
