// Package handoff moves signing to keys that never touch the build host
// (an HSM, an air-gapped machine): [NewRequest] describes, as one JSON
// document, exactly what must be signed for a set of files; the signatures
// are made elsewhere with plain RSA/ECDSA operations; [Apply] checks every
// one and only then inserts them (detached cosign signatures and bundles
// for blobs, a complete Authenticode PKCS#7 for PE images).
//
// The JSON schema is documented in docs/signing.md. Two kinds of item
// exist:
//
//   - [KindBlob]: a cosign-compatible detached signature. The signer
//     computes an ECDSA P-256 signature over Digest (the file's SHA-256)
//     and returns it as ASN.1 DER or as raw r||s (64 bytes, what PKCS#11
//     CKM_ECDSA returns). Apply writes FILE.sig and FILE.sigstore.json.
//   - [KindAuthenticode]: a Secure Boot signature. The signer computes an
//     RSA PKCS#1 v1.5 SHA-256 signature over SignedAttributes (equivalently
//     over the precomputed Digest = SHA-256(SignedAttributes)). Apply
//     builds the PKCS#7 SignedData around it and rewrites the PE image.
//
// A file that needs both (a UKI that is also published with a cosign
// signature) needs two rounds: the Authenticode signature changes the file,
// so its blob digest is known only after the first Apply. NewRequest
// refuses both kinds for one path in one request.
//
// # Security
//
// Requests and signature files come from outside and are validated
// strictly (schema, field sizes, relative local paths). Apply trusts
// neither: it re-hashes every file, recomputes what was to be signed, and
// verifies each signature against the keys given to it, not against keys
// named in the documents.
package handoff

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// Schema identifiers of the two documents.
const (
	RequestSchema    = "cfs-compose.signing-request/v1"
	SignaturesSchema = "cfs-compose.signatures/v1"
)

// Kind says what kind of signature an item needs.
type Kind string

// Item kinds.
const (
	KindBlob         Kind = "blob"         // detached cosign signature (.sig + .sigstore.json)
	KindAuthenticode Kind = "authenticode" // Authenticode signature inside a PE image
)

// Signature algorithms, as named in requests.
const (
	AlgECDSAP256SHA256   = "ecdsa-p256-sha256"   // ECDSA P-256 over a SHA-256 digest
	AlgRSAPKCS1v15SHA256 = "rsa-pkcs1v15-sha256" // RSASSA-PKCS1-v1_5 with SHA-256
)

// Key roles, as named in requests.
const (
	KeyCosign     = "cosign"
	KeySecureBoot = "secureboot"
)

// Errors for callers to branch on; wrapped with the file or item at fault.
var (
	ErrSchema       = errors.New("handoff: invalid document")
	ErrChanged      = errors.New("handoff: file changed since the request was made")
	ErrBadSignature = errors.New("handoff: signature does not verify")
	ErrKeyMismatch  = errors.New("handoff: key differs from the one the request names")
	ErrMissing      = errors.New("handoff: signature missing for a requested item")
)

// Hex is a byte string encoded as lower-case hex in JSON.
type Hex []byte

// MarshalText encodes h as hex.
func (h Hex) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

// UnmarshalText decodes hex.
func (h *Hex) UnmarshalText(b []byte) error {
	d, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("invalid hex: %w", err)
	}
	*h = d
	return nil
}

// Request lists what must be signed. Its JSON form is the hand-off file.
type Request struct {
	Schema string      `json:"schema"` // RequestSchema
	Keys   RequestKeys `json:"keys"`
	Items  []Item      `json:"items"`
}

// RequestKeys identifies the keys that must make the signatures.
type RequestKeys struct {
	Cosign     *CosignKeyID     `json:"cosign,omitempty"`
	SecureBoot *SecureBootKeyID `json:"secureboot,omitempty"`
}

// CosignKeyID identifies the artifact signing key.
type CosignKeyID struct {
	// Hint is base64(SHA-256(PKIX DER)), the Sigstore key hint.
	Hint      string `json:"hint"`
	Algorithm string `json:"algorithm"`  // AlgECDSAP256SHA256
	PublicKey string `json:"public_key"` // PKIX "PUBLIC KEY" PEM
}

// SecureBootKeyID identifies the db signing certificate.
type SecureBootKeyID struct {
	// Fingerprint is the hex SHA-256 of the certificate's DER encoding.
	Fingerprint Hex    `json:"sha256_fingerprint"`
	Subject     string `json:"subject"`
	Algorithm   string `json:"algorithm"`   // AlgRSAPKCS1v15SHA256
	Certificate string `json:"certificate"` // "CERTIFICATE" PEM
}

