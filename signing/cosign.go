package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
)

// PEM block types of cosign key files.
const (
	// PEMTypeSigstorePrivateKey is the block type cosign 2.x writes.
	PEMTypeSigstorePrivateKey = "ENCRYPTED SIGSTORE PRIVATE KEY"
	// PEMTypeCosignPrivateKey is the legacy block type (cosign 1.x,
	// go.podman.io/image's sigstore.GenerateKeyPair); it is read, never written.
	PEMTypeCosignPrivateKey = "ENCRYPTED COSIGN PRIVATE KEY"
	// PEMTypePublicKey is the block type of cosign.pub (PKIX).
	PEMTypePublicKey = "PUBLIC KEY"
)

// Errors returned when reading keys. They are wrapped with the file name.
var (
	// ErrDecrypt means the passphrase is wrong or the encrypted key is corrupt
	// (the two cannot be told apart).
	ErrDecrypt = errors.New("signing: wrong passphrase or corrupt encrypted key")
	// ErrKeyFormat means the file is not a cosign key of a supported kind.
	ErrKeyFormat = errors.New("signing: not a supported cosign key")
)

// Signer makes artifact signatures. Sign receives a SHA-256 digest and
// returns an ASN.1 DER ECDSA P-256 signature over it; Public returns the
// matching public key. Implementations must not log or return key material.
// [*CosignKey] is the file-based implementation; a hardware token can be
// another.
type Signer interface {
	Public() crypto.PublicKey
	Sign(ctx context.Context, digest []byte) ([]byte, error)
}

// CosignKey is a decrypted cosign ECDSA P-256 private key. It implements
// [Signer]. Its String and GoString methods print only the key hint, so a
// CosignKey in a log line or error does not leak the key.
type CosignKey struct {
	priv *ecdsa.PrivateKey
	hint string
}

// LoadCosignKey reads and decrypts a cosign private key file (cosign.key as
// written by `cosign generate-key-pair`, by [GenerateCosignKeyPair] or by
// go.podman.io/image). Errors name the file and wrap [ErrDecrypt] or
// [ErrKeyFormat]; they never include key bytes or the passphrase.
func LoadCosignKey(path string, passphrase []byte) (*CosignKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading cosign key: %w", err)
	}
	k, err := ParseCosignKey(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("loading cosign key %s: %w", path, err)
	}
	return k, nil
}

// ParseCosignKey decrypts the PEM encoding of a cosign private key. Only
// ECDSA P-256 keys (cosign's default and the only kind cosign-compatible
// tooling must support) are accepted.
func ParseCosignKey(data, passphrase []byte) (*CosignKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrKeyFormat)
	}
	if block.Type != PEMTypeSigstorePrivateKey && block.Type != PEMTypeCosignPrivateKey {
		return nil, fmt.Errorf("%w: PEM block type %q (want %q)", ErrKeyFormat, block.Type, PEMTypeSigstorePrivateKey)
	}
	der, err := encrypted.Decrypt(block.Bytes, passphrase)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", ErrDecrypt, decryptReason(err))
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: decrypted key is not PKCS#8", ErrKeyFormat)
	}
	priv, ok := key.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: %s key (want ECDSA P-256)", ErrKeyFormat, keyKind(key))
	}
	hint, err := KeyHint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &CosignKey{priv: priv, hint: hint}, nil
}

// decryptReason turns go-securesystemslib's errors into a short reason that
// cannot contain key bytes.
func decryptReason(err error) string {
	if err.Error() == "encrypted: decryption failed" {
		return "authentication failed"
	}
	return "malformed encrypted envelope"
}

func keyKind(k any) string {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return "ECDSA " + k.Curve.Params().Name
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	default:
		return fmt.Sprintf("%T", k)
	}
}

// Public returns the *ecdsa.PublicKey.
func (k *CosignKey) Public() crypto.PublicKey { return &k.priv.PublicKey }

// Sign returns the ASN.1 DER ECDSA signature of a 32-byte SHA-256 digest.
func (k *CosignKey) Sign(ctx context.Context, digest []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(digest) != sha256.Size {
		return nil, fmt.Errorf("signing: digest is %d bytes, want %d (SHA-256)", len(digest), sha256.Size)
	}
	return ecdsa.SignASN1(rand.Reader, k.priv, digest)
}

// Hint returns the key hint, base64(SHA-256(PKIX DER of the public key)).
func (k *CosignKey) Hint() string { return k.hint }

// String identifies the key by its hint.
func (k *CosignKey) String() string { return "cosign key " + k.hint }

// GoString identifies the key by its hint (for %#v).
func (k *CosignKey) GoString() string { return "signing.CosignKey{hint: " + k.hint + "}" }

// KeyHint returns the key identifier Sigstore bundles and cosign use for a
// public key: the standard base64 encoding of SHA-256 over its PKIX DER.
func KeyHint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("signing: encoding public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// GenerateCosignKeyPair creates an ECDSA P-256 key pair and returns the
// encrypted private key ("ENCRYPTED SIGSTORE PRIVATE KEY" PEM, scrypt +
// secretbox exactly as cosign writes it) and the public key ("PUBLIC KEY"
// PEM). An empty passphrase is allowed, as with cosign.
func GenerateCosignKeyPair(passphrase []byte) (privPEM, pubPEM []byte, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: generating ECDSA key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: encoding private key: %w", err)
	}
	enc, err := encrypted.Encrypt(der, passphrase)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: encrypting private key: %w", err)
	}
	pubPEM, err = MarshalPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMTypeSigstorePrivateKey, Bytes: enc}), pubPEM, nil
}

// MarshalPublicKey returns the PKIX "PUBLIC KEY" PEM encoding of pub.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("signing: encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMTypePublicKey, Bytes: der}), nil
}

// LoadPublicKey reads a cosign public key file (PKIX "PUBLIC KEY" PEM).
func LoadPublicKey(path string) (*ecdsa.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading public key: %w", err)
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("loading public key %s: %w", path, err)
	}
	return pub, nil
}

// ParsePublicKey parses a PKIX "PUBLIC KEY" PEM block holding an ECDSA P-256
// key.
func ParsePublicKey(data []byte) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrKeyFormat)
	}
	if block.Type != PEMTypePublicKey {
		return nil, fmt.Errorf("%w: PEM block type %q (want %q)", ErrKeyFormat, block.Type, PEMTypePublicKey)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyFormat, err)
	}
	pub, ok := key.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: %s key (want ECDSA P-256)", ErrKeyFormat, keyKind(key))
	}
	return pub, nil
}
