package initramfs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/initramfs/initbin"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// fixtureLayout returns the testbed's fixture OCI layout (make fixtures).
func fixtureLayout(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "testbed", "fixtures", "build", "oci")
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		if os.Getenv("CFS_REQUIRE_FIXTURES") != "" {
			t.Fatalf("fixture image missing (%v); run make fixtures", err)
		}
		t.Skipf("SKIPPING: fixture image %s missing; run `make fixtures` (make test does)", dir)
	}
	return dir
}

// fixtureRef is the fixture image reference.
func fixtureRef(t *testing.T) string { return "oci:" + fixtureLayout(t) + ":" + fixtures.Tag }

// requireInitbin returns the embedded amd64 cfs-init; without `make
// initbins` the builtin tests cannot run.
func requireInitbin(t *testing.T) []byte {
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

// fixtureContent returns what the amd64 fixture image is made of.
func fixtureContent(t *testing.T) *fixtures.Content {
	t.Helper()
	fixtureLayout(t)
	contentOnce.Do(func() {
		cache, err := fixtures.DefaultCacheDir()
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

// derivedImage builds the amd64 fixture image with one more layer holding
// entries, and returns its reference.
func derivedImage(t *testing.T, entries ...ti.Entry) string {
	t.Helper()
	img := fixtures.Image(fixtureContent(t))
	img.Layers = append(img.Layers, ti.Layer{Entries: entries, Compression: ti.Gzip, Comment: "test changes"})
	return "oci:" + ti.Build(t, img) + ":" + ti.Tag
}

// oneConfig is a manifest set with one variant/arch.
type oneConfig struct{ c *manifest.Config }

func (o oneConfig) Variants() []string     { return []string{o.c.Variant} }
func (o oneConfig) Arches(string) []string { return []string{o.c.Arch} }
func (o oneConfig) Config(string, string) (*manifest.Config, error) {
	c := *o.c
	return &c, nil
}
func (o oneConfig) Compose() manifest.Compose {
	return manifest.Compose{Product: "Fedora", Release: "41", Type: "nightly"}
}

// config is the testbed variant on x86_64 with the builtin initramfs.
func config(image string) *manifest.Config {
	return &manifest.Config{
		Variant: "testbed", Name: "Testbed", Arch: manifest.ArchX86_64,
		Source:    manifest.Source{Image: image, Kind: manifest.SourceContainer},
		Composefs: manifest.Composefs{Enabled: true, Verity: manifest.VerityEnable},
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

// openStore opens a fresh artifact store.
func openStore(t *testing.T) *artifacts.Store {
	t.Helper()
	st, err := artifacts.Open(context.Background(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// build plans and runs stages for mc; a planning error is returned as is.
func build(t *testing.T, st *artifacts.Store, mc *manifest.Config, stages ...pipeline.Stage) (*pipeline.Plan, *pipeline.Result, error) {
	t.Helper()
	p, err := pipeline.Resolve(context.Background(), oneConfig{mc}, stages, nil)
	if err != nil {
		return nil, nil, err
	}
	var logs bytes.Buffer
	res, err := pipeline.Execute(context.Background(), p, st, &pipeline.ExecOptions{Jobs: 2, LogWriter: &syncWriter{w: &logs}})
	return p, res, err
}

// output returns a stage's output of the only target.
func output(t *testing.T, p *pipeline.Plan, res *pipeline.Result, kind, name string) artifacts.Output {
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

// syncWriter serializes writes from concurrently running stages.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
