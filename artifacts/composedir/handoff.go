package composedir

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/handoff"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// Round selects which signatures a hand-off request asks for.
type Round string

// Rounds. An Authenticode signature changes the UKI, and the UKI is inside
// the disk image and listed in SHA256SUMS, so a compose whose keys are all
// offline is signed in two rounds: Authenticode first, then (after a
// rebuild that puts the signed UKI into the disk image) the blob
// signatures. See docs/signing.md.
const (
	// RoundAuto is RoundAuthenticode when a db certificate is given and a
	// UKI of the compose is not signed for it, else RoundBlob.
	RoundAuto Round = "auto"
	// RoundAuthenticode requests Authenticode signatures of the UKIs not
	// yet signed for the db certificate.
	RoundAuthenticode Round = "authenticode"
	// RoundBlob requests detached cosign signatures of every artifact and
	// of SHA256SUMS that lack a valid pair of signatures by the key.
	RoundBlob Round = "blob"
)

// Errors of the hand-off.
var (
	// ErrNothingToSign means every item of the round is already signed.
	ErrNothingToSign = errors.New("composedir: nothing to sign")
	// ErrStale means an artifact differs from its SHA256SUMS entry, as
	// after an Authenticode round that was not followed by a rebuild.
	ErrStale = errors.New("composedir: artifact differs from SHA256SUMS")
	// ErrNotArtifact means a request or signature names a file that is not
	// an artifact of the compose (or not a UKI, for Authenticode).
	ErrNotArtifact = errors.New("composedir: not a signable artifact of the compose")
)

// Request returns the hand-off request of one round (see [Round]) for the
// compose. keys holds the public halves: Cosign for the blob round,
// SecureBoot for the Authenticode round (and for RoundAuto to see whether
// the UKIs are signed). It returns [ErrNothingToSign] when the round has
// no item, and [ErrStale] when an artifact of a blob round differs from
// SHA256SUMS.
func (c *Compose) Request(ctx context.Context, keys handoff.Keys, round Round) (*handoff.Request, Round, error) {
	switch round {
	case RoundAuto:
		round = RoundBlob
		if keys.SecureBoot != nil && len(c.unsignedUKIs(keys.SecureBoot)) > 0 {
			round = RoundAuthenticode
		}
	case RoundAuthenticode, RoundBlob:
	default:
		return nil, round, fmt.Errorf("composedir: unknown round %q (want auto, authenticode or blob)", round)
	}
	var targets []handoff.Target
	switch round {
	case RoundAuthenticode:
		if keys.SecureBoot == nil {
			return nil, round, errors.New("composedir: an Authenticode round needs the db certificate")
		}
		for _, p := range c.unsignedUKIs(keys.SecureBoot) {
			targets = append(targets, handoff.Target{Path: p, Kind: handoff.KindAuthenticode})
		}
	case RoundBlob:
		if keys.Cosign == nil {
			return nil, round, errors.New("composedir: a blob round needs the cosign public key")
		}
		sums, err := c.sums()
		if err != nil {
			return nil, round, err
		}
		for _, p := range append(c.Artifacts(), sumsPath) {
			digest := sums[p]
			if p == sumsPath {
				digest = nil // hashed by VerifyFile
			} else if digest == nil {
				return nil, round, fmt.Errorf("%w: %s is not listed in %s", ErrStale, p, sumsPath)
			}
			res, err := signing.VerifyFile(keys.Cosign, c.file(p), digest)
			if err == nil && res.Sig && res.Bundle {
				continue
			}
			targets = append(targets, handoff.Target{Path: p, Kind: handoff.KindBlob})
		}
	}
	if len(targets) == 0 {
		return nil, round, fmt.Errorf("%w: every %s signature is in place", ErrNothingToSign, round)
	}
	req, err := handoff.NewRequest(ctx, c.Dir, targets, keys)
	if err != nil {
		return nil, round, err
	}
	if err := c.checkFresh(req); err != nil {
		return nil, round, err
	}
	return req, round, nil
}

func (c *Compose) file(rel string) string { return filepath.Join(c.Dir, filepath.FromSlash(rel)) }

