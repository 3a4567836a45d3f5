// Package composefs is the composefs stage: it turns the source stage's
// tree (a dumpfile whose file contents are in the shared object store) into
// the EROFS composefs image, computes the composefs digest (the image's
// fs-verity digest, the value that goes on the kernel command line) and,
// with composefs { signed = true }, signs that digest for the builtin
// initramfs.
//
// It is skipped when composefs { enabled = false }: the contingency line.
package composefs

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"

	"github.com/cfs-compose/cfs-compose/artifacts"
	cfs "github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/imageinput"
)

// Version is the implementation version (part of every cache key).
const Version = "1"

// PasswordEnv names the secret holding the cosign key passphrase.
const PasswordEnv = "CFS_SIGNING_PASSWORD"

// Config is the resolved configuration of one composefs stage instance.
type Config struct {
	// MinVersion is the minimum image format version (mkcomposefs
	// --min-version); the maximum is always 1.
	MinVersion int `json:"min_version"`
	// Filename is the published name of the image.
	Filename string `json:"filename"`
	// Signed: sign the digest with the cosign key for the initramfs.
	Signed bool `json:"signed"`
	// KeyPath is the cosign private key (host path, not in the cache key).
	KeyPath string `json:"key_path,omitempty"`
	// KeyHint identifies the signing key (base64 sha256 of its public key).
	KeyHint string `json:"key_hint,omitempty"`
}

// CacheKey implements pipeline.Keyer: the key path stays out, the key's
// hint identifies it.
func (c *Config) CacheKey() any {
	k := *c
	k.KeyPath = ""
	return k
}

// New returns the composefs stage. A target runs it exactly when
// composefs is on (the contingency switch) with the composefs deployment
// backend; the ostree backend's composefs image is ostree's own
// (.ostree.cfs, written by the ostree stage).
func New() pipeline.Stage {
	return pipeline.Define(pipeline.Spec[Config]{
		Kind: contract.Composefs, Version: Version,
		Inputs: []pipeline.Dep{{Kind: contract.Source}},
		When:   func(f *pipeline.Facts) bool { return f.Composefs && !f.Ostree() },
		Plan:   Plan, Run: run,
	})
}

// Plan resolves the stage's configuration: the format version, the
// published file name and, for a signed digest, the key's hint.
func Plan(_ context.Context, pc *pipeline.PlanContext) (*Config, error) {
	mc := pc.Config
	c := &Config{
		MinVersion: mc.Composefs.FormatVersion,
		Filename:   artifacts.Filename(pc.Compose.Product, mc.Name, pc.Compose.Release, mc.Arch, "cfs"),
		Signed:     pc.Facts.ComposefsSigned,
	}
	if c.Signed {
		pk, err := signing.LoadPublicKey(pc.Facts.SigningPub)
		if err != nil {
			return nil, fmt.Errorf("composefs.signed: %w", err)
		}
		hint, err := signing.KeyHint(pk)
		if err != nil {
			return nil, fmt.Errorf("composefs.signed: %s: %w", pc.Facts.SigningPub, err)
		}
		c.KeyPath, c.KeyHint = pc.Facts.SigningKey, hint
	}
	return c, nil
}

// run writes the image, its digest and, when signed, the digest's
// signature.
func run(ctx context.Context, rc *pipeline.RunContext, c *Config) error {
	tree, err := imageinput.Tree(rc)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var img bytes.Buffer
	if err := cfs.WriteImage(&img, tree, &cfs.WriteOptions{MinVersion: c.MinVersion, MaxVersion: cfs.MaxVersion}); err != nil {
		return fmt.Errorf("writing the composefs image: %w", err)
	}
	digest := fsverity.Sum(img.Bytes())
	hexd := fsverity.Hex(digest)
	rd, err := cfs.NewReader(bytes.NewReader(img.Bytes()), int64(img.Len()))
	if err != nil {
		return fmt.Errorf("re-reading the composefs image: %w", err)
	}
	var objects []string
	for _, payload := range tree.Objects() {
		d, err := objstore.ParseName(payload)
		if err != nil {
			return fmt.Errorf("source tree: file content at %q is not an object of the store: %w", payload, err)
		}
		objects = append(objects, fsverity.Hex(d))
	}
	if err := contract.ComposefsImage.Put(rc, img.Bytes(), &artifacts.Publish{Filename: c.Filename}); err != nil {
		return err
	}
	if err := contract.ComposefsDigest.Set(rc, &artifacts.ComposefsDigest{Digest: hexd, Version: rd.Version()}, nil); err != nil {
		return err
	}
	if err := rc.AddObjectSet(objects); err != nil {
		return err
	}
	if c.Signed {
		pass, _ := rc.Secret(PasswordEnv)
		key, err := signing.LoadCosignKey(c.KeyPath, []byte(pass))
		if err != nil {
			return fmt.Errorf("signing the composefs digest: %w", err)
		}
		sig, err := key.Sign(ctx, sha256Of([]byte(hexd)))
		if err != nil {
			return fmt.Errorf("signing the composefs digest: %w", err)
		}
		if err := contract.ComposefsDigestSig.Put(rc, []byte(base64.StdEncoding.EncodeToString(sig)), nil); err != nil {
			return err
		}
	}
	rc.Log.Info().Str("digest", hexd).Int("version", rd.Version()).Int("objects", len(objects)).Int("bytes", img.Len()).Msg("composefs image written")
	for k, v := range map[string]any{"composefs_digest": hexd, "format_version": rd.Version(), "objects": len(objects), "signed": c.Signed} {
		if err := rc.SetMeta(k, v); err != nil {
			return err
		}
	}
	return nil
}
