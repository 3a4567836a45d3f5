package sign

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// run decrypts the key and signs every present input; see the package
// documentation.
func run(ctx context.Context, rc *pipeline.RunContext, c *Config) error {
	pass, ok := rc.Secret(PasswordSecret)
	if !ok {
		return fmt.Errorf("sign: no passphrase for %s: set %s", c.Key, PasswordSecret)
	}
	key, err := signing.LoadCosignKey(c.Key, []byte(pass))
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if key.Hint() != c.Hint {
		return fmt.Errorf("sign: %s (key %s) is not the key of %s (key %s)", c.Key, key.Hint(), c.Pub, c.Hint)
	}
	var signed []string
	for _, in := range contract.Signed {
		if !in.Present(rc) {
			continue
		}
		o, err := in.Artifact(rc)
		if err != nil {
			return err
		}
		if err := signInput(ctx, rc, key, in, o); err != nil {
			return err
		}
		signed = append(signed, in.String())
		rc.Log.Info().Str("input", in.String()).Str("digest", o.Digest.Short()).Msg("signed")
	}
	if err := rc.SetMeta("key", c.Hint); err != nil {
		return err
	}
	return rc.SetMeta("signed", signed)
}

// signInput writes the two signature outputs of one input.
func signInput(ctx context.Context, rc *pipeline.RunContext, s signing.Signer, in pipeline.Output, o artifacts.Output) error {
	if o.Tree {
		return fmt.Errorf("sign: input %s/%s is a directory tree, not a file", in.Kind, in.Name)
	}
	if err := o.Digest.Validate(); err != nil {
		return fmt.Errorf("sign: input %s/%s: %w", in.Kind, in.Name, err)
	}
	digest, err := hex.DecodeString(o.Digest.Hex())
	if err != nil {
		return fmt.Errorf("sign: input %s/%s: %w", in.Kind, in.Name, err)
	}
	sig, err := s.Sign(ctx, digest)
	if err != nil {
		return fmt.Errorf("sign: signing %s/%s: %w", in.Kind, in.Name, err)
	}
	bundle, err := signing.MarshalBundle(s.Public(), digest, sig)
	if err != nil {
		return fmt.Errorf("sign: %s/%s: %w", in.Kind, in.Name, err)
	}
	sigOut, bundleOut := contract.Signatures(in)
	if err := sigOut.Put(rc, signing.EncodeSig(sig), next(o.Publish, signing.SigSuffix)); err != nil {
		return err
	}
	return bundleOut.Put(rc, bundle, next(o.Publish, signing.BundleSuffix))
}

// next publishes a signature next to the signed artifact: same directory,
// the artifact's file name plus suffix, and no productmd image type (so
// signatures stay out of images.json). An unpublished artifact gets an
// unpublished signature.
func next(p *artifacts.Publish, suffix string) *artifacts.Publish {
	if p == nil {
		return nil
	}
	return &artifacts.Publish{Filename: p.Filename + suffix, Dir: p.Dir}
}
