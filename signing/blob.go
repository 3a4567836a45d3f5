package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	sigsig "github.com/sigstore/sigstore/pkg/signature"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/internal/filehash"
)

// File name suffixes of the detached signatures of FILE.
const (
	SigSuffix    = ".sig"           // FILE.sig: base64 ASN.1 DER ECDSA signature
	BundleSuffix = ".sigstore.json" // FILE.sigstore.json: Sigstore bundle v0.3
)

// BundleMediaType is the media type of the bundles this package writes.
const BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// ErrBadSignature means a signature does not verify against the key and
// digest it was checked with. Errors wrap it with the file at fault.
var ErrBadSignature = errors.New("signing: signature does not verify")

// HashFile returns the SHA-256 digest of the file at path, read once in a
// streaming pass.
func HashFile(path string) ([]byte, error) {
	sum, _, err := filehash.SHA256(path)
	if err != nil {
		return nil, fmt.Errorf("hashing: %w", err)
	}
	return sum[:], nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// EncodeSig returns the content of a FILE.sig file for an ASN.1 DER
// signature: its standard base64 encoding, without a newline (as cosign
// sign-blob writes it).
func EncodeSig(sig []byte) []byte {
	return []byte(base64.StdEncoding.EncodeToString(sig))
}

// DecodeSig decodes the content of a FILE.sig file; surrounding white space
// is ignored.
func DecodeSig(data []byte) ([]byte, error) {
	sig, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: .sig content is not base64", ErrBadSignature)
	}
	return sig, nil
}

// VerifyDigest checks an ASN.1 DER ECDSA signature over a SHA-256 digest.
func VerifyDigest(pub *ecdsa.PublicKey, digest, sig []byte) error {
	if len(digest) != sha256.Size {
		return fmt.Errorf("signing: digest is %d bytes, want %d (SHA-256)", len(digest), sha256.Size)
	}
	if !ecdsa.VerifyASN1(pub, digest, sig) {
		return ErrBadSignature
	}
	return nil
}

// MarshalBundle returns a key-based Sigstore bundle (v0.3 JSON, no
// transparency log entry, no timestamps) for an ASN.1 DER ECDSA signature
// over a SHA-256 digest. The output is compact, deterministic JSON.
func MarshalBundle(pub crypto.PublicKey, digest, sig []byte) ([]byte, error) {
	hint, err := KeyHint(pub)
	if err != nil {
		return nil, err
	}
	pb := &protobundle.Bundle{
		MediaType: BundleMediaType,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{
				PublicKey: &protocommon.PublicKeyIdentifier{Hint: hint},
			},
		},
		Content: &protobundle.Bundle_MessageSignature{
			MessageSignature: &protocommon.MessageSignature{
				MessageDigest: &protocommon.HashOutput{
					Algorithm: protocommon.HashAlgorithm_SHA2_256,
					Digest:    digest,
				},
				Signature: sig,
			},
		},
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, fmt.Errorf("signing: building bundle: %w", err)
	}
	raw, err := b.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("signing: encoding bundle: %w", err)
	}
	// protojson varies its white space on purpose; compact it so the
	// bundle bytes depend only on their content.
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return nil, fmt.Errorf("signing: encoding bundle: %w", err)
	}
	return out.Bytes(), nil
}

// VerifyBundle checks a Sigstore bundle (any version sigstore-go reads,
// e.g. one from `cosign sign-blob --new-bundle-format`) holding a message
// signature over the SHA-256 digest, made by pub. Transparency log entries
// and timestamps are not required (offline, key-based verification); the
// bundle's key hint is not trusted, only the signature.
func VerifyBundle(pub *ecdsa.PublicKey, digest, bundleJSON []byte) error {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return fmt.Errorf("%w: reading bundle: %w", ErrBadSignature, err)
	}
	verifier, err := sigsig.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing: loading verifier: %w", err)
	}
	key := root.NewExpiringKey(verifier, time.Time{}, time.Time{})
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
	v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return fmt.Errorf("signing: creating bundle verifier: %w", err)
	}
	if _, err := v.Verify(&b, verify.NewPolicy(verify.WithArtifactDigest("sha256", digest), verify.WithKey())); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}

