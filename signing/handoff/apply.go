package handoff

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// Signatures is the document the external signer returns.
type Signatures struct {
	Schema     string      `json:"schema"` // SignaturesSchema
	Signatures []Signature `json:"signatures"`
}

// Signature is one signature made for a request item, matched to it by
// Kind and Path.
type Signature struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path"`
	// Digest optionally repeats the item's digest; when present it must
	// match, which catches signatures made for a different request.
	Digest Hex `json:"digest,omitempty"`
	// Signature is the raw signature, base64 in JSON: ASN.1 DER or raw
	// r||s (64 bytes) ECDSA for blobs, RSA PKCS#1 v1.5 for authenticode.
	Signature []byte `json:"signature"`
}

// Marshal returns the indented JSON form of s.
func (s *Signatures) Marshal() ([]byte, error) {
	b, err := marshalIndent(s)
	if err != nil {
		return nil, fmt.Errorf("handoff: encoding signatures: %w", err)
	}
	return b, nil
}

// ReadSignatures decodes and validates a signatures document. Unknown
// fields are errors.
func ReadSignatures(r io.Reader) (*Signatures, error) {
	var s Signatures
	if err := decodeStrict(r, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSchema, err)
	}
	if s.Schema != SignaturesSchema {
		return nil, fmt.Errorf("%w: schema %q, want %q", ErrSchema, s.Schema, SignaturesSchema)
	}
	seen := map[string]bool{}
	for i, sig := range s.Signatures {
		at := fmt.Sprintf("signatures[%d] (%s)", i, sig.Path)
		if err := checkPath(sig.Path); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		if sig.Kind != KindBlob && sig.Kind != KindAuthenticode {
			return nil, fmt.Errorf("%w: %s: unknown kind %q", ErrSchema, at, sig.Kind)
		}
		if seen[sig.Path] {
			return nil, fmt.Errorf("%w: %s: path listed twice", ErrSchema, at)
		}
		seen[sig.Path] = true
		if len(sig.Signature) == 0 || len(sig.Signature) > 1024 {
			return nil, fmt.Errorf("%w: %s: signature must be 1 to 1024 bytes", ErrSchema, at)
		}
	}
	return &s, nil
}

// Result lists what [Apply] wrote, as paths below root.
type Result struct {
	Written []string
}

// staged is an output that is complete and verified but not yet in place.
type staged struct {
	commit func() error
	abort  func()
	paths  []string
}

// Apply inserts the signatures of sigs into the files of req below root,
// using keys (the public key and certificate the signatures must verify
// with; they must be the keys the request names). It works in two phases:
// first every file is re-hashed and compared with the request
// ([ErrChanged]), every signature is checked ([ErrBadSignature]), every
// requested item must have a signature and no signature may be unasked
// ([ErrMissing], [ErrSchema]), and all outputs are written to temporary
// files and verified; only when all of that succeeded are the outputs
// renamed into place (FILE.sig and FILE.sigstore.json for blobs, the
// signed PE image over the original for authenticode items). On error
// nothing has been changed.
func Apply(ctx context.Context, root string, req *Request, sigs *Signatures, keys Keys) (*Result, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	if err := checkKeys(req, keys); err != nil {
		return nil, err
	}
	byPath := map[string]Signature{}
	for _, s := range sigs.Signatures {
		byPath[s.Path] = s
	}
	requested := map[string]bool{}
	for _, it := range req.Items {
		requested[it.Path] = true
		s, ok := byPath[it.Path]
		if !ok {
			return nil, fmt.Errorf("%w: %s (%s)", ErrMissing, it.Path, it.Kind)
		}
		if s.Kind != it.Kind {
			return nil, fmt.Errorf("%w: %s: signature kind %q, request wants %q", ErrSchema, it.Path, s.Kind, it.Kind)
		}
		if s.Digest != nil && !bytes.Equal(s.Digest, it.Digest) {
			return nil, fmt.Errorf("%w: %s: signature was made for digest %x, request has %x", ErrBadSignature, it.Path, []byte(s.Digest), []byte(it.Digest))
		}
	}
	for _, s := range sigs.Signatures {
		if !requested[s.Path] {
			return nil, fmt.Errorf("%w: signature for %s, which the request does not list", ErrSchema, s.Path)
		}
	}

	var outs []staged
	defer func() {
		for _, o := range outs {
			o.abort()
		}
	}()
	for _, it := range req.Items {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		full := filepath.Join(root, filepath.FromSlash(it.Path))
		size, sum, err := hashFile(full)
		if err != nil {
			return nil, err
		}
		if size != it.Size || !bytes.Equal(sum, it.SHA256) {
			return nil, fmt.Errorf("%w: %s", ErrChanged, full)
		}
		var o staged
		switch it.Kind {
		case KindBlob:
			o, err = stageBlob(full, it, byPath[it.Path].Signature, keys.Cosign)
		case KindAuthenticode:
			o, err = stageAuthenticode(ctx, full, it, byPath[it.Path].Signature, keys.SecureBoot)
		}
		if err != nil {
			return nil, err
		}
		outs = append(outs, o)
	}
	res := &Result{}
	for len(outs) > 0 {
		o := outs[0]
		outs = outs[1:]
		if err := o.commit(); err != nil {
			return res, err
		}
		for _, p := range o.paths {
			rel, _ := filepath.Rel(root, p)
			res.Written = append(res.Written, filepath.ToSlash(rel))
		}
	}
	return res, nil
}

