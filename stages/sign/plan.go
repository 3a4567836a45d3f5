package sign

import (
	"context"
	"fmt"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing"
)

// Kind is the stage kind.
const Kind = "sign"

// Version is the stage implementation version (part of every cache key).
const Version = "1"

// PasswordSecret names the secret holding the cosign key passphrase.
const PasswordSecret = "CFS_SIGNING_PASSWORD"

// Input is one upstream artifact the stage signs when it is present.
type Input struct {
	Kind string // upstream stage kind
	Name string // its output name; the signatures are Name+".sig" and Name+".sigstore.json"
}

// Inputs lists the artifacts the stage signs, in signing order. Every one
// is optional: a variant without composefs has no composefs image, a disk
// stage asked only for raw has no qcow2.
var Inputs = []Input{
	{"composefs", "image"},
	{"uki", "uki"},
	{"disk", "raw"},
	{"disk", "qcow2"},
}

// Stage is the sign stage.
type Stage struct{}

// New returns the sign stage.
func New() *Stage { return &Stage{} }

// Kind implements pipeline.Stage.
func (s *Stage) Kind() string { return Kind }

// Version implements pipeline.Stage.
func (s *Stage) Version() string { return Version }

// Inputs implements pipeline.Stage: composefs, uki and disk, all optional.
func (s *Stage) Inputs() []pipeline.Dep {
	return []pipeline.Dep{{Kind: "composefs", Optional: true}, {Kind: "uki", Optional: true}, {Kind: "disk", Optional: true}}
}

// Plan implements pipeline.Stage; see [Resolve].
func (s *Stage) Plan(_ context.Context, pc *pipeline.PlanContext) (any, error) {
	return Resolve(pc.Config)
}

// Resolve returns the stage config of a manifest config, or
// [pipeline.ErrSkip] when it sets no signing key. It reads the public key
// (signing.pub) to pin the key hint; the private key is only opened by Run
// (and by the build's key pre-flight), since it needs the passphrase.
func Resolve(mc *manifest.Config) (*Config, error) {
	if mc.Signing.Key == "" {
		return nil, pipeline.ErrSkip
	}
	pub := mc.Signing.Pub
	if pub == "" {
		return nil, fmt.Errorf("signing.key %s is set but signing.pub is empty", mc.Signing.Key)
	}
	pk, err := signing.LoadPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("signing.pub: %w", err)
	}
	hint, err := signing.KeyHint(pk)
	if err != nil {
		return nil, err
	}
	c := &Config{Hint: hint, Key: mc.Signing.Key, Pub: pub}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}
