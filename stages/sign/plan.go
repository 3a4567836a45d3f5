package sign

import (
	"context"
	"fmt"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// Version is the stage implementation version (part of every cache key).
const Version = "1"

// PasswordSecret names the secret holding the cosign key passphrase.
const PasswordSecret = "CFS_SIGNING_PASSWORD"

// New returns the sign stage. A target runs it when it sets a signing
// key; it signs every artifact of [contract.Signed] that is present.
func New() pipeline.Stage {
	return pipeline.Define(pipeline.Spec[Config]{
		Kind: contract.Sign, Version: Version,
		Inputs: []pipeline.Dep{{Kind: contract.Composefs, Optional: true}, {Kind: contract.UKI, Optional: true}, {Kind: contract.Disk, Optional: true}},
		When:   func(f *pipeline.Facts) bool { return f.Sign },
		Plan:   Plan, Run: run,
	})
}

// Plan reads the public key (signing.pub) to pin the key hint; the
// private key is only opened by Run (and by the build's key pre-flight),
// since it needs the passphrase.
func Plan(_ context.Context, pc *pipeline.PlanContext) (*Config, error) {
	f := pc.Facts
	pk, err := signing.LoadPublicKey(f.SigningPub)
	if err != nil {
		return nil, fmt.Errorf("signing.pub: %w", err)
	}
	hint, err := signing.KeyHint(pk)
	if err != nil {
		return nil, err
	}
	return &Config{Hint: hint, Key: f.SigningKey, Pub: f.SigningPub}, nil
}
