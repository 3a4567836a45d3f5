package boottest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
)

var _ pipeline.Keyer = (*Config)(nil)

// manifests is a pipeline.Manifests of literal configs, one per arch of a
// single variant.
type manifests map[string]*manifest.Config

func (m manifests) Variants() []string { return []string{"testbed"} }
func (m manifests) Arches(string) []string {
	var as []string
	for _, a := range []string{"aarch64", "x86_64"} {
		if m[a] != nil {
			as = append(as, a)
		}
	}
	return as
}
func (m manifests) Config(_, a string) (*manifest.Config, error) { c := *m[a]; return &c, nil }
func (m manifests) Compose() manifest.Compose {
	return manifest.Compose{Product: "Fedora", Release: "41", Type: "test"}
}

// fakeDisk stands in for the disk stage: its "raw" output is a prepared
// image file.
func fakeDisk(path string) pipeline.Stage {
	type config struct{ Path string }
	return pipeline.Define(pipeline.Spec[config]{
		Kind: contract.Disk, Version: "test",
		Plan: func(context.Context, *pipeline.PlanContext) (*config, error) { return &config{path}, nil },
		Run: func(_ context.Context, rc *pipeline.RunContext, c *config) error {
			in, err := os.Open(c.Path)
			if err != nil {
				return err
			}
			defer in.Close()
			p := filepath.Join(rc.TempDir(), "disk.raw")
			out, err := os.Create(p)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
			return contract.DiskRaw.AddFile(rc, p, nil)
		},
	})
}

// fakeSource stands in for the source stage: a tree whose /usr/sbin/init
// is not systemd, so the agent runs as PID 1 (the busybox fixture's way).
func fakeSource() pipeline.Stage {
	type config struct{}
	return pipeline.Define(pipeline.Spec[config]{
		Kind: contract.Source, Version: "test",
		Plan: func(context.Context, *pipeline.PlanContext) (*config, error) { return &config{}, nil },
		Run: func(_ context.Context, rc *pipeline.RunContext, _ *config) error {
			return contract.SourceTree.Put(rc, []byte("/ 0 40755 2 0 0 0 0.0 - - -\n"), nil)
		},
	})
}

// fakeComposefs stands in for the composefs stage: its "digest" output.
func fakeComposefs(digest string) pipeline.Stage {
	type config struct{ Digest string }
	return pipeline.Define(pipeline.Spec[config]{
		Kind: contract.Composefs, Version: "test",
		When: func(f *pipeline.Facts) bool { return f.Composefs },
		Plan: func(context.Context, *pipeline.PlanContext) (*config, error) { return &config{digest}, nil },
		Run: func(_ context.Context, rc *pipeline.RunContext, c *config) error {
			return contract.ComposefsDigest.Set(rc, &artifacts.ComposefsDigest{Digest: c.Digest, Version: 1}, nil)
		},
	})
}

// testbedConfig is the testbed variant's manifest config for arch, as
// manifests/testbed.hcl resolves it, with the test block switched on.
func testbedConfig(arch string) *manifest.Config {
	return &manifest.Config{Variant: "testbed", Name: "Testbed", Arch: arch,
		Composefs: manifest.Composefs{Enabled: true, Verity: initconfig.VerityEnable},
		Test:      manifest.Test{Boot: true, Timeout: 3 * time.Minute, Memory: 1 << 30, Checks: []string{}}}
}

