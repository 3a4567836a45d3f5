package secureboot

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sassoftware/relic/v7/lib/authenticode"
	"github.com/sassoftware/relic/v7/lib/binpatch"
	"github.com/sassoftware/relic/v7/lib/certloader"
	"github.com/sassoftware/relic/v7/lib/pkcs7"
	"github.com/sassoftware/relic/v7/signers/sigerrors"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// Errors returned by the Authenticode functions; callers branch on them
// with errors.Is.
var (
	// ErrNotSigned means the PE image has no attribute certificate table.
	ErrNotSigned = errors.New("secureboot: PE image is not signed")
	// ErrBadSignature means a signature or the image hash it covers does
	// not verify (the image was changed after signing, or the signature
	// bytes are not the key's signature over the attributes).
	ErrBadSignature = errors.New("secureboot: Authenticode signature does not verify")
	// ErrUntrusted means a signature is valid but its signer does not
	// chain to any of the given db certificates.
	ErrUntrusted = errors.New("secureboot: signer is not in the db")
	// ErrAttributesChanged means the authenticated attributes computed
	// from the image differ from those that were signed ([Prepare] was run
	// on different content).
	ErrAttributesChanged = errors.New("secureboot: image changed since the signing request was made")
)

// ImageDigest returns the Authenticode SHA-256 image hash of the PE image
// read from r (the hash over the image excluding its checksum field, its
// certificate table directory entry and the certificate table itself).
func ImageDigest(r io.Reader) ([]byte, error) {
	var pd *authenticode.PEDigest
	var err error
	if rs, ok := r.(io.ReadSeeker); ok {
		pd, err = digestPE(rs)
	} else {
		err = guard("hashing", func() error {
			var err error
			pd, err = authenticode.DigestPE(r, crypto.SHA256, false)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("secureboot: hashing PE image: %w", err)
	}
	return pd.Imprint, nil
}

// SignPE signs the PE image at in with kp and writes the signed image to
// out (which may equal in). An existing signature is replaced. The output
// is written to a temporary file, its PE checksum is fixed, it is verified
// against kp.Cert, and only then renamed to out; on error out is unchanged.
func SignPE(ctx context.Context, kp *KeyPair, in, out string) error {
	if err := signPE(ctx, in, out, kp.Cert, kp.Key); err != nil {
		return fmt.Errorf("signing %s: %w", in, err)
	}
	return nil
}

// Pending describes an Authenticode signature still to be made by a key
// held elsewhere. Everything in it is deterministic for a given image.
type Pending struct {
	// ImageDigest is the Authenticode SHA-256 image hash.
	ImageDigest []byte
	// SignedAttributes is the DER encoding (SET OF Attribute) of the
	// PKCS#7 authenticated attributes: content type
	// SpcIndirectDataContent, the message digest of the
	// SpcIndirectDataContent that holds ImageDigest, SpcStatementType
	// (individual) and an empty SpcSpOpusInfo. The signer computes RSA
	// PKCS#1 v1.5 with SHA-256 over these bytes.
	SignedAttributes []byte
	// Digest is SHA-256(SignedAttributes), for signers that take a
	// precomputed digest (PKCS#11 CKM_RSA_PKCS with a DigestInfo prefix,
	// `openssl pkeyutl -pkeyopt digest:sha256`).
	Digest []byte
}

// Prepare computes what a key held elsewhere must sign to make an
// Authenticode signature of the PE image at path for cert (an RSA db
// certificate). Pass the signature to [AttachSignature].
func Prepare(ctx context.Context, path string, cert *x509.Certificate) (*Pending, error) {
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("preparing %s: secureboot: certificate %q has a %T key, want RSA", path, cert.Subject, cert.PublicKey)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("preparing signature: %w", err)
	}
	defer f.Close()
	pd, err := digestPE(f)
	if err != nil {
		return nil, fmt.Errorf("preparing %s: secureboot: hashing PE image: %w", path, err)
	}
	attrs, err := signedAttributes(pd)
	if err != nil {
		return nil, fmt.Errorf("preparing %s: %w", path, err)
	}
	digest := sha256.Sum256(attrs)
	// Cross-check against what relic will ask the key to sign: run its
	// signer up to the key operation and capture the digest.
	c := &capture{pub: cert.PublicKey}
	err = guard("signing", func() error {
		_, _, err := pd.Sign(ctx, &certloader.Certificate{Leaf: cert, Certificates: []*x509.Certificate{cert}, PrivateKey: c}, &authenticode.OpusParams{})
		return err
	})
	if !errors.Is(err, errCaptured) {
		return nil, fmt.Errorf("preparing %s: secureboot: building SignerInfo: %w", path, err)
	}
	if !bytes.Equal(c.digest, digest[:]) {
		return nil, fmt.Errorf("preparing %s: secureboot: authenticated attributes differ from the signer's (relic version changed?)", path)
	}
	return &Pending{ImageDigest: pd.Imprint, SignedAttributes: attrs, Digest: digest[:]}, nil
}

// AttachSignature inserts an Authenticode signature made elsewhere into the
// PE image at in and writes the result to out (which may equal in). sig is
// the RSA PKCS#1 v1.5 SHA-256 signature over the SignedAttributes that
// [Prepare] returned for the same image, by the key of cert. The signature
// is checked before anything is written ([ErrBadSignature] when it does not
// verify, [ErrAttributesChanged] when in is not the image that was
// prepared); the output is then written and verified like [SignPE]'s.
func AttachSignature(ctx context.Context, in, out string, cert *x509.Certificate, pending *Pending, sig []byte) error {
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("attaching signature to %s: secureboot: certificate %q has a %T key, want RSA", in, cert.Subject, cert.PublicKey)
	}
	p := &presigned{pub: pub, sig: sig}
	if pending != nil {
		p.want = pending.Digest
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, pending.Digest, sig); err != nil {
			return fmt.Errorf("attaching signature to %s: %w: not a signature by %q over the prepared attributes", in, ErrBadSignature, cert.Subject)
		}
	}
	if err := signPE(ctx, in, out, cert, p); err != nil {
		return fmt.Errorf("attaching signature to %s: %w", in, err)
	}
	return nil
}

