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
	"errors"
	"fmt"
	"path/filepath"

	"github.com/cfs-compose/cfs-compose/artifacts"
	cfs "github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/stages/internal/imageinput"
)

// Kind is the stage kind.
const Kind = "composefs"

// Version is the implementation version (part of every cache key).
const Version = "1"

// Output names (see docs/stages.md).
const (
	OutImage     = "image"
	OutDigest    = "digest"
	OutDigestSig = "digest.sig"
)

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

// Stage implements pipeline.Stage.
type Stage struct{}

// New returns the composefs stage.
func New() *Stage { return &Stage{} }

// Kind implements pipeline.Stage.
func (*Stage) Kind() string { return Kind }

// Version implements pipeline.Stage.
func (*Stage) Version() string { return Version }

// Inputs implements pipeline.Stage.
func (*Stage) Inputs() []pipeline.Dep { return []pipeline.Dep{{Kind: "source"}} }

// Plan implements pipeline.Stage.
func (*Stage) Plan(_ context.Context, pc *pipeline.PlanContext) (any, error) {
	mc := pc.Config
	if !mc.Composefs.Enabled {
		return nil, pipeline.ErrSkip
	}
	c := &Config{
		MinVersion: mc.Composefs.FormatVersion,
		Filename:   fmt.Sprintf("%s-%s-%s.%s.cfs", pc.Compose.Product, mc.Name, pc.Compose.Release, mc.Arch),
		Signed:     mc.Composefs.Signed,
	}
	if c.MinVersion < 0 || c.MinVersion > cfs.MaxVersion {
		return nil, fmt.Errorf("composefs.format_version = %d: want 0 or 1", c.MinVersion)
	}
	if c.Signed {
		if mc.Signing.Key == "" {
			return nil, errors.New("composefs.signed needs signing.key")
		}
		pub := mc.Signing.Pub
		if pub == "" {
			pub = pubPath(mc.Signing.Key)
		}
		pk, err := signing.LoadPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("composefs.signed: %w", err)
		}
		hint, err := signing.KeyHint(pk)
		if err != nil {
			return nil, fmt.Errorf("composefs.signed: %s: %w", pub, err)
		}
		c.KeyPath, c.KeyHint = mc.Signing.Key, hint
	}
	return c, nil
}

// pubPath is the conventional public key next to a cosign.key.
func pubPath(key string) string {
	ext := filepath.Ext(key)
	return key[:len(key)-len(ext)] + ".pub"
}

// Digest is the "digest" output.
type Digest struct {
	Digest  string `json:"digest"`  // 64 hex: fs-verity SHA-256 of the image
	Version int    `json:"version"` // image format version written
}

// Run implements pipeline.Stage.
func (*Stage) Run(ctx context.Context, rc *pipeline.RunContext) error {
	var c Config
	if err := rc.DecodeConfig(&c); err != nil {
		return err
	}
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
	if err := rc.AddBytes(OutImage, artifacts.MediaTypeComposefs, img.Bytes(), &artifacts.Publish{Filename: c.Filename}); err != nil {
		return err
	}
	if err := rc.AddJSON(OutDigest, Digest{Digest: hexd, Version: rd.Version()}, nil); err != nil {
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
		if err := rc.AddBytes(OutDigestSig, "text/plain", []byte(base64.StdEncoding.EncodeToString(sig)), nil); err != nil {
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
