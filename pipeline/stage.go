package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/rs/zerolog"
)

// Stage is one stage kind. Implementations live in stages/<kind>; the
// pipeline sees only this interface.
type Stage interface {
	// Kind names the stage kind: "source", "composefs", "initramfs", ...
	Kind() string
	// Version is the implementation version. It is part of every cache
	// key: bump it whenever the stage's outputs change for the same inputs.
	Version() string
	// Inputs lists the stage kinds whose outputs this stage consumes,
	// within the same variant and arch.
	Inputs() []Dep
	// Plan resolves the stage's configuration for one variant and arch
	// into plain, JSON-serializable data: defaults made explicit, tags
	// pinned to digests, keys reduced to fingerprints. Its canonical JSON
	// is part of the cache key, and Run sees nothing else of the manifest.
	// Network look-ups happen here (never in Run); with pc.Offline they
	// must not. Return [ErrSkip] when the manifest does not use the stage.
	Plan(ctx context.Context, pc *PlanContext) (any, error)
	// Run executes the stage: read the config and inputs from rc, write
	// outputs through rc. It must honour ctx cancellation and leave
	// nothing behind outside rc.TempDir on failure.
	Run(ctx context.Context, rc *RunContext) error
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

// ErrSkip is returned by [Stage.Plan] when the stage is not used.
var ErrSkip = errors.New("pipeline: stage not used")

// PlanContext is what [Stage.Plan] may look at.
type PlanContext struct {
	Config  *manifest.Config
	Compose manifest.Compose // product, release, type (for artifact names)
	Offline bool             // no network: resolve from local information only
	Log     zerolog.Logger
}

// RunContext is a stage run's handle on its config, inputs and outputs.
type RunContext struct {
	node       *Node
	config     json.RawMessage
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

// DecodeConfig decodes the stage's resolved config (what Plan returned)
// into v, rejecting unknown fields.
func (rc *RunContext) DecodeConfig(v any) error {
	if err := decodeStrict(rc.config, v); err != nil {
		return fmt.Errorf("stage %s: decoding config: %w", rc.node.Kind, err)
	}
	return nil
}

// Input returns an upstream artifact by stage kind and output name.
func (rc *RunContext) Input(kind, name string) (artifacts.Output, error) {
	o, ok := rc.inputs[kind+"/"+name]
	if !ok {
		return artifacts.Output{}, fmt.Errorf("stage %s: no input %s/%s", rc.node.Kind, kind, name)
	}
	return o, nil
}

// HasInput reports whether an upstream artifact exists (for optional deps
// and optional outputs).
func (rc *RunContext) HasInput(kind, name string) bool {
	_, ok := rc.inputs[kind+"/"+name]
	return ok
}

// InputPath returns the read-only path of an upstream artifact.
func (rc *RunContext) InputPath(kind, name string) (string, error) {
	o, err := rc.Input(kind, name)
	if err != nil {
		return "", err
	}
	return rc.store.Path(o.Descriptor), nil
}

// ReadInput returns an upstream blob's content.
func (rc *RunContext) ReadInput(kind, name string) ([]byte, error) {
	p, err := rc.InputPath(kind, name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// ObjectsDir returns the composefs object store shared by all stages.
func (rc *RunContext) ObjectsDir() string { return rc.store.ObjectsDir() }

// Store returns the artifact store, for stages that keep their own
// content-addressed caches in it (the source stage caches OCI layer blobs
// by digest). Outputs still go through AddBytes, AddFile and CreateOutput.
func (rc *RunContext) Store() *artifacts.Store { return rc.store }

// TempDir returns a scratch directory on the store's filesystem, removed
// after the run. Files created here can become outputs with AddFile.
func (rc *RunContext) TempDir() string { return rc.tmp }

// AddBytes stores b as the output called name.
func (rc *RunContext) AddBytes(name, mediaType string, b []byte, pub *artifacts.Publish) error {
	d, err := rc.store.PutBytes(mediaType, b)
	if err != nil {
		return fmt.Errorf("stage %s: output %s: %w", rc.node.Kind, name, err)
	}
	return rc.addOutput(name, d, pub)
}

// AddJSON stores v as a JSON output.
func (rc *RunContext) AddJSON(name string, v any, pub *artifacts.Publish) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("stage %s: output %s: %w", rc.node.Kind, name, err)
	}
	return rc.AddBytes(name, artifacts.MediaTypeJSON, append(b, '\n'), pub)
}

// AddFile moves a finished file from TempDir into the store as an output.
func (rc *RunContext) AddFile(name, path, mediaType string, pub *artifacts.Publish) error {
	d, err := rc.store.AddFile(path, mediaType)
	if err != nil {
		return fmt.Errorf("stage %s: output %s: %w", rc.node.Kind, name, err)
	}
	return rc.addOutput(name, d, pub)
}

// CreateOutput returns a writer for a streamed output; call its Commit to
// register it as the output called name.
func (rc *RunContext) CreateOutput(name, mediaType string, pub *artifacts.Publish) (*OutputWriter, error) {
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
