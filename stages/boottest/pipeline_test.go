package boottest

// The boot test through the real pipeline: the source stage imports the
// testbed fixture image, the composefs stage builds its image and digest,
// the disk stage writes the GPT disk, and this stage boots it. The uki
// stage is not in the stage table yet: testbed/fixtures/standin assembles
// the UKI as docs/stages.md specifies it, from the same Debian packages
// the fixture image is made of.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	cfsstage "github.com/cfs-compose/cfs-compose/stages/composefs"
	"github.com/cfs-compose/cfs-compose/stages/disk"
	"github.com/cfs-compose/cfs-compose/stages/source"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures/standin"
)

// pipelineConfig is the testbed variant (manifests/testbed.hcl) for arch,
// with the boot test on.
func pipelineConfig(arch, image string, composefs bool) *manifest.Config {
	c := testbedConfig(arch)
	c.Source = manifest.Source{Image: "oci:" + image + ":testbed", Kind: manifest.SourceContainer}
	c.Composefs.Enabled = composefs
	if !composefs {
		c.Composefs.Verity = manifest.VerityNone
	}
	c.Initramfs = manifest.Initramfs{Source: manifest.InitramfsBuiltin}
	c.UKI = manifest.UKI{Enabled: true, Stub: "image", Name: "testbed"}
	c.Rootfs = manifest.Rootfs{ExtraDirs: []string{}}
	c.Lints = manifest.Lints{Skip: []string{}}
	c.Disk = manifest.Disk{Size: 512 << 20, Formats: []string{"raw"}, Partitions: []manifest.Partition{
		{Name: "esp", Type: "esp", Size: 64 << 20, FS: "vfat", Label: "EFI-SYSTEM"},
		{Name: "root", Type: "root", Size: 0, FS: "ext4", Label: "root", Verity: true},
	}}
	return c
}

// TestPipeline builds the testbed variant for x86_64 and aarch64 with the
// real source, composefs and disk stages and boot-tests it with Secure
// Boot enforced: every check of the boot chain and the Secure Boot check
// must pass. A second run with nothing changed takes the boot test from
// the cache; forcing it to rerun (what cfs-compose test does) boots again
// and reuses every other stage.
func TestPipeline(t *testing.T) {
	requireBoot(t, "x86_64")
	requireBoot(t, "aarch64")
	layout, err := fixtures.DefaultLayoutDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err != nil {
		t.Fatalf("the fixture image is missing (%v): run make fixtures", err)
	}
	bs := map[string]*archBase{"x86_64": base(t, "x86_64"), "aarch64": base(t, "aarch64")}
	firmwareEnv(t, bs["x86_64"])
	kits := map[string]*standin.Kit{"x86_64": bs["x86_64"].kit, "aarch64": bs["aarch64"].kit}
	pki, err := secureboot.GeneratePKI(secureboot.PKIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cert := writeCert(t, t.TempDir(), pki.DB)
	m := manifests{}
	for _, arch := range []string{"x86_64", "aarch64"} {
		c := pipelineConfig(arch, layout, true)
		c.SecureBoot = manifest.SecureBoot{Cert: cert, Key: "db.key"}
		c.Test.SecureBoot = true
		m[arch] = c
	}
	stages := []pipeline.Stage{source.New(), cfsstage.New(), &standin.UKI{Kits: kits, Signer: pki.DB}, disk.New(), New()}
	ctx := context.Background()
	st, err := artifacts.Open(ctx, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	run := func(rerun bool) (*pipeline.Plan, *pipeline.Result) {
		t.Helper()
		plan, err := pipeline.Resolve(ctx, m, stages, &pipeline.ResolveOptions{Offline: true})
		if err != nil {
			t.Fatal(err)
		}
		var logs syncBuffer
		opts := &pipeline.ExecOptions{Jobs: 1, LogWriter: &logs}
		if rerun {
			opts.Rerun = func(n *pipeline.Node) bool { return n.Kind == Kind }
		}
		start := time.Now()
		res, err := pipeline.Execute(ctx, plan, st, opts)
		if err != nil {
			t.Fatalf("build: %v\nlogs:\n%s", err, logs.String())
		}
		t.Logf("pipeline run (rerun boottest %v): %.1fs, %v", rerun, time.Since(start).Seconds(), res.Counts())
		return plan, res
	}

	plan, res := run(false)
	pass := []string{"agent-report", "uefi-boot", "secureboot-enabled", "composefs-root", "composefs-digest",
		"composefs-verity", "usr-readonly", "etc-writable", "var-writable"}
	for _, tn := range plan.Targets {
		nr := res.Of(tn.Nodes[Kind])
		if nr.Status != pipeline.StatusRan {
			t.Fatalf("%s: boottest %s", tn.Target, nr.Status)
		}
		checkOutputs(t, st, nr.Record, tn.Target.Arch, pass)
		// The digest the boot was checked against is the composefs stage's.
		var d cfsstage.Digest
		b, _ := os.ReadFile(st.Path(res.Of(tn.Nodes["composefs"]).Record.Outputs["digest"].Descriptor))
		json.Unmarshal(b, &d)
		var r artifacts.BootTestResults
		b, _ = os.ReadFile(st.Path(nr.Record.Outputs["results"].Descriptor))
		json.Unmarshal(b, &r)
		if r.ComposefsDigest != d.Digest || r.Facts["composefs"] != d.Digest {
			t.Errorf("%s: booted %s, checked against %s, composefs stage built %s", tn.Target, r.Facts["composefs"], r.ComposefsDigest, d.Digest)
		}
	}

	_, res = run(false)
	if n := res.Counts()[pipeline.StatusCached]; n != len(res.Nodes) {
		t.Errorf("second run: %v, want everything cached", res.Counts())
	}
	_, res = run(true)
	for _, nr := range res.Nodes {
		want := pipeline.StatusCached
		if nr.Node.Kind == Kind {
			want = pipeline.StatusRan
		}
		if nr.Status != want {
			t.Errorf("forced rerun: %s %s, want %s", nr.Node.Kind, nr.Status, want)
		}
	}
}