// checkKeys makes sure the caller's keys are the ones the request names.
func checkKeys(req *Request, keys Keys) error {
	if k := req.Keys.Cosign; k != nil {
		if keys.Cosign == nil {
			return fmt.Errorf("handoff: the request has blob items: a cosign public key is needed")
		}
		if hint, _ := signing.KeyHint(keys.Cosign); hint != k.Hint {
			return fmt.Errorf("%w: cosign key %s, request names %s", ErrKeyMismatch, hint, k.Hint)
		}
	}
	if k := req.Keys.SecureBoot; k != nil {
		if keys.SecureBoot == nil {
			return fmt.Errorf("handoff: the request has authenticode items: the db certificate is needed")
		}
		if fp := secureboot.Fingerprint(keys.SecureBoot); fp != hex.EncodeToString(k.Fingerprint) {
			return fmt.Errorf("%w: db certificate %s (%s), request names %x (%s)", ErrKeyMismatch, fp, keys.SecureBoot.Subject, []byte(k.Fingerprint), k.Subject)
		}
	}
	return nil
}

// stageBlob verifies a blob signature and writes FILE.sig and
// FILE.sigstore.json to temporary files.
func stageBlob(full string, it Item, raw []byte, pub *ecdsa.PublicKey) (staged, error) {
	sig, err := normalizeECDSA(pub, it.Digest, raw)
	if err != nil {
		return staged{}, fmt.Errorf("%w: %s: not an ECDSA P-256 signature by the cosign key over its SHA-256", ErrBadSignature, full)
	}
	bundle, err := signing.MarshalBundle(pub, it.Digest, sig)
	if err != nil {
		return staged{}, fmt.Errorf("%s: %w", full, err)
	}
	var files []*atomicfile.File
	abort := func() {
		for _, f := range files {
			f.Abort()
		}
	}
	for _, out := range []struct {
		path string
		data []byte
	}{{full + signing.SigSuffix, signing.EncodeSig(sig)}, {full + signing.BundleSuffix, bundle}} {
		f, err := atomicfile.Create(out.path, 0o644)
		if err != nil {
			abort()
			return staged{}, err
		}
		files = append(files, f)
		if _, err := f.Write(out.data); err != nil {
			abort()
			return staged{}, fmt.Errorf("writing %s: %w", f.Name(), err)
		}
	}
	return staged{
		commit: func() error {
			for _, f := range files {
				if err := f.Commit(); err != nil {
					return err
				}
			}
			return nil
		},
		abort: abort,
		paths: []string{full + signing.SigSuffix, full + signing.BundleSuffix},
	}, nil
}

// normalizeECDSA returns sig as ASN.1 DER if it verifies, either as given
// or read as raw r||s.
func normalizeECDSA(pub *ecdsa.PublicKey, digest, sig []byte) ([]byte, error) {
	if signing.VerifyDigest(pub, digest, sig) == nil {
		return sig, nil
	}
	if len(sig) == 64 {
		der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])})
		if err == nil && signing.VerifyDigest(pub, digest, der) == nil {
			return der, nil
		}
	}
	return nil, signing.ErrBadSignature
}

// stageAuthenticode builds the signed PE image in a temporary file next to
// the original and verifies it.
func stageAuthenticode(ctx context.Context, full string, it Item, sig []byte, cert *x509.Certificate) (staged, error) {
	tmp, err := os.CreateTemp(filepath.Dir(full), "."+filepath.Base(full)+".signed*")
	if err != nil {
		return staged{}, fmt.Errorf("staging signed image: %w", err)
	}
	name := tmp.Name()
	tmp.Close()
	abort := func() { os.Remove(name) }
	pending := &secureboot.Pending{ImageDigest: it.AuthenticodeSHA256, SignedAttributes: it.SignedAttributes, Digest: it.Digest}
	if err := secureboot.AttachSignature(ctx, full, name, cert, pending, sig); err != nil {
		abort()
		if errors.Is(err, secureboot.ErrBadSignature) {
			return staged{}, fmt.Errorf("%w: %w", ErrBadSignature, err)
		}
		if errors.Is(err, secureboot.ErrAttributesChanged) {
			return staged{}, fmt.Errorf("%w: %w", ErrChanged, err)
		}
		return staged{}, err
	}
	return staged{
		commit: func() error {
			if err := atomicfile.Publish(name, full); err != nil {
				return fmt.Errorf("installing signed image: %w", err)
			}
			return nil
		},
		abort: abort,
		paths: []string{full},
	}, nil
}

// pemCert returns the "CERTIFICATE" PEM encoding of c.
func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func marshalIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
