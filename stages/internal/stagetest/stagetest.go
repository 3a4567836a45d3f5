// Package stagetest holds the helpers the stage packages' tests share:
// the testbed fixture image, a one-target manifest set, a store and a way
// to run stages through the real pipeline. It is imported by tests only.
package stagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/debfetch"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/initramfs/initbin"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// NoPolicyPath is where the stage tests pin the default containers policy:
// a file that never exists, so the source stage's no-policy rule applies
// whatever /etc/containers/policy.json the host has (issue 13 item 12).
const NoPolicyPath = "/nonexistent/cfs-compose-tests/policy.json"

// init pins the default containers policy of every test that imports this
// package, unless the test run set one itself.
func init() {
	if os.Getenv("CONTAINERS_POLICY_JSON") == "" {
		os.Setenv("CONTAINERS_POLICY_JSON", NoPolicyPath)
	}
}

// CosignPassword encrypts the test cosign keys; Build hands it to stages
// as CFS_SIGNING_PASSWORD.
const CosignPassword = "test-pass"

// FixtureLayout returns the testbed's fixture OCI layout (make fixtures).
func FixtureLayout(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "testbed", "fixtures", "build", "oci")
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		if os.Getenv("CFS_REQUIRE_FIXTURES") != "" {
			t.Fatalf("fixture image missing (%v); run make fixtures", err)
		}
		t.Skipf("SKIPPING: fixture image %s missing; run `make fixtures` (make test does)", dir)
	}
	return dir
}

// FixtureRef is the fixture image reference.
func FixtureRef(t testing.TB) string { return "oci:" + FixtureLayout(t) + ":" + fixtures.Tag }