// Item is one signature to make.
type Item struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path"` // slash-separated, relative to the request root
	Size int64  `json:"size"`
	// SHA256 is the file's digest when the request was made; Apply refuses
	// a file that no longer matches.
	SHA256 Hex `json:"sha256"`
	// Key is KeyCosign or KeySecureBoot; Algorithm the operation to apply.
	Key       string `json:"key"`
	Algorithm string `json:"algorithm"`
	// Digest is the SHA-256 digest the key signs (ECDSA: the file's
	// SHA-256; RSA: SHA-256 of SignedAttributes).
	Digest Hex `json:"digest"`
	// AuthenticodeSHA256 is the PE image hash (authenticode items only).
	AuthenticodeSHA256 Hex `json:"authenticode_sha256,omitempty"`
	// SignedAttributes is the DER SET OF the PKCS#7 authenticated
	// attributes, base64 in JSON (authenticode items only): the exact
	// bytes to sign.
	SignedAttributes []byte `json:"signed_attributes,omitempty"`
}

// Target names a file to sign and how, for [NewRequest].
type Target struct {
	Path string // relative to root, slash-separated
	Kind Kind
}

// Keys are the public halves of the signing keys. Only the ones a request
// needs must be set.
type Keys struct {
	Cosign     *ecdsa.PublicKey
	SecureBoot *x509.Certificate
}

// NewRequest hashes each target below root and returns the request that
// describes its signature. Blob targets need keys.Cosign, authenticode
// targets keys.SecureBoot (an RSA certificate). Items keep the order of
// targets.
func NewRequest(ctx context.Context, root string, targets []Target, keys Keys) (*Request, error) {
	req := &Request{Schema: RequestSchema, Items: []Item{}}
	seen := map[string]Kind{}
	for _, t := range targets {
		if err := checkPath(t.Path); err != nil {
			return nil, err
		}
		if k, dup := seen[t.Path]; dup {
			if k == t.Kind {
				return nil, fmt.Errorf("%w: %s listed twice", ErrSchema, t.Path)
			}
			return nil, fmt.Errorf("%w: %s needs both an Authenticode and a blob signature: make two requests (the blob digest is only known after the Authenticode signature is applied)", ErrSchema, t.Path)
		}
		seen[t.Path] = t.Kind
		switch t.Kind {
		case KindBlob:
			if keys.Cosign == nil {
				return nil, fmt.Errorf("handoff: %s: blob signature requested without a cosign public key", t.Path)
			}
		case KindAuthenticode:
			if keys.SecureBoot == nil {
				return nil, fmt.Errorf("handoff: %s: Authenticode signature requested without a Secure Boot certificate", t.Path)
			}
		default:
			return nil, fmt.Errorf("%w: %s: unknown kind %q", ErrSchema, t.Path, t.Kind)
		}
	}
	if err := req.setKeys(keys, seen); err != nil {
		return nil, err
	}
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		full := filepath.Join(root, filepath.FromSlash(t.Path))
		size, sum, err := hashFile(full)
		if err != nil {
			return nil, err
		}
		it := Item{Kind: t.Kind, Path: t.Path, Size: size, SHA256: sum}
		switch t.Kind {
		case KindBlob:
			it.Key, it.Algorithm, it.Digest = KeyCosign, AlgECDSAP256SHA256, sum
		case KindAuthenticode:
			p, err := secureboot.Prepare(ctx, full, keys.SecureBoot)
			if err != nil {
				return nil, err
			}
			it.Key, it.Algorithm = KeySecureBoot, AlgRSAPKCS1v15SHA256
			it.Digest, it.AuthenticodeSHA256, it.SignedAttributes = p.Digest, p.ImageDigest, p.SignedAttributes
		}
		req.Items = append(req.Items, it)
	}
	return req, nil
}

func (r *Request) setKeys(keys Keys, kinds map[string]Kind) error {
	need := map[Kind]bool{}
	for _, k := range kinds {
		need[k] = true
	}
	if need[KindBlob] {
		hint, err := signing.KeyHint(keys.Cosign)
		if err != nil {
			return err
		}
		pemKey, err := signing.MarshalPublicKey(keys.Cosign)
		if err != nil {
			return err
		}
		r.Keys.Cosign = &CosignKeyID{Hint: hint, Algorithm: AlgECDSAP256SHA256, PublicKey: string(pemKey)}
	}
	if need[KindAuthenticode] {
		c := keys.SecureBoot
		fp, _ := hex.DecodeString(secureboot.Fingerprint(c))
		r.Keys.SecureBoot = &SecureBootKeyID{
			Fingerprint: fp,
			Subject:     c.Subject.String(),
			Algorithm:   AlgRSAPKCS1v15SHA256,
			Certificate: string(pemCert(c)),
		}
	}
	return nil
}