// sums reads the compose's SHA256SUMS.
func (c *Compose) sums() (map[string][]byte, error) {
	f, err := os.Open(c.file(sumsPath))
	if err != nil {
		return nil, fmt.Errorf("reading checksums: %w", err)
	}
	defer f.Close()
	list, err := signing.ParseSums(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	m := map[string][]byte{}
	for _, s := range list {
		m[s.Name] = s.SHA256
	}
	return m, nil
}

// unsignedUKIs lists the UKIs without a valid Authenticode signature for
// cert.
func (c *Compose) unsignedUKIs(cert *x509.Certificate) []string {
	var out []string
	for _, p := range c.UKIs() {
		if _, err := secureboot.VerifyPEFile(c.file(p), []*x509.Certificate{cert}); err != nil {
			out = append(out, p)
		}
	}
	return out
}

// checkFresh refuses blob items whose file differs from SHA256SUMS: a
// signature over it would not match what the compose lists (and, for a
// UKI, what the disk image carries).
func (c *Compose) checkFresh(req *handoff.Request) error {
	var sums map[string][]byte
	for _, it := range req.Items {
		if it.Kind != handoff.KindBlob || it.Path == sumsPath {
			continue
		}
		if sums == nil {
			var err error
			if sums, err = c.sums(); err != nil {
				return err
			}
		}
		if want := sums[it.Path]; !bytes.Equal(want, it.SHA256) {
			return fmt.Errorf("%w: %s is %x, %s lists %x: after an Authenticode round, rebuild (cfs-compose build) so the disk images and SHA256SUMS carry the signed UKI, then request blob signatures from the new compose",
				ErrStale, it.Path, []byte(it.SHA256), sumsPath, want)
		}
	}
	return nil
}

// allowed checks that a request or signature names a file the hand-off
// may write for: Authenticode for the compose's UKIs, blobs for its
// artifacts and SHA256SUMS.
func (c *Compose) allowed(p string, kind handoff.Kind) error {
	var set []string
	switch kind {
	case handoff.KindAuthenticode:
		set = c.UKIs()
	case handoff.KindBlob:
		set = append(c.Artifacts(), sumsPath)
	default:
		return fmt.Errorf("%w: %s: kind %q", ErrNotArtifact, p, kind)
	}
	for _, s := range set {
		if s == p {
			return nil
		}
	}
	return fmt.Errorf("%w: %s (%s)", ErrNotArtifact, p, kind)
}

// RequestFor rebuilds, from the compose as it is now, the request that
// sigs answers: one item per (path, kind) pair sigs lists. It equals the
// request the signatures were made for as long as the files did not
// change (requests are deterministic); if they did, [Compose.Apply] finds
// the signatures do not verify. Every pair must name a UKI (Authenticode)
// or an artifact or SHA256SUMS (blob) of the compose.
func (c *Compose) RequestFor(ctx context.Context, sigs *handoff.Signatures, keys handoff.Keys) (*handoff.Request, error) {
	targets := make([]handoff.Target, 0, len(sigs.Signatures))
	for _, s := range sigs.Signatures {
		if err := c.allowed(s.Path, s.Kind); err != nil {
			return nil, err
		}
		targets = append(targets, handoff.Target{Path: s.Path, Kind: s.Kind})
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: the signatures document lists no signature", handoff.ErrSchema)
	}
	return handoff.NewRequest(ctx, c.Dir, targets, keys)
}

// Apply inserts externally made signatures into the compose with
// [handoff.Apply]: everything is verified before anything is written, and
// only the signed files change (FILE.sig and FILE.sigstore.json are
// written for blobs, the UKI itself is replaced for Authenticode). req is
// the request the signatures answer (read from the hand-off file, or
// [Compose.RequestFor]). Every item must be a UKI (Authenticode) or an
// artifact or SHA256SUMS (blob) of the compose ([ErrNotArtifact]), and
// blob items must match SHA256SUMS ([ErrStale]).
func (c *Compose) Apply(ctx context.Context, req *handoff.Request, sigs *handoff.Signatures, keys handoff.Keys) (*handoff.Result, error) {
	for _, it := range req.Items {
		if err := c.allowed(it.Path, it.Kind); err != nil {
			return nil, err
		}
	}
	if err := c.checkFresh(req); err != nil {
		return nil, err
	}
	return handoff.Apply(ctx, c.Dir, req, sigs, keys)
}

// Adopted reports what [Compose.AdoptSignedUKIs] did for one UKI.
type Adopted struct {
	Path string // the UKI, relative to the compose
	Key  string // the uki stage's cache key
	// Err is why the cache was not updated (nil: updated).
	Err error
}

// AdoptSignedUKIs makes UKIs that [Compose.Apply] Authenticode-signed the
// output of their uki stage in the cache: the signed file is stored as a
// blob and the stage's record (same cache key) is rewritten to point at
// it, with meta "authenticode" saying who signed it. The next build with
// the same manifests then reuses the signed UKI and rebuilds everything
// that contains it (the disk images, SHA256SUMS). unsigned maps each path
// to the SHA-256 the UKI had before signing; a record whose UKI output is
// not that digest (the cache moved on) is left alone and reported.
func (c *Compose) AdoptSignedUKIs(st *artifacts.Store, unsigned map[string][]byte, cert *x509.Certificate) ([]Adopted, error) {
	paths := make([]string, 0, len(unsigned))
	for p := range unsigned {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	keyOf := map[string]string{}
	for _, t := range c.Targets {
		if t.UKI != "" && t.UKIKey != "" {
			keyOf[t.UKI] = t.UKIKey
		}
	}
	var out []Adopted
	for _, p := range paths {
		a := Adopted{Path: p, Key: keyOf[p]}
		if a.Key == "" {
			a.Err = fmt.Errorf("compose.json names no uki stage cache key for %s", p)
			out = append(out, a)
			continue
		}
		rec, err := st.GetRecord(a.Key)
		if err != nil {
			a.Err = err
			out = append(out, a)
			continue
		}
		name := c.Outputs.UKI.Name
		o, ok := rec.Outputs[name]
		if !ok || o.Digest != artifacts.NewDigest(unsigned[p]) {
			a.Err = fmt.Errorf("cached uki stage %s no longer holds the UKI that was signed", a.Key[:12])
			out = append(out, a)
			continue
		}
		d, err := storeFile(st, c.file(p), o.MediaType)
		if err != nil {
			return out, err
		}
		meta, err := json.Marshal(map[string]string{
			"signed_by":          "offline hand-off (cfs-compose sign --apply)",
			"subject":            cert.Subject.String(),
			"sha256_fingerprint": secureboot.Fingerprint(cert),
			"unsigned":           o.Digest.String(),
		})
		if err != nil {
			return out, err
		}
		rec.Outputs[name] = artifacts.Output{Descriptor: d, Publish: o.Publish}
		if rec.Meta == nil {
			rec.Meta = map[string]json.RawMessage{}
		}
		rec.Meta["authenticode"] = meta
		if err := st.PutRecord(rec); err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

// storeFile copies a file into the store as a blob.
func storeFile(st *artifacts.Store, path, mediaType string) (artifacts.Descriptor, error) {
	f, err := os.Open(path)
	if err != nil {
		return artifacts.Descriptor{}, fmt.Errorf("storing signed UKI: %w", err)
	}
	defer f.Close()
	w, err := st.NewBlobWriter(mediaType)
	if err != nil {
		return artifacts.Descriptor{}, err
	}
	if _, err := io.Copy(w, f); err != nil {
		w.Abort()
		return artifacts.Descriptor{}, fmt.Errorf("storing signed UKI %s: %w", path, err)
	}
	return w.Commit()
}

// UnsignedDigests returns, for the Authenticode items of req, the SHA-256
// each UKI had when the request was made (for [Compose.AdoptSignedUKIs]).
func UnsignedDigests(req *handoff.Request) map[string][]byte {
	m := map[string][]byte{}
	for _, it := range req.Items {
		if it.Kind == handoff.KindAuthenticode {
			m[it.Path] = it.SHA256
		}
	}
	return m
}
