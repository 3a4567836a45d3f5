package sign

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/artifacts/composedir"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
)

// bigStage writes random outputs of the given sizes (MiB), streamed.
type bigStage struct {
	kind    string
	inputs  []pipeline.Dep
	outputs map[string]int // name -> MiB
	ext     map[string]string
}

// stage defines the stage.
func (s *bigStage) stage() pipeline.Stage {
	type config struct{ Arch string }
	return pipeline.Define(pipeline.Spec[config]{
		Kind: s.kind, Version: "1", Inputs: s.inputs,
		Plan: func(_ context.Context, pc *pipeline.PlanContext) (*config, error) {
			return &config{pc.Config.Arch}, nil
		},
		Run: func(_ context.Context, rc *pipeline.RunContext, _ *config) error {
			rng := rand.NewChaCha8([32]byte([]byte(strings.Repeat(s.kind, 32))[:32]))
			block := make([]byte, 1<<20)
			for name, mib := range s.outputs {
				out := pipeline.Output{Kind: s.kind, Name: name, MediaType: artifacts.MediaTypeOctet}
				w, err := out.Create(rc, &artifacts.Publish{Filename: "Fedora-Bench-41.x86_64." + s.ext[name]})
				if err != nil {
					return err
				}
				for range mib {
					rng.Read(block)
					if _, err := w.Write(block); err != nil {
						w.Abort()
						return err
					}
				}
				if _, err := w.Commit(); err != nil {
					return err
				}
			}
			return nil
		},
	})
}

// BenchmarkSignCompose measures what signing adds to a compose beyond the
// hashing its SHA256SUMS needs anyway. The compose holds a 24 MiB
// composefs image, a 40 MiB UKI, a 512 MiB raw disk image and a 256 MiB
// qcow2 image (random bytes, in a real artifact store). Each iteration:
//
//   - reference: SHA-256 of the four artifacts and SHA256SUMS;
//   - signing: the sign stage run through pipeline.Execute (forced to run:
//     scrypt key decryption, eight signatures from the stored digests,
//     outputs stored, record written), then the key decrypted again as the
//     build's pre-flight does and SHA256SUMS signed as its finalizer does
//     (composedir.SignSums).
//
// Reported: hash-ms/op, sign-ms/op, overhead-ms/op (the signing time,
// which includes no hashing of artifacts; target < 1000) and sign/hash.
func BenchmarkSignCompose(b *testing.B) {
	ctx := context.Background()
	kd := keys(b, "bench")
	st := openStore(b)
	m := stagetest.Manifests{"bench": {"x86_64": &manifest.Config{Variant: "bench", Name: "Bench", Arch: "x86_64",
		Signing: manifest.Signing{Key: filepath.Join(kd, "cosign.key"), Pub: filepath.Join(kd, "cosign.pub")}}}}
	stages := []pipeline.Stage{
		(&bigStage{kind: "composefs", outputs: map[string]int{"image": 24}, ext: map[string]string{"image": "cfs"}}).stage(),
		(&bigStage{kind: "uki", outputs: map[string]int{"uki": 40}, ext: map[string]string{"uki": "efi"}}).stage(),
		(&bigStage{kind: "disk", inputs: []pipeline.Dep{{Kind: "uki"}}, outputs: map[string]int{"raw": 512, "qcow2": 256}, ext: map[string]string{"raw": "raw", "qcow2": "qcow2"}}).stage(),
		New(),
	}
	p, err := pipeline.Resolve(ctx, m, stages, nil)
	if err != nil {
		b.Fatal(err)
	}
	opts := &pipeline.ExecOptions{Jobs: 2, Secret: secret("bench")}
	res, err := pipeline.Execute(ctx, p, st, opts)
	if err != nil {
		b.Fatal(err)
	}
	var files []string
	for _, kind := range []string{"composefs", "uki", "disk"} {
		for _, o := range res.Of(p.Targets[0].Nodes[kind]).Record.Outputs {
			files = append(files, st.Path(o.Descriptor))
		}
	}
	if len(files) != 4 {
		b.Fatalf("artifacts %v", files)
	}
	dir := b.TempDir()
	sums := filepath.Join(dir, "SHA256SUMS")
	hashAll := func(paths []string) []string {
		var lines []string
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				b.Fatal(err)
			}
			f.Close()
			lines = append(lines, fmt.Sprintf("%x  %s", h.Sum(nil), filepath.Base(p)))
		}
		return lines
	}
	if err := os.WriteFile(sums, []byte(strings.Join(hashAll(files), "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	opts.Rerun = func(n *pipeline.Node) bool { return n.Kind == contract.Sign }
	var hashDur, signDur time.Duration
	for b.Loop() {
		t0 := time.Now()
		hashAll(append(files, sums))
		t1 := time.Now()
		res, err := pipeline.Execute(ctx, p, st, opts)
		if err != nil {
			b.Fatal(err)
		}
		if nr := res.Of(p.Targets[0].Nodes[contract.Sign]); nr.Status != pipeline.StatusRan || len(nr.Record.Outputs) != 8 {
			b.Fatalf("sign stage %s, %d outputs", nr.Status, len(nr.Record.Outputs))
		}
		// The build's pre-flight decrypts the key once more for SHA256SUMS.
		k, err := signing.LoadCosignKey(filepath.Join(kd, "cosign.key"), []byte("bench"))
		if err != nil {
			b.Fatal(err)
		}
		r, err := composedir.SignSums(ctx, dir, map[string]signing.Signer{"bench/x86_64": k})
		if err != nil || !r.Signed {
			b.Fatalf("SHA256SUMS: %+v, %v", r, err)
		}
		t2 := time.Now()
		hashDur += t1.Sub(t0)
		signDur += t2.Sub(t1)
	}
	n := float64(b.N)
	hashMs := hashDur.Seconds() * 1000 / n
	signMs := signDur.Seconds() * 1000 / n
	b.ReportMetric(hashMs, "hash-ms/op")
	b.ReportMetric(signMs, "sign-ms/op")
	b.ReportMetric(signMs, "overhead-ms/op")
	b.ReportMetric(signMs/hashMs, "sign/hash")
}
