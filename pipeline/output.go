package pipeline

import (
	"encoding/json"
	"fmt"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// Output declares one output of a stage kind: the kind that writes it, its
// name (the "name" of "kind/name" in records and compose.json) and its
// media type. The producer and every consumer use the same declaration
// (package stages/contract holds them all), so no other code spells kind or
// output names; the producing stage writes through it, the consuming
// stages read through it.
type Output struct {
	Kind      string
	Name      string
	MediaType string
}

// String returns "kind/name".
func (o Output) String() string { return o.Kind + "/" + o.Name }

// Present reports whether the running stage has this output as an input
// (an optional upstream stage may be absent, and an optional output may
// not have been written).
func (o Output) Present(rc *RunContext) bool { return rc.hasInput(o.Kind, o.Name) }

// Artifact returns the input's descriptor and publication.
func (o Output) Artifact(rc *RunContext) (artifacts.Output, error) {
	return rc.input(o.Kind, o.Name)
}

// Path returns the read-only path of the input in the store.
func (o Output) Path(rc *RunContext) (string, error) { return rc.inputPath(o.Kind, o.Name) }

// Read returns the input's content.
func (o Output) Read(rc *RunContext) ([]byte, error) { return rc.readInput(o.Kind, o.Name) }

// producer checks that the running stage is the one declaring o.
func (o Output) producer(rc *RunContext) error {
	if rc.node.Kind != o.Kind {
		return fmt.Errorf("stage %s cannot write %s (an output of stage %s)", rc.node.Kind, o, o.Kind)
	}
	return nil
}

// Put stores b as this output of the running stage.
func (o Output) Put(rc *RunContext, b []byte, pub *artifacts.Publish) error {
	if err := o.producer(rc); err != nil {
		return err
	}
	return rc.addBytes(o.Name, o.MediaType, b, pub)
}

// AddFile moves a finished file from rc.TempDir into the store as this
// output of the running stage.
func (o Output) AddFile(rc *RunContext, path string, pub *artifacts.Publish) error {
	if err := o.producer(rc); err != nil {
		return err
	}
	return rc.addFile(o.Name, path, o.MediaType, pub)
}

// AddTree moves a finished directory tree from rc.TempDir into the store
// as this output of the running stage (artifacts.Store.AddTree: the tree
// is named by the digest of its listing, owners, extended attributes and
// hard links included). Consumers read it at [Output.Path] and must not
// modify it.
func (o Output) AddTree(rc *RunContext, dir string, pub *artifacts.Publish) error {
	if err := o.producer(rc); err != nil {
		return err
	}
	d, err := rc.store.AddTree(dir, o.MediaType)
	if err != nil {
		return fmt.Errorf("stage %s: output %s: %w", rc.node.Kind, o.Name, err)
	}
	return rc.addOutput(o.Name, d, pub)
}

// Create returns a writer for streaming this output; its Commit registers
// it.
func (o Output) Create(rc *RunContext, pub *artifacts.Publish) (*OutputWriter, error) {
	if err := o.producer(rc); err != nil {
		return nil, err
	}
	return rc.createOutput(o.Name, o.MediaType, pub)
}

// Validator is implemented by output schemas that check their own values.
type Validator interface {
	Validate() error
}

// JSON declares a JSON output holding a T. When *T implements [Validator],
// the value is validated when written and when read, so a consumer never
// sees a value the schema does not allow.
type JSON[T any] struct{ Output }

// NewJSON declares a JSON output.
func NewJSON[T any](kind, name string) JSON[T] {
	return JSON[T]{Output{Kind: kind, Name: name, MediaType: artifacts.MediaTypeJSON}}
}

// Get decodes and validates the input.
func (j JSON[T]) Get(rc *RunContext) (*T, error) {
	b, err := j.Read(rc)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", j.Output, err)
	}
	return j.Decode(b)
}

// Decode decodes and validates one value of the schema (for readers of
// published files, such as the compose verifier).
func (j JSON[T]) Decode(b []byte) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", j.Output, err)
	}
	if err := validate(v); err != nil {
		return nil, fmt.Errorf("%s: %w", j.Output, err)
	}
	return v, nil
}

// Set validates v and stores it as this output of the running stage.
func (j JSON[T]) Set(rc *RunContext, v *T, pub *artifacts.Publish) error {
	if err := validate(v); err != nil {
		return fmt.Errorf("stage %s: output %s: %w", rc.node.Kind, j.Name, err)
	}
	if err := j.producer(rc); err != nil {
		return err
	}
	return rc.addJSON(j.Name, v, pub)
}

func validate(v any) error {
	if vv, ok := v.(Validator); ok {
		return vv.Validate()
	}
	return nil
}
