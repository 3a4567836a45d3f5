package boottest

// The boot test through the real pipeline: the source stage imports the
// testbed fixture image, the composefs stage builds its image and digest,
// the disk stage writes the GPT disk, and this stage boots it. The uki
// stage is not in the stage table yet, so a test stage assembles the UKI
// the way docs/stages.md specifies it (the builtin initramfs with cfs-init
// and the kernel's modules, the command line with composefs=<digest>,
// Authenticode-signed with the db key) from the same Debian packages the
// fixture image is made of.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/internal/initramfs"
	"github.com/cfs-compose/cfs-compose/internal/uki"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	cfsstage "github.com/cfs-compose/cfs-compose/stages/composefs"
	"github.com/cfs-compose/cfs-compose/stages/disk"
	"github.com/cfs-compose/cfs-compose/stages/source"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
)

// testUKI stands in for the uki stage.
type testUKI struct {
	bases  map[string]*archBase
	signer *secureboot.KeyPair // db key; nil: unsigned
}

type testUKIConfig struct {
	Arch      string `json:"arch"`
	Composefs bool   `json:"composefs"`
	Verity    string `json:"verity"`
	Signed    bool   `json:"signed"`
	DBCert    string `json:"db_cert,omitempty"` // fingerprint of the signing certificate
}

func (s *testUKI) Kind() string    { return "uki" }
func (s *testUKI) Version() string { return "test" }
func (s *testUKI) Inputs() []pipeline.Dep {
	return []pipeline.Dep{{Kind: "source"}, {Kind: "composefs", Optional: true}}
}
func (s *testUKI) Plan(_ context.Context, pc *pipeline.PlanContext) (any, error) {
	c := testUKIConfig{Arch: pc.Config.Arch, Composefs: pc.Config.Composefs.Enabled, Verity: initconfig.VerityNone}
	if c.Composefs {
		c.Verity = pc.Config.Composefs.Verity
	}
	if s.signer != nil {
		c.Signed, c.DBCert = true, secureboot.Fingerprint(s.signer.Cert)
	}
	return c, nil
}

func (s *testUKI) Run(ctx context.Context, rc *pipeline.RunContext) error {
	var c testUKIConfig
	if err := rc.DecodeConfig(&c); err != nil {
		return err
	}
	b := s.bases[c.Arch]
	cfg := initconfig.Config{Version: 1, Composefs: c.Composefs, Verity: c.Verity, RootLabel: "root"}
	cmdline := "console=tty0 " + map[string]string{"x86_64": "console=ttyS0,115200n8", "aarch64": "console=ttyAMA0,115200n8"}[c.Arch]
	if c.Composefs {
		raw, err := rc.ReadInput("composefs", "digest")
		if err != nil {
			return err
		}
		var d cfsstage.Digest
		if err := json.Unmarshal(raw, &d); err != nil {
			return err
		}
		cmdline += " composefs=" + d.Digest
	}
	var rd bytes.Buffer
	if err := initramfs.WriteBuiltin(&rd, initramfs.Gzip, initramfs.Builtin{Init: b.cfsInit, Modules: b.modules, Config: cfg}); err != nil {
		return err
	}
	k := b.content.Kernel
	p := filepath.Join(rc.TempDir(), "uki.efi")
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	err = uki.Build(f, bytes.NewReader(b.content.Stub), int64(len(b.content.Stub)), uki.Sections{
		Linux: bytes.NewReader(k.Vmlinuz), Initrd: bytes.NewReader(rd.Bytes()),
		Cmdline: cmdline, OSRel: fixtures.OSRelease(k.Version), Uname: k.Version})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if c.Signed {
		signed := p + ".signed"
		if err := secureboot.SignPE(ctx, s.signer, p, signed); err != nil {
			return err
		}
		p = signed
	}
	return rc.AddFile("uki", p, artifacts.MediaTypeOctet, nil)
}

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
	stages := []pipeline.Stage{source.New(), cfsstage.New(), &testUKI{bases: bs, signer: pki.DB}, disk.New(), New()}
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
