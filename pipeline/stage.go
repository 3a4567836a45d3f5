package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// Stage is one stage kind. Implementations live in stages/<kind> and are
// made with [Define], which ties the kind's typed configuration to its Plan
// and Run; the pipeline sees only this interface.
type Stage interface {
	// Kind names the stage kind: "source", "composefs", "initramfs", ...
	Kind() string
	// Version is the implementation version. It is part of every cache
	// key: bump it whenever the stage's outputs change for the same inputs.
	Version() string
	// Inputs lists the stage kinds whose outputs this stage consumes,
	// within the same variant and arch.
	Inputs() []Dep
	// Used reports whether a target with these facts runs the stage.
	Used(f *Facts) bool

	// plan and run are implemented by [Define] only.
	plan(ctx context.Context, pc *PlanContext) (any, error)
	run(ctx context.Context, rc *RunContext, config any) error
}

// Spec defines a stage kind whose resolved configuration is a C.
type Spec[C any] struct {
	Kind    string
	Version string
	Inputs  []Dep
	// When reports whether a target uses the stage, from the facts
	// decided once for the target ([Facts]); nil means always.
	When func(f *Facts) bool
	// Plan resolves the stage's configuration for one target into plain,
	// JSON-serializable data: tags pinned to digests, keys reduced to
	// fingerprints. Its canonical JSON is part of the cache key and of
	// `plan`'s output; Run receives the same value. Defaults and allowed
	// values are the manifest's business (pc.Config holds them resolved)
	// and per-target decisions are pc.Facts': Plan neither re-applies nor
	// re-checks them. Network look-ups happen here (never in Run); with
	// pc.Offline they must not.
	Plan func(ctx context.Context, pc *PlanContext) (*C, error)
	// Run executes the stage with the configuration Plan returned: read
	// inputs from rc, write outputs through rc. It must honour ctx
	// cancellation and leave nothing behind outside rc.TempDir on failure.
	Run func(ctx context.Context, rc *RunContext, c *C) error
}

// Define makes a [Stage] of a spec. It panics when a field is missing (a
// programmer error, like a duplicate registration).
func Define[C any](s Spec[C]) Stage {
	if s.Kind == "" || s.Version == "" || s.Plan == nil || s.Run == nil {
		panic(fmt.Sprintf("pipeline: incomplete stage spec %q", s.Kind))
	}
	return &defined[C]{s}
}

type defined[C any] struct{ s Spec[C] }

func (d *defined[C]) Kind() string    { return d.s.Kind }
func (d *defined[C]) Version() string { return d.s.Version }
func (d *defined[C]) Inputs() []Dep   { return d.s.Inputs }
func (d *defined[C]) Used(f *Facts) bool {
	return d.s.When == nil || d.s.When(f)
}

func (d *defined[C]) plan(ctx context.Context, pc *PlanContext) (any, error) {
	c, err := d.s.Plan(ctx, pc)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("stage %s: Plan returned no config", d.s.Kind)
	}
	return c, nil
}

func (d *defined[C]) run(ctx context.Context, rc *RunContext, config any) error {
	c, ok := config.(*C)
	if !ok {
		return fmt.Errorf("stage %s: config is a %T, want %T", d.s.Kind, config, c)
	}
	return d.s.Run(ctx, rc, c)
}

// PlanConfig plans stage s for pc and returns its typed configuration;
// tests use it to look at what a stage resolves.
func PlanConfig[C any](ctx context.Context, s Stage, pc *PlanContext) (*C, error) {
	v, err := s.plan(ctx, pc)
	if err != nil {
		return nil, err
	}
	c, ok := v.(*C)
	if !ok {
		return nil, fmt.Errorf("stage %s: config is a %T, want %T", s.Kind(), v, c)
	}
	return c, nil
}

// Keyer is implemented by stage configs that carry machine-local values
// (paths of local images, keys or firmware) which must not enter the cache
// key. CacheKey returns the part of the config that identifies the work
// (for example the image's manifest digest instead of its path); Run still
// sees the whole config.
type Keyer interface {
	CacheKey() any
}

// Dep names an upstream stage kind.
type Dep struct {
	Kind string
	// Optional deps may be absent (skipped by the manifest); required ones
	// make planning fail when absent.
	Optional bool
}

// PlanContext is what a stage's Plan may look at.
type PlanContext struct {
	// Config is the target's resolved manifest configuration (defaults
	// applied, values checked by the manifest's schema).
	Config *manifest.Config
	// Facts are the decisions made once for the target.
	Facts   *Facts
	Compose manifest.Compose // product, release, type (for artifact names)
	Offline bool             // no network: resolve from local information only
	Log     zerolog.Logger
}

// RunContext is a stage run's handle on its config, inputs and outputs.
type RunContext struct {
	node       *Node
	inputs     map[string]artifacts.Output // "kind/name"
	store      *artifacts.Store
	tmp        string
	outputs    map[string]artifacts.Output
	meta       map[string]json.RawMessage
	objsets    []artifacts.Descriptor
	written    int64
	onProgress func(done, total int64)
	secret     func(name string) (string, bool)

	// Log is the stage's logger; everything logged goes to the stage log
	// and the compose log.
	Log zerolog.Logger
}

// Kind returns the stage kind being run.
func (rc *RunContext) Kind() string { return rc.node.Kind }

// Targets returns the variant/arch pairs this stage instance serves.
func (rc *RunContext) Targets() []Target { return rc.node.Targets }