// RequireInitbin returns the embedded amd64 cfs-init; without `make
// initbins` the builtin tests cannot run.
func RequireInitbin(t testing.TB) []byte {
	t.Helper()
	b, err := initbin.Binary("amd64")
	if errors.Is(err, initbin.ErrNotBuilt) && os.Getenv("CFS_REQUIRE_INITBINS") == "" {
		t.Skipf("SKIPPING: %v (make test builds them)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	contentOnce sync.Once
	content     *fixtures.Content
	contentErr  error
)

// FixtureContent returns what the amd64 fixture image is made of.
func FixtureContent(t testing.TB) *fixtures.Content {
	t.Helper()
	FixtureLayout(t)
	contentOnce.Do(func() {
		cache, err := debfetch.CacheDir()
		if err != nil {
			contentErr = err
			return
		}
		l, err := fixtures.ReadLock(cache)
		if err != nil {
			contentErr = err
			return
		}
		content, contentErr = fixtures.LoadContent(context.Background(), cache, l, "amd64")
	})
	if contentErr != nil {
		t.Fatalf("loading the fixture content: %v", contentErr)
	}
	return content
}

// DerivedImage builds the amd64 fixture image with one more layer holding
// entries, and returns its reference.
func DerivedImage(t testing.TB, entries ...ti.Entry) string {
	t.Helper()
	img := fixtures.Image(FixtureContent(t))
	img.Layers = append(img.Layers, ti.Layer{Entries: entries, Compression: ti.Gzip, Comment: "test changes"})
	return "oci:" + ti.Build(t, img) + ":" + ti.Tag
}

// OneConfig is a manifest set with one variant/arch.
type OneConfig struct{ C *manifest.Config }

func (o OneConfig) Variants() []string     { return []string{o.C.Variant} }
func (o OneConfig) Arches(string) []string { return []string{o.C.Arch} }
func (o OneConfig) Config(string, string) (*manifest.Config, error) {
	c := *o.C
	return &c, nil
}
func (o OneConfig) Compose() manifest.Compose {
	return manifest.Compose{Product: "Fedora", Release: "41", Type: "nightly"}
}

// OpenStore opens a fresh artifact store.
func OpenStore(t testing.TB) *artifacts.Store {
	t.Helper()
	st, err := artifacts.Open(context.Background(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// Build plans and runs stages for mc; a planning error is returned as is.
func Build(t testing.TB, st *artifacts.Store, mc *manifest.Config, stages ...pipeline.Stage) (*pipeline.Plan, *pipeline.Result, error) {
	t.Helper()
	p, err := pipeline.Resolve(context.Background(), OneConfig{C: mc}, stages, nil)
	if err != nil {
		return nil, nil, err
	}
	var logs bytes.Buffer
	res, err := pipeline.Execute(context.Background(), p, st, &pipeline.ExecOptions{Jobs: 2, LogWriter: &SyncWriter{w: &logs},
		Secret: func(n string) (string, bool) { return CosignPassword, n == "CFS_SIGNING_PASSWORD" }})
	return p, res, err
}

// Output returns a stage's output of the only target.
func Output(t testing.TB, p *pipeline.Plan, res *pipeline.Result, kind, name string) artifacts.Output {
	t.Helper()
	n := p.Targets[0].Nodes[kind]
	if n == nil {
		t.Fatalf("no %s stage in the plan", kind)
	}
	rec := res.Of(n).Record
	if rec == nil {
		t.Fatalf("stage %s has no record (%s: %v)", kind, res.Of(n).Status, res.Of(n).Err)
	}
	o, ok := rec.Outputs[name]
	if !ok {
		t.Fatalf("%s has no output %s", kind, name)
	}
	return o
}

// Manifests is a pipeline.Manifests of literal configs:
// variant -> arch -> config.
type Manifests map[string]map[string]*manifest.Config

// Variants implements pipeline.Manifests.
func (m Manifests) Variants() []string {
	var vs []string
	for v := range m {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

// Arches implements pipeline.Manifests.
func (m Manifests) Arches(v string) []string {
	var as []string
	for a := range m[v] {
		as = append(as, a)
	}
	slices.Sort(as)
	return as
}

// Config implements pipeline.Manifests; it returns a copy.
func (m Manifests) Config(v, a string) (*manifest.Config, error) {
	c, ok := m[v][a]
	if !ok {
		return nil, fmt.Errorf("no %s/%s", v, a)
	}
	cp := *c
	return &cp, nil
}

// Compose implements pipeline.Manifests.
func (m Manifests) Compose() manifest.Compose {
	return manifest.Compose{Product: "Fedora", Release: "41", Type: "nightly"}
}

// TestbedConfig is the testbed variant on x86_64 with the builtin
// initramfs, built from image.
func TestbedConfig(image string) *manifest.Config {
	return &manifest.Config{
		Variant: "testbed", Name: "Testbed", Arch: manifest.ArchX86_64,
		Source:    manifest.Source{Image: image, Kind: manifest.SourceContainer},
		Composefs: manifest.Composefs{Enabled: true, Verity: initconfig.VerityEnable},
		Kernel:    manifest.Kernel{Cmdline: []string{"console=ttyS0"}},
		Initramfs: manifest.Initramfs{Source: manifest.InitramfsBuiltin, Modules: []string{}},
		UKI:       manifest.UKI{Enabled: true, Stub: "image", Name: "testbed"},
		Disk: manifest.Disk{Size: 256 << 20, Partitions: []manifest.Partition{
			{Name: "esp", Type: "esp", Size: 64 << 20, FS: "vfat", Label: "esp"},
			{Name: "root", Type: "root", FS: "ext4", Label: "root", Verity: true},
		}},
		Lints: manifest.Lints{Skip: []string{"root-dirs"}},
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers (stage logs).
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// SyncWriter serializes writes from concurrently running stages.
type SyncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *SyncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// PlanContext is the plan context of mc with its facts decided, for
// calling a stage's Plan directly.
func PlanContext(t testing.TB, mc *manifest.Config) *pipeline.PlanContext {
	t.Helper()
	f, err := pipeline.FactsOf(pipeline.Target{Variant: mc.Variant, Name: mc.Name, Arch: mc.Arch}, mc)
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline.PlanContext{Config: mc, Facts: f, Compose: OneConfig{C: mc}.Compose()}
}
