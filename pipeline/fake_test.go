package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// fakeManifests is a Manifests made of literal configs.
type fakeManifests struct {
	compose manifest.Compose
	configs map[string]map[string]*manifest.Config // variant -> arch -> config
}

func newFake(variants map[string][]string) *fakeManifests {
	f := &fakeManifests{
		compose: manifest.Compose{Product: "Fedora", Release: "41", Type: "nightly"},
		configs: map[string]map[string]*manifest.Config{},
	}
	for v, arches := range variants {
		f.configs[v] = map[string]*manifest.Config{}
		for _, a := range arches {
			f.configs[v][a] = &manifest.Config{
				Variant: v, Name: strings.ToUpper(v[:1]) + v[1:], Arch: a,
				Source:    manifest.Source{Image: "oci:/fixtures/" + v, Kind: manifest.SourceContainer},
				Composefs: manifest.Composefs{Enabled: true, Verity: initconfig.VerityNone},
			}
		}
	}
	return f
}

func (f *fakeManifests) Variants() []string {
	var vs []string
	for v := range f.configs {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return vs
}

func (f *fakeManifests) Arches(v string) []string {
	var as []string
	for a := range f.configs[v] {
		as = append(as, a)
	}
	sort.Strings(as)
	return as
}

func (f *fakeManifests) Config(v, a string) (*manifest.Config, error) {
	c, ok := f.configs[v][a]
	if !ok {
		return nil, fmt.Errorf("no config for %s/%s", v, a)
	}
	cp := *c
	return &cp, nil
}

func (f *fakeManifests) Compose() manifest.Compose { return f.compose }

// hooks let a test observe and steer the fake stages.
type hooks struct {
	mu       sync.Mutex
	runs     map[string]int // kind -> Run calls
	running  atomic.Int32
	maxPar   atomic.Int32
	fail     map[string]bool          // kind -> fail
	failLate map[string]bool          // kind -> add a published report output, then fail
	block    map[string]chan struct{} // kind -> Run waits on it (or ctx)
	sleep    time.Duration
	started  chan string // kind, on Run start (buffered; optional)
	runsFile string      // when set, each Run appends "kind key" (cross-process counting)
}

func newHooks() *hooks {
	return &hooks{runs: map[string]int{}, fail: map[string]bool{}, failLate: map[string]bool{}, block: map[string]chan struct{}{}}
}

func (h *hooks) count(kind string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runs[kind]
}

// fakeStage is a test-only stage. "src" emits its config as bytes; other
// kinds hash their inputs with their own name, so every output depends on
// the whole upstream chain.
type fakeStage struct {
	kind    string
	version string
	inputs  []Dep
	h       *hooks
	// plan derives the config from the manifest config.
	planFn func(*manifest.Config) (any, error)
	// unused makes Used report false.
	unused bool
}

func (s *fakeStage) Kind() string     { return s.kind }
func (s *fakeStage) Version() string  { return s.version }
func (s *fakeStage) Inputs() []Dep    { return s.inputs }
func (s *fakeStage) Used(*Facts) bool { return !s.unused }
func (s *fakeStage) plan(_ context.Context, pc *PlanContext) (any, error) {
	if s.planFn != nil {
		return s.planFn(pc.Config)
	}
	return map[string]any{"arch": pc.Config.Arch}, nil
}

func (s *fakeStage) run(ctx context.Context, rc *RunContext, config any) error {
	h := s.h
	h.mu.Lock()
	h.runs[s.kind]++
	blk := h.block[s.kind]
	fail := h.fail[s.kind]
	failLate := h.failLate[s.kind]
	h.mu.Unlock()
	n := h.running.Add(1)
	defer h.running.Add(-1)
	for {
		m := h.maxPar.Load()
		if n <= m || h.maxPar.CompareAndSwap(m, n) {
			break
		}
	}
	if h.started != nil {
		h.started <- s.kind
	}
	if h.runsFile != "" {
		f, err := os.OpenFile(h.runsFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		fmt.Fprintf(f, "%s %s\n", s.kind, rc.Targets()[0])
		f.Close()
	}
	cfg := config
	rc.Log.Info().Msg("fake stage working")
	if blk != nil {
		select {
		case <-blk:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if h.sleep > 0 {
		select {
		case <-time.After(h.sleep):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errors.New("fake failure")
	}
	if failLate {
		// A stage that fails after writing its report (a boot test whose
		// checks failed): the report must reach the DOOMED compose.
		if err := rc.addBytes("report", "text/plain", []byte(s.kind+" report"),
			&artifacts.Publish{Dir: "tests", Filename: s.kind + "-report.txt"}); err != nil {
			return err
		}
		return errors.New("fake failure after the report")
	}
	content := fmt.Sprintf("%s %v", s.kind, cfg)
	for _, d := range s.inputs {
		if !rc.hasInput(d.Kind, "out") {
			continue
		}
		b, err := rc.readInput(d.Kind, "out")
		if err != nil {
			return err
		}
		content += "\n<" + string(b) + ">"
	}
	rc.Progress(1, 1)
	var pub *artifacts.Publish
	if s.kind == "disk" {
		pub = &artifacts.Publish{Filename: "disk-" + rc.Targets()[0].Arch + ".raw", Type: "raw", Format: "raw", Bootable: true}
	}
	if err := rc.SetMeta("len", len(content)); err != nil {
		return err
	}
	return rc.addBytes("out", "text/plain", []byte(content), pub)
}

// chain returns the test pipeline src -> cfs -> uki -> disk (+ an
// independent "lint" off src), sharing one hooks.
func chain(h *hooks) []Stage {
	return []Stage{
		&fakeStage{kind: "src", version: "1", h: h, planFn: func(c *manifest.Config) (any, error) {
			return map[string]any{"image": c.Source.Image, "arch": c.Arch}, nil
		}},
		&fakeStage{kind: "cfs", version: "1", h: h, inputs: []Dep{{Kind: "src"}}, planFn: func(c *manifest.Config) (any, error) {
			return map[string]any{"enabled": c.Composefs.Enabled, "verity": c.Composefs.Verity}, nil
		}},
		&fakeStage{kind: "lint", version: "1", h: h, inputs: []Dep{{Kind: "src"}}},
		&fakeStage{kind: "uki", version: "1", h: h, inputs: []Dep{{Kind: "cfs"}}, planFn: func(c *manifest.Config) (any, error) {
			return map[string]any{"cmdline": c.Kernel.Cmdline}, nil
		}},
		&fakeStage{kind: "disk", version: "1", h: h, inputs: []Dep{{Kind: "uki"}, {Kind: "cfs"}}},
	}
}