// hashFile returns the size and SHA-256 of a file.
func hashFile(path string) (int64, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, fmt.Errorf("hashing: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, nil, fmt.Errorf("hashing %s: %w", path, err)
	}
	return n, h.Sum(nil), nil
}

// checkPath accepts only clean, relative, slash-separated paths that stay
// below the root.
func checkPath(p string) error {
	if p == "" || !filepath.IsLocal(filepath.FromSlash(p)) || filepath.ToSlash(filepath.Clean(filepath.FromSlash(p))) != p {
		return fmt.Errorf("%w: path %q is not a clean relative path below the root", ErrSchema, p)
	}
	return nil
}

// Marshal returns the indented JSON form of r.
func (r *Request) Marshal() ([]byte, error) {
	b, err := marshalIndent(r)
	if err != nil {
		return nil, fmt.Errorf("handoff: encoding request: %w", err)
	}
	return b, nil
}

// ReadRequest decodes and validates a request. Unknown fields are errors.
func ReadRequest(r io.Reader) (*Request, error) {
	var req Request
	if err := decodeStrict(r, &req); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSchema, err)
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	return &req, nil
}

func (r *Request) validate() error {
	if r.Schema != RequestSchema {
		return fmt.Errorf("%w: schema %q, want %q", ErrSchema, r.Schema, RequestSchema)
	}
	if k := r.Keys.Cosign; k != nil {
		if k.Algorithm != AlgECDSAP256SHA256 {
			return fmt.Errorf("%w: keys.cosign.algorithm %q", ErrSchema, k.Algorithm)
		}
		pub, err := signing.ParsePublicKey([]byte(k.PublicKey))
		if err != nil {
			return fmt.Errorf("%w: keys.cosign.public_key: %w", ErrSchema, err)
		}
		if hint, _ := signing.KeyHint(pub); hint != k.Hint {
			return fmt.Errorf("%w: keys.cosign.hint does not match public_key", ErrSchema)
		}
	}
	if k := r.Keys.SecureBoot; k != nil {
		if k.Algorithm != AlgRSAPKCS1v15SHA256 {
			return fmt.Errorf("%w: keys.secureboot.algorithm %q", ErrSchema, k.Algorithm)
		}
		c, err := secureboot.ParseCertificate([]byte(k.Certificate))
		if err != nil {
			return fmt.Errorf("%w: keys.secureboot.certificate: %w", ErrSchema, err)
		}
		if secureboot.Fingerprint(c) != hex.EncodeToString(k.Fingerprint) {
			return fmt.Errorf("%w: keys.secureboot.sha256_fingerprint does not match certificate", ErrSchema)
		}
	}
	seen := map[string]bool{}
	for i, it := range r.Items {
		at := fmt.Sprintf("items[%d] (%s)", i, it.Path)
		if err := checkPath(it.Path); err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		if seen[it.Path] {
			return fmt.Errorf("%w: %s: path listed twice", ErrSchema, at)
		}
		seen[it.Path] = true
		if len(it.SHA256) != sha256.Size || len(it.Digest) != sha256.Size || it.Size < 0 {
			return fmt.Errorf("%w: %s: sha256 and digest must be 32 bytes, size non-negative", ErrSchema, at)
		}
		switch it.Kind {
		case KindBlob:
			if it.Key != KeyCosign || it.Algorithm != AlgECDSAP256SHA256 || r.Keys.Cosign == nil {
				return fmt.Errorf("%w: %s: blob items use key %q, algorithm %q and need keys.cosign", ErrSchema, at, KeyCosign, AlgECDSAP256SHA256)
			}
			if !bytes.Equal(it.Digest, it.SHA256) || it.SignedAttributes != nil || it.AuthenticodeSHA256 != nil {
				return fmt.Errorf("%w: %s: a blob digest is the file's sha256, with no Authenticode fields", ErrSchema, at)
			}
		case KindAuthenticode:
			if it.Key != KeySecureBoot || it.Algorithm != AlgRSAPKCS1v15SHA256 || r.Keys.SecureBoot == nil {
				return fmt.Errorf("%w: %s: authenticode items use key %q, algorithm %q and need keys.secureboot", ErrSchema, at, KeySecureBoot, AlgRSAPKCS1v15SHA256)
			}
			if sum := sha256.Sum256(it.SignedAttributes); !bytes.Equal(sum[:], it.Digest) || len(it.AuthenticodeSHA256) != sha256.Size {
				return fmt.Errorf("%w: %s: digest must be SHA-256(signed_attributes), authenticode_sha256 32 bytes", ErrSchema, at)
			}
		default:
			return fmt.Errorf("%w: %s: unknown kind %q", ErrSchema, at, it.Kind)
		}
	}
	return nil
}

// decodeStrict decodes exactly one JSON value, rejecting unknown fields.
func decodeStrict(r io.Reader, v any) error {
	d := json.NewDecoder(r)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}
