package sign

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
)

var _ pipeline.Keyer = (*Config)(nil)

// fakeOutput is one output of an upstream fake stage.
type fakeOutput struct {
	name string
	ext  string // published as Fedora-<Name>-41.<arch>.<ext>; "" = unpublished
	size int
}

// fakeStage stands in for composefs, uki and disk: it writes
// deterministic bytes derived from its kind, output name and arch.
type fakeStage struct {
	kind    string
	inputs  []pipeline.Dep
	outputs []fakeOutput
	skip    bool // the target does not use the stage
	runs    *int
}

// stage defines the fake stage.
func (s *fakeStage) stage() pipeline.Stage {
	type config struct{ Arch, Name string }
	return pipeline.Define(pipeline.Spec[config]{
		Kind: s.kind, Version: "1", Inputs: s.inputs,
		When: func(*pipeline.Facts) bool { return !s.skip },
		Plan: func(_ context.Context, pc *pipeline.PlanContext) (*config, error) {
			return &config{Arch: pc.Config.Arch, Name: pc.Config.Name}, nil
		},
		Run: func(_ context.Context, rc *pipeline.RunContext, c *config) error {
			for _, o := range s.outputs {
				var pub *artifacts.Publish
				if o.ext != "" {
					pub = &artifacts.Publish{Filename: fmt.Sprintf("Fedora-%s-41.%s.%s", c.Name, c.Arch, o.ext), Type: o.ext, Format: o.ext}
				}
				out := pipeline.Output{Kind: s.kind, Name: o.name, MediaType: artifacts.MediaTypeOctet}
				if err := out.Put(rc, content(s.kind, o.name, c.Arch, o.size), pub); err != nil {
					return err
				}
			}
			if s.runs != nil {
				*s.runs++
			}
			return nil
		},
	})
}

func content(kind, name, arch string, size int) []byte {
	seed := []byte(kind + "/" + name + "/" + arch + "\n")
	return bytes.Repeat(seed, size/len(seed)+1)[:size]
}

// upstream returns fake composefs, uki and disk stages.
func upstream(qcow2 bool) []pipeline.Stage {
	disk := []fakeOutput{{"raw", "raw", 1 << 20}, {"layout", "", 100}}
	if qcow2 {
		disk = append(disk, fakeOutput{"qcow2", "qcow2", 300000})
	}
	return []pipeline.Stage{
		(&fakeStage{kind: "composefs", outputs: []fakeOutput{{"image", "cfs", 50000}, {"digest", "", 64}}}).stage(),
		(&fakeStage{kind: "uki", inputs: []pipeline.Dep{{Kind: "composefs", Optional: true}}, outputs: []fakeOutput{{"uki", "efi", 70000}}}).stage(),
		(&fakeStage{kind: "disk", inputs: []pipeline.Dep{{Kind: "uki"}, {Kind: "composefs", Optional: true}}, outputs: disk}).stage(),
	}
}