// SignFile signs the file at path with s and writes path+[SigSuffix] and
// path+[BundleSuffix], each atomically. digest is the file's SHA-256 when
// the caller already has it (the file is then not read); nil means hash the
// file. The signature is checked against s.Public before anything is
// written.
func SignFile(ctx context.Context, s Signer, path string, digest []byte) error {
	if digest == nil {
		var err error
		if digest, err = HashFile(path); err != nil {
			return err
		}
	}
	sig, err := s.Sign(ctx, digest)
	if err != nil {
		return fmt.Errorf("signing %s: %w", path, err)
	}
	return WriteSignatures(path, s.Public(), digest, sig)
}

// WriteSignatures checks sig (ASN.1 DER ECDSA over the SHA-256 digest of
// the file at path) against pub and writes path+[SigSuffix] and
// path+[BundleSuffix] atomically. It is the second half of [SignFile], for
// signatures made elsewhere.
func WriteSignatures(path string, pub crypto.PublicKey, digest, sig []byte) error {
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return fmt.Errorf("signing %s: %w: %s key (want ECDSA P-256)", path, ErrKeyFormat, keyKind(pub))
	}
	if err := VerifyDigest(ec, digest, sig); err != nil {
		return fmt.Errorf("signing %s: %w", path, err)
	}
	bundleJSON, err := MarshalBundle(pub, digest, sig)
	if err != nil {
		return fmt.Errorf("signing %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path+SigSuffix, EncodeSig(sig), 0o644); err != nil {
		return fmt.Errorf("signing %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path+BundleSuffix, bundleJSON, 0o644); err != nil {
		return fmt.Errorf("signing %s: %w", path, err)
	}
	return nil
}

// FileResult reports which detached signatures of a file were checked.
type FileResult struct {
	Sig    bool // path.sig exists and verified
	Bundle bool // path.sigstore.json exists and verified
}

// VerifyFile checks the detached signatures of the file at path against
// pub: path+[SigSuffix] and path+[BundleSuffix], each if present. digest is
// the file's SHA-256 when known (nil means hash the file). At least one of
// the two must exist; every one present must verify. Errors name the
// signature file at fault and wrap [ErrBadSignature] for a wrong signature
// or [os.ErrNotExist] when both are missing.
func VerifyFile(pub *ecdsa.PublicKey, path string, digest []byte) (FileResult, error) {
	var res FileResult
	sigData, sigErr := os.ReadFile(path + SigSuffix)
	bundleData, bundleErr := os.ReadFile(path + BundleSuffix)
	switch {
	case sigErr != nil && !errors.Is(sigErr, os.ErrNotExist):
		return res, fmt.Errorf("reading signature: %w", sigErr)
	case bundleErr != nil && !errors.Is(bundleErr, os.ErrNotExist):
		return res, fmt.Errorf("reading signature: %w", bundleErr)
	case sigErr != nil && bundleErr != nil:
		return res, fmt.Errorf("verifying %s: no %s or %s: %w", path, SigSuffix, BundleSuffix, os.ErrNotExist)
	}
	if digest == nil {
		var err error
		if digest, err = HashFile(path); err != nil {
			return res, err
		}
	}
	if sigErr == nil {
		sig, err := DecodeSig(sigData)
		if err == nil {
			err = VerifyDigest(pub, digest, sig)
		}
		if err != nil {
			return res, fmt.Errorf("verifying %s: %w", path+SigSuffix, err)
		}
		res.Sig = true
	}
	if bundleErr == nil {
		if err := VerifyBundle(pub, digest, bundleData); err != nil {
			return res, fmt.Errorf("verifying %s: %w", path+BundleSuffix, err)
		}
		res.Bundle = true
	}
	return res, nil
}