// signedAttributes returns the DER SET OF the authenticated attributes
// relic's Authenticode signer signs for pd, in relic's order.
func signedAttributes(pd *authenticode.PEDigest) ([]byte, error) {
	indirect, err := pd.GetIndirect()
	if err != nil {
		return nil, fmt.Errorf("secureboot: building SpcIndirectDataContent: %w", err)
	}
	ci, err := pkcs7.NewContentInfo(authenticode.OidSpcIndirectDataContent, indirect)
	if err != nil {
		return nil, fmt.Errorf("secureboot: encoding SpcIndirectDataContent: %w", err)
	}
	content, err := ci.Bytes()
	if err != nil {
		return nil, fmt.Errorf("secureboot: encoding SpcIndirectDataContent: %w", err)
	}
	contentDigest := sha256.Sum256(content)
	var attrs pkcs7.AttributeList
	for _, a := range []struct {
		oid   asn1.ObjectIdentifier
		value any
	}{
		{authenticode.OidSpcStatementType, authenticode.SpcSpStatementType{Type: authenticode.OidSpcIndividualPurpose}},
		{authenticode.OidSpcSpOpusInfo, authenticode.SpcSpOpusInfo{}},
		{pkcs7.OidAttributeContentType, authenticode.OidSpcIndirectDataContent},
		{pkcs7.OidAttributeMessageDigest, contentDigest[:]},
	} {
		if err := attrs.Add(a.oid, a.value); err != nil {
			return nil, fmt.Errorf("secureboot: encoding attribute %v: %w", a.oid, err)
		}
	}
	return attrs.Bytes()
}

// errCaptured stops relic's signer at the key operation in [Prepare].
var errCaptured = errors.New("secureboot: digest captured")

// capture is a crypto.Signer that records the digest it is asked to sign.
type capture struct {
	pub    crypto.PublicKey
	digest []byte
}

// Public returns the certificate key the builder checks against.
func (c *capture) Public() crypto.PublicKey { return c.pub }

// Sign records digest and stops the builder with errCaptured.
func (c *capture) Sign(_ io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.digest = append([]byte(nil), digest...)
	return nil, errCaptured
}

// presigned is a crypto.Signer that returns a signature made elsewhere,
// after checking it against the digest it is asked to sign.
type presigned struct {
	pub  *rsa.PublicKey
	sig  []byte
	want []byte // digest the signature was prepared for; nil if unknown
}

// Public returns the db certificate key.
func (p *presigned) Public() crypto.PublicKey { return p.pub }

// Sign returns the external signature if it is valid for digest.
func (p *presigned) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.SHA256 {
		return nil, fmt.Errorf("secureboot: signer asked for %v, want SHA-256", opts.HashFunc())
	}
	if p.want != nil && !bytes.Equal(digest, p.want) {
		return nil, ErrAttributesChanged
	}
	if err := rsa.VerifyPKCS1v15(p.pub, crypto.SHA256, digest, p.sig); err != nil {
		return nil, fmt.Errorf("%w: not an RSA PKCS#1 v1.5 SHA-256 signature over this image's attributes", ErrBadSignature)
	}
	return p.sig, nil
}

// signPE does the work of SignPE and AttachSignature.
func signPE(ctx context.Context, in, out string, cert *x509.Certificate, key crypto.Signer) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	pd, err := digestPE(src)
	if err != nil {
		return fmt.Errorf("secureboot: hashing PE image: %w", err)
	}
	c := &certloader.Certificate{Leaf: cert, Certificates: []*x509.Certificate{cert}, PrivateKey: key}
	var patch *binpatch.PatchSet
	err = guard("signing", func() error {
		var err error
		patch, _, err = pd.Sign(ctx, c, &authenticode.OpusParams{})
		return err
	})
	if err != nil {
		return fmt.Errorf("secureboot: making signature: %w", err)
	}
	st, err := src.Stat()
	if err != nil {
		return err
	}
	dst, err := atomicfile.Create(out, st.Mode().Perm())
	if err != nil {
		return err
	}
	defer dst.Abort()
	if err := applyPatch(dst.File, src, patch); err != nil {
		return fmt.Errorf("writing %s: %w", dst.Name(), err)
	}
	if err := guard("fixing the checksum", func() error { return authenticode.FixPEChecksum(dst.File) }); err != nil {
		return fmt.Errorf("secureboot: fixing PE checksum of %s: %w", dst.Name(), err)
	}
	if _, err := VerifyPE(dst.File, []*x509.Certificate{cert}); err != nil {
		return fmt.Errorf("checking the signed image: %w", err)
	}
	return dst.Commit()
}