// input returns an upstream artifact by stage kind and output name.
func (rc *RunContext) input(kind, name string) (artifacts.Output, error) {
	o, ok := rc.inputs[kind+"/"+name]
	if !ok {
		return artifacts.Output{}, fmt.Errorf("stage %s: no input %s/%s", rc.node.Kind, kind, name)
	}
	return o, nil
}

// hasInput reports whether an upstream artifact exists (for optional deps
// and optional outputs).
func (rc *RunContext) hasInput(kind, name string) bool {
	_, ok := rc.inputs[kind+"/"+name]
	return ok
}

// inputPath returns the read-only path of an upstream artifact.
func (rc *RunContext) inputPath(kind, name string) (string, error) {
	o, err := rc.input(kind, name)
	if err != nil {
		return "", err
	}
	return rc.store.Path(o.Descriptor), nil
}

// readInput returns an upstream blob's content.
func (rc *RunContext) readInput(kind, name string) ([]byte, error) {
	p, err := rc.inputPath(kind, name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// ObjectsDir returns the composefs object store shared by all stages.
func (rc *RunContext) ObjectsDir() string { return rc.store.ObjectsDir() }

// Store returns the artifact store, for stages that keep their own
// content-addressed caches in it (the source stage caches OCI layer blobs
// by digest). Outputs still go through the stage's [Output] declarations.
func (rc *RunContext) Store() *artifacts.Store { return rc.store }

// TempDir returns a scratch directory on the store's filesystem, removed
// after the run. Files created here can become outputs ([Output.AddFile]).
func (rc *RunContext) TempDir() string { return rc.tmp }

// addBytes stores b as the output called name.
func (rc *RunContext) addBytes(name, mediaType string, b []byte, pub *artifacts.Publish) error {
	d, err := rc.store.PutBytes(mediaType, b)
	if err != nil {
		return fmt.Errorf("stage %s: output %s: %w", rc.node.Kind, name, err)
	}
	return rc.addOutput(name, d, pub)
}

// addJSON stores v as a JSON output.
func (rc *RunContext) addJSON(name string, v any, pub *artifacts.Publish) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("stage %s: output %s: %w", rc.node.Kind, name, err)
	}
	return rc.addBytes(name, artifacts.MediaTypeJSON, append(b, '\n'), pub)
}

// addFile moves a finished file from TempDir into the store as an output.
func (rc *RunContext) addFile(name, path, mediaType string, pub *artifacts.Publish) error {
	d, err := rc.store.AddFile(path, mediaType)
	if err != nil {
		return fmt.Errorf("stage %s: output %s: %w", rc.node.Kind, name, err)
	}
	return rc.addOutput(name, d, pub)
}

// createOutput returns a writer for a streamed output; call its Commit to
// register it as the output called name.
func (rc *RunContext) createOutput(name, mediaType string, pub *artifacts.Publish) (*OutputWriter, error) {
	w, err := rc.store.NewBlobWriter(mediaType)
	if err != nil {
		return nil, fmt.Errorf("stage %s: output %s: %w", rc.node.Kind, name, err)
	}
	return &OutputWriter{BlobWriter: w, rc: rc, name: name, pub: pub}, nil
}

// OutputWriter streams one output into the store.
type OutputWriter struct {
	*artifacts.BlobWriter
	rc   *RunContext
	name string
	pub  *artifacts.Publish
}

// Commit stores the output.
func (w *OutputWriter) Commit() (artifacts.Descriptor, error) {
	d, err := w.BlobWriter.Commit()
	if err != nil {
		return d, fmt.Errorf("stage %s: output %s: %w", w.rc.node.Kind, w.name, err)
	}
	return d, w.rc.addOutput(w.name, d, w.pub)
}

func (rc *RunContext) addOutput(name string, d artifacts.Descriptor, pub *artifacts.Publish) error {
	if _, dup := rc.outputs[name]; dup {
		return fmt.Errorf("stage %s: output %s written twice", rc.node.Kind, name)
	}
	rc.outputs[name] = artifacts.Output{Descriptor: d, Publish: pub}
	rc.written += d.Size
	return nil
}

// AddObjectSet records the composefs objects (hex fs-verity digests) this
// stage's outputs reference, so cache gc keeps them.
func (rc *RunContext) AddObjectSet(hexDigests []string) error {
	var b []byte
	for _, h := range hexDigests {
		b = append(b, h...)
		b = append(b, '\n')
	}
	d, err := rc.store.PutBytes("text/plain", b)
	if err != nil {
		return fmt.Errorf("stage %s: object set: %w", rc.node.Kind, err)
	}
	rc.objsets = append(rc.objsets, d)
	return nil
}

// SetMeta records a fact for compose.json (for example the resolved image
// digest or test results). Meta is informational: downstream stages read
// artifacts, never meta.
func (rc *RunContext) SetMeta(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("stage %s: meta %s: %w", rc.node.Kind, key, err)
	}
	rc.meta[key] = b
	return nil
}

// Secret returns a secret the user provided through the environment (for
// example CFS_SIGNING_PASSWORD). Secrets never enter configs, keys or logs.
func (rc *RunContext) Secret(name string) (string, bool) {
	if rc.secret == nil {
		return "", false
	}
	return rc.secret(name)
}

// Progress reports work done, in bytes or items; total 0 means unknown.
func (rc *RunContext) Progress(done, total int64) {
	if rc.onProgress != nil {
		rc.onProgress(done, total)
	}
}

// newTemp creates the run's scratch directory.
func newTemp(st *artifacts.Store, kind string) (string, error) {
	return st.TempDir(filepath.Base(kind) + "-*")
}