// keys writes a development key set and returns its directory.
func keys(t testing.TB, pass string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := signing.GenerateKeys(dir, signing.GenerateOptions{Passphrase: []byte(pass)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func config(variant, arch, keyDir string) *manifest.Config {
	c := &manifest.Config{Variant: variant, Name: strings.ToUpper(variant[:1]) + variant[1:], Arch: arch}
	if keyDir != "" {
		c.Signing = manifest.Signing{Key: filepath.Join(keyDir, "cosign.key"), Pub: filepath.Join(keyDir, "cosign.pub")}
	}
	return c
}

func secret(pass string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if name == PasswordSecret {
			return pass, true
		}
		return "", false
	}
}

func openStore(t testing.TB) *artifacts.Store {
	t.Helper()
	st, err := artifacts.Open(context.Background(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// execute resolves and runs the stages for m.
func execute(t *testing.T, m stagetest.Manifests, stages []pipeline.Stage, st *artifacts.Store, pass string) (*pipeline.Plan, *pipeline.Result, error) {
	t.Helper()
	p, err := pipeline.Resolve(context.Background(), m, stages, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Execute(context.Background(), p, st, &pipeline.ExecOptions{Jobs: 2, Secret: secret(pass)})
	return p, res, err
}

func TestSignStage(t *testing.T) {
	kd := keys(t, "s3cret")
	pub, err := signing.LoadPublicKey(filepath.Join(kd, "cosign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	m := stagetest.Manifests{"coreos": {"x86_64": config("coreos", "x86_64", kd), "aarch64": config("coreos", "aarch64", kd)}}
	var signRuns int
	stages := append(upstream(true), New())
	p, res, err := execute(t, m, stages, st, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range p.Targets {
		sn := tn.Nodes[contract.Sign]
		if sn == nil {
			t.Fatalf("%s: no sign stage", tn.Target)
		}
		nr := res.Of(sn)
		if nr.Status != pipeline.StatusRan {
			t.Fatalf("%s: sign stage %s: %v", tn.Target, nr.Status, nr.Err)
		}
		signRuns++
		upOut := map[string]artifacts.Output{}
		for _, kind := range []string{"composefs", "uki", "disk"} {
			for name, o := range res.Of(tn.Nodes[kind]).Record.Outputs {
				upOut[name] = o
			}
		}
		outs := nr.Record.Outputs
		var names []string
		for n := range outs {
			names = append(names, n)
		}
		slices.Sort(names)
		want := []string{"image.sig", "image.sigstore.json", "qcow2.sig", "qcow2.sigstore.json", "raw.sig", "raw.sigstore.json", "uki.sig", "uki.sigstore.json"}
		if !slices.Equal(names, want) {
			t.Fatalf("%s: outputs %v, want %v", tn.Target, names, want)
		}
		for _, in := range []string{"image", "uki", "raw", "qcow2"} {
			signed := upOut[in]
			digest, _ := hex.DecodeString(signed.Digest.Hex())
			sigOut, bundleOut := outs[in+".sig"], outs[in+".sigstore.json"]
			if sigOut.Publish == nil || sigOut.Publish.Filename != signed.Publish.Filename+".sig" || sigOut.Publish.Type != "" {
				t.Errorf("%s %s.sig publish = %+v, next to %+v wanted", tn.Target, in, sigOut.Publish, signed.Publish)
			}
			if bundleOut.Publish == nil || bundleOut.Publish.Filename != signed.Publish.Filename+".sigstore.json" {
				t.Errorf("%s %s.sigstore.json publish = %+v", tn.Target, in, bundleOut.Publish)
			}
			sigText, err := st.ReadBlob(sigOut.Digest)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := signing.DecodeSig(sigText)
			if err != nil {
				t.Fatal(err)
			}
			if err := signing.VerifyDigest(pub, digest, sig); err != nil {
				t.Errorf("%s %s.sig: %v", tn.Target, in, err)
			}
			bundle, err := st.ReadBlob(bundleOut.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := signing.VerifyBundle(pub, digest, bundle); err != nil {
				t.Errorf("%s %s.sigstore.json: %v", tn.Target, in, err)
			}
			// The digest the stage signed is the artifact's real SHA-256.
			data, err := st.ReadBlob(signed.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := signing.VerifyBundle(pub, sha(data), bundle); err != nil {
				t.Errorf("%s %s: bundle does not cover the artifact bytes: %v", tn.Target, in, err)
			}
		}
		if string(nr.Record.Meta["signed"]) != `["composefs/image","uki/uki","disk/raw","disk/qcow2"]` {
			t.Errorf("meta signed = %s", nr.Record.Meta["signed"])
		}
	}
	if signRuns != 2 {
		t.Fatalf("%d sign stages, want 2", signRuns)
	}

	// A second run is fully cached.
	_, res2, err := execute(t, m, stages, st, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if c := res2.Counts(); c[pipeline.StatusRan] != 0 {
		t.Errorf("second run ran %d stages", c[pipeline.StatusRan])
	}

	// The key files may move: the cache key holds only the key hint.
	moved := t.TempDir()
	for _, f := range []string{"cosign.key", "cosign.pub"} {
		if err := os.Rename(filepath.Join(kd, f), filepath.Join(moved, f)); err != nil {
			t.Fatal(err)
		}
	}
	m2 := stagetest.Manifests{"coreos": {"x86_64": config("coreos", "x86_64", moved)}}
	_, res3, err := execute(t, m2, stages, st, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if c := res3.Counts(); c[pipeline.StatusRan] != 0 || c[pipeline.StatusCached] != 4 {
		t.Errorf("after moving the key files: %v", c)
	}
}

func sha(b []byte) []byte {
	d := artifacts.DigestBytes(b)
	h, _ := hex.DecodeString(d.Hex())
	return h
}

// TestSignStagePartialInputs: only the inputs present are signed; a
// variant without composefs gets no composefs signatures, and
// unpublished inputs get unpublished signatures.
func TestSignStagePartialInputs(t *testing.T) {
	kd := keys(t, "")
	st := openStore(t)
	stages := []pipeline.Stage{
		(&fakeStage{kind: "composefs", skip: true}).stage(),
		(&fakeStage{kind: "uki", outputs: []fakeOutput{{"uki", "", 1000}}}).stage(),
		(&fakeStage{kind: "disk", inputs: []pipeline.Dep{{Kind: "uki"}}, outputs: []fakeOutput{{"raw", "raw", 4096}}}).stage(),
		New(),
	}
	m := stagetest.Manifests{"iot": {"x86_64": config("iot", "x86_64", kd)}}
	p, res, err := execute(t, m, stages, st, "") // an empty passphrase is a passphrase
	if err != nil {
		t.Fatal(err)
	}
	nr := res.Of(p.Targets[0].Nodes[contract.Sign])
	outs := nr.Record.Outputs
	if len(outs) != 4 || outs["uki.sig"].Publish != nil || outs["raw.sig"].Publish == nil {
		t.Fatalf("outputs: %+v", outs)
	}
}

func TestSignStageSkipped(t *testing.T) {
	st := openStore(t)
	m := stagetest.Manifests{"silverblue": {"x86_64": config("silverblue", "x86_64", "")}}
	p, _, err := execute(t, m, append(upstream(false), New()), st, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Targets[0].Nodes[contract.Sign]; ok {
		t.Fatal("sign stage planned without signing.key")
	}
}

func TestSignStageErrors(t *testing.T) {
	kd := keys(t, "Pa55-XYZZY")
	other := keys(t, "Pa55-XYZZY")
	tests := []struct {
		name    string
		cfg     func() *manifest.Config
		secret  func(string) (string, bool)
		planErr string
		runErr  string
		is      error
	}{
		{"wrong passphrase", func() *manifest.Config { return config("a", "x86_64", kd) }, secret("Pa55-PLUGH"), "",
			"loading cosign key " + filepath.Join(kd, "cosign.key"), signing.ErrDecrypt},
		{"no passphrase", func() *manifest.Config { return config("a", "x86_64", kd) }, func(string) (string, bool) { return "", false }, "",
			"no passphrase for " + filepath.Join(kd, "cosign.key") + ": set CFS_SIGNING_PASSWORD", nil},
		{"pub of another key", func() *manifest.Config {
			c := config("a", "x86_64", kd)
			c.Signing.Pub = filepath.Join(other, "cosign.pub")
			return c
		}, secret("Pa55-XYZZY"), "", "is not the key of " + filepath.Join(other, "cosign.pub"), nil},
		{"missing pub", func() *manifest.Config {
			c := config("a", "x86_64", kd)
			c.Signing.Pub = filepath.Join(kd, "nope.pub")
			return c
		}, secret("Pa55-XYZZY"), "signing.pub: reading public key", "", nil},
		{"pub is a private key", func() *manifest.Config {
			c := config("a", "x86_64", kd)
			c.Signing.Pub = filepath.Join(kd, "cosign.key")
			return c
		}, secret("Pa55-XYZZY"), "loading public key " + filepath.Join(kd, "cosign.key"), "", signing.ErrKeyFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			m := stagetest.Manifests{"a": {"x86_64": tc.cfg()}}
			p, err := pipeline.Resolve(context.Background(), m, append(upstream(false), New()), nil)
			if tc.planErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.planErr) || (tc.is != nil && !errors.Is(err, tc.is)) {
					t.Fatalf("plan error %v, want %q", err, tc.planErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res, err := pipeline.Execute(context.Background(), p, st, &pipeline.ExecOptions{Jobs: 1, Secret: tc.secret})
			if err == nil || !strings.Contains(err.Error(), tc.runErr) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("run error %v, want %q", err, tc.runErr)
			}
			if strings.Contains(err.Error(), "XYZZY") || strings.Contains(err.Error(), "PLUGH") {
				t.Errorf("error mentions the passphrase: %v", err)
			}
			nr := res.Of(p.Targets[0].Nodes[contract.Sign])
			if nr.Status != pipeline.StatusFailed || nr.Record != nil {
				t.Errorf("sign stage %s, record %v", nr.Status, nr.Record)
			}
		})
	}
}