// applyPatch writes src with patch applied to dst. Patches are in
// ascending offset order (binpatch.PatchSet.Add keeps them so).
func applyPatch(dst io.Writer, src io.ReadSeeker, patch *binpatch.PatchSet) error {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	var pos int64
	for i, ph := range patch.Patches {
		if ph.Offset < pos {
			return errors.New("secureboot: overlapping PE patches")
		}
		if _, err := io.CopyN(dst, src, ph.Offset-pos); err != nil {
			return err
		}
		if _, err := src.Seek(int64(ph.OldSize), io.SeekCurrent); err != nil {
			return err
		}
		pos = ph.Offset + int64(ph.OldSize)
		if _, err := dst.Write(patch.Blobs[i]); err != nil {
			return err
		}
	}
	_, err := io.Copy(dst, src)
	return err
}

// Signature describes one verified Authenticode signature of a PE image.
type Signature struct {
	// Signer is the certificate whose key made the signature.
	Signer *x509.Certificate
	// Certificates are all certificates embedded in the signature.
	Certificates []*x509.Certificate
	// Trusted is the db certificate the signer chains to.
	Trusted *x509.Certificate
	// ImageDigest is the signed Authenticode image hash.
	ImageDigest []byte
}

// VerifyPE verifies every Authenticode signature of the PE image read from
// r: each signature must be a valid PKCS#7 SignedData over the image's
// current hash, and its signer must chain to one of the db certificates
// (directly, or through certificates embedded in the signature). Errors
// wrap [ErrMalformed], [ErrNotSigned], [ErrBadSignature] or [ErrUntrusted].
// db may be empty only to check integrity; then every signer is
// [ErrUntrusted]. The PE structure is checked before the image reaches the
// Authenticode library, and a panic in it becomes an [ErrMalformed] error.
func VerifyPE(r io.ReadSeeker, db []*x509.Certificate) ([]Signature, error) {
	if err := checkPE(r); err != nil {
		return nil, err
	}
	var sigs []authenticode.PESignature
	err := guard("verifying", func() error {
		var err error
		sigs, err = authenticode.VerifyPE(r, false)
		return err
	})
	if errors.Is(err, ErrMalformed) {
		return nil, err
	}
	if err != nil {
		var ns sigerrors.NotSignedError
		if errors.As(err, &ns) {
			return nil, ErrNotSigned
		}
		return nil, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	out := make([]Signature, 0, len(sigs))
	for _, s := range sigs {
		leaf := s.Certificate
		if leaf == nil {
			return nil, fmt.Errorf("%w: signature has no signer certificate", ErrBadSignature)
		}
		if s.ImageHashFunc != crypto.SHA256 {
			return nil, fmt.Errorf("%w: image hash is %v, want SHA-256", ErrBadSignature, s.ImageHashFunc)
		}
		trusted := chainsTo(leaf, s.Intermediates, db)
		if trusted == nil {
			return nil, fmt.Errorf("%w: signer %q", ErrUntrusted, leaf.Subject)
		}
		out = append(out, Signature{
			Signer:       leaf,
			Certificates: s.Intermediates,
			Trusted:      trusted,
			ImageDigest:  s.Indirect.MessageDigest.Digest,
		})
	}
	return out, nil
}

// VerifyPEFile is [VerifyPE] on the file at path; errors name the file.
func VerifyPEFile(path string, db []*x509.Certificate) ([]Signature, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verifying Authenticode signature: %w", err)
	}
	defer f.Close()
	sigs, err := VerifyPE(f, db)
	if err != nil {
		return nil, fmt.Errorf("verifying %s: %w", path, err)
	}
	return sigs, nil
}

// maxChain bounds the walk through embedded intermediates.
const maxChain = 8

// chainsTo returns the db certificate leaf chains to, or nil. Like UEFI
// firmware it accepts a db entry anywhere in the chain and ignores validity
// periods, key usages and CA flags.
func chainsTo(leaf *x509.Certificate, embedded, db []*x509.Certificate) *x509.Certificate {
	cur := leaf
	for range maxChain {
		for _, d := range db {
			if cur.Equal(d) || issuedBy(cur, d) {
				return d
			}
		}
		var next *x509.Certificate
		for _, c := range embedded {
			if !c.Equal(cur) && issuedBy(cur, c) {
				next = c
				break
			}
		}
		if next == nil {
			return nil
		}
		cur = next
	}
	return nil
}

// issuedBy reports whether parent's key signed c.
func issuedBy(c, parent *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, parent.RawSubject) &&
		parent.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}