// runStage runs the boottest stage through the pipeline with a fake disk
// stage serving disk and a fake composefs stage serving digest.
func runStage(t *testing.T, cfg *manifest.Config, disk, digest string) (*pipeline.NodeResult, *artifacts.Store, string, error) {
	t.Helper()
	ctx := context.Background()
	st, err := artifacts.Open(ctx, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := manifests{cfg.Arch: cfg}
	stages := []pipeline.Stage{fakeSource(), fakeComposefs(digest), fakeDisk(disk), New()}
	plan, err := pipeline.Resolve(ctx, m, stages, &pipeline.ResolveOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	var logs stagetest.SyncBuffer
	res, err := pipeline.Execute(ctx, plan, st, &pipeline.ExecOptions{LogWriter: &logs})
	return res.Of(plan.Targets[0].Nodes[contract.BootTest]), st, logs.String(), err
}

// firmwareEnv points the testbed at the trixie firmware and virt-fw-vars
// that the fixtures cache holds.
func firmwareEnv(t testing.TB, tools *fixtures.Tools) {
	t.Setenv("CFS_FIRMWARE_DIRS", tools.OVMFDir+":"+tools.AAVMFDir)
	t.Setenv("CFS_VIRT_FW_VARS", tools.VirtFwVarsWrapper)
}

// writeCert writes a db certificate as PEM and returns its path.
func writeCert(t testing.TB, dir string, kp *secureboot.KeyPair) string {
	t.Helper()
	files, err := (&secureboot.PKI{PK: kp, KEK: kp, DB: kp}).Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name == "db.crt" {
			p := filepath.Join(dir, "db.crt")
			write(t, p, f.Data, 0o644)
			return p
		}
	}
	t.Fatal("no db.crt")
	return ""
}

func fileSum(t testing.TB, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// checkOutputs checks the published outputs and meta of a passed run.
func checkOutputs(t *testing.T, st *artifacts.Store, rec *artifacts.Record, name string, pass []string) {
	t.Helper()
	want := map[string]string{"results": name + ".boottest.json", "junit": name + ".junit.xml", "console": name + ".console.log"}
	for out, file := range want {
		o, ok := rec.Outputs[out]
		if !ok {
			t.Fatalf("no output %s", out)
		}
		if o.Publish == nil || o.Publish.Dir != "tests" || o.Publish.Filename != file {
			t.Errorf("output %s published as %+v, want tests/%s", out, o.Publish, file)
		}
	}
	var r artifacts.BootTestResults
	b, err := os.ReadFile(st.Path(rec.Outputs["results"].Descriptor))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range r.Checks {
		got[c.Name] = c.Result
		if c.Result == "FAIL" || c.Result == "WARN" {
			t.Errorf("check %s: %s: %s", c.Name, c.Result, strings.Join(c.Output, "; "))
		}
	}
	for _, n := range pass {
		if got[n] != "PASS" {
			t.Errorf("check %s = %q, want PASS", n, got[n])
		}
	}
	if r.Schema != artifacts.BootTestSchema || r.Target != name || r.Outcome != "powered-off" || r.Result != "PASS" {
		t.Errorf("results header: schema %d target %s outcome %s result %s", r.Schema, r.Target, r.Outcome, r.Result)
	}
	var meta struct {
		Checks  map[string]string `json:"checks"`
		Verdict float64           `json:"verdict_seconds"`
	}
	mb, _ := json.Marshal(rec.Meta)
	if err := json.Unmarshal(mb, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Verdict <= 0 || len(meta.Checks) != len(r.Checks) {
		t.Errorf("meta %s", mb)
	}
	jb, err := os.ReadFile(st.Path(rec.Outputs["junit"].Descriptor))
	if err != nil {
		t.Fatal(err)
	}
	var ju struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Props []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"properties>property"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(jb, &ju); err != nil {
		t.Fatalf("JUnit: %v", err)
	}
	if ju.Tests != len(r.Checks) || ju.Failures != 0 || len(ju.Suites) != 1 || ju.Suites[0].Name != name {
		t.Errorf("JUnit: %d tests, %d failures, suites %+v", ju.Tests, ju.Failures, ju.Suites)
	}
	for _, p := range ju.Suites[0].Props {
		if p.Name == "console_log" && p.Value != name+".console.log" {
			t.Errorf("JUnit console_log property %q", p.Value)
		}
	}
	cb, err := os.ReadFile(st.Path(rec.Outputs["console"].Descriptor))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cb, []byte("CFS-TEST-END")) {
		t.Errorf("console log lacks the agent's report")
	}
	t.Logf("BOOT TIME %s: verdict at %.2fs, QEMU exited at %.2fs (accel %s)", name, r.VerdictSeconds, r.QEMUSeconds, r.Accel)
}

// TestStageFails boots a good disk against a wrong composefs digest: the
// composefs-digest check fails, so the stage fails, naming the check and
// showing the console.
func TestStageFails(t *testing.T) {
	requireBoot(t, "x86_64")
	b := build(t)
	cfg := testbedConfig("x86_64")
	cfg.Test.Checks = []string{"composefs-*", "agent-report"}
	wrong := strings.Repeat("ab", 32)
	nr, _, _, err := runStage(t, cfg, b.disk(t, vTestbed, "x86_64"), wrong)
	if err == nil {
		t.Fatal("the stage passed with a wrong composefs digest")
	}
	if nr.Status != pipeline.StatusFailed {
		t.Errorf("status %s", nr.Status)
	}
	msg := err.Error()
	for _, want := range []string{"boot test of Fedora-Testbed-41.x86_64 failed: composefs-digest", "last console lines", "CFS-TEST-END"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if failed, _, _ := strings.Cut(msg, " (boot "); strings.Contains(failed, "composefs-root") {
		t.Errorf("composefs-root is named as failed: %s", failed)
	}
	// The reports are still outputs, for the DOOMED compose (issue 13 item 4).
	for _, name := range []string{"results", "junit", "console"} {
		if o, ok := nr.Partial[name]; !ok || o.Publish == nil {
			t.Errorf("the failed stage left no published %s output: %+v", name, nr.Partial)
		}
	}
}

// bootTarget boots a prepared image with a stage config (through
// PrepareFirmware and Config.Target, as the stage does) with the features
// overridden, and runs the matching checks.
func bootTarget(t testing.TB, c *Config, disk, digest string, features []testbed.Feature) *testbed.TargetReport {
	t.Helper()
	dir := t.TempDir()
	fw, err := PrepareFirmware(context.Background(), c, dir)
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Target(disk, digest, fw)
	tg.Features = features
	var console bytes.Buffer
	s := testbed.Suite{OutputDir: dir, Reporters: testbed.Reporters{testbed.NewConsoleReporter(&console, 30)}}
	rep, err := s.Run(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", console.String())
	return rep
}

func resultsOf(rep *testbed.TargetReport) map[string]testbed.Result {
	m := map[string]testbed.Result{}
	for _, c := range rep.Checks {
		m[c.Name] = c.Result
	}
	return m
}

func mustResolve(t *testing.T, cfg *manifest.Config) *Config {
	t.Helper()
	c, err := resolve(cfg, manifests{}.Compose())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func write(t testing.TB, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}
