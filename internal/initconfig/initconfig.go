// Package initconfig is the configuration file cfs-init, the builtin
// initramfs /init, reads from the initramfs (etc/cfs-init.json), and the
// detached composefs digest signature format it verifies.
//
// The file is JSON with a version field; unknown fields are rejected so a
// newer builder cannot silently hand an older init options it ignores.
//
// # Digest signatures
//
// With Signed set, the root partition holds composefs/images/<hex>.sig next
// to the image: a signature by the key in PublicKey over the 64 ASCII
// characters of the lower-case hex fs-verity digest (no newline). ECDSA
// P-256 keys sign the SHA-256 of that message (ASN.1 DER signature); Ed25519
// keys sign the message itself. The file holds the signature raw or
// base64-encoded — the latter is exactly what `cosign sign-blob` writes for
// a file holding the digest string, so cosign keys work unchanged.
//
// # Security
//
// Parse accepts untrusted bytes and validates every field. Verification
// uses the standard library only.
package initconfig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Path is where the builtin initramfs carries the file.
const Path = "etc/cfs-init.json"

// ModuleDir is where the builtin initramfs carries the modules.
const ModuleDir = "lib/modules"

// Verity modes (as in the manifest's composefs { verity = ... }).
const (
	VerityNone    = "none"
	VerityEnable  = "enable"
	VerityRequire = "require"
)

// Errors callers can test for.
var (
	// ErrBadSignature means a digest signature does not verify.
	ErrBadSignature = errors.New("initconfig: composefs digest signature does not verify")
)

// Config is the cfs-init configuration.
type Config struct {
	Version int `json:"version"` // 1
	// Modules are module file names under lib/modules, in load order.
	Modules []string `json:"modules"`
	// Composefs selects the composefs root (true) or the plain
	// deployment tree (false).
	Composefs bool `json:"composefs"`
	// Verity is VerityNone, VerityEnable or VerityRequire: the overlayfs
	// verity= option, and with enable/require, fs-verity is enabled on
	// objects lacking it on first boot. The kernel command line
	// cfs.verity= may raise it, never lower it.
	Verity string `json:"verity"`
	// Signed requires a valid composefs/images/<hex>.sig by PublicKey.
	Signed bool `json:"signed"`
	// PublicKey is a PEM "PUBLIC KEY" (PKIX) block: ECDSA P-256 or Ed25519.
	PublicKey string `json:"public_key,omitempty"`
	// RootLabel is the GPT partition name of the root partition
	// (default "root"); the root partition type GUID is the fallback.
	RootLabel string `json:"root_label"`
	// Ostree boots an ostree deployment (deploy.backend = "ostree") the
	// way ostree-prepare-root does: the deployment is the one ostree= on
	// the kernel command line names, and with Composefs its .ostree.cfs
	// is mounted over the repository's objects (docs/boot-layout.md).
	Ostree bool `json:"ostree,omitempty"`
}

// Version is the configuration version this package reads and writes.
const Version = 1

// Parse reads and validates a configuration file.
func Parse(data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("initconfig: %w", err)
	}
	if dec.More() {
		return Config{}, errors.New("initconfig: trailing data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks the fields.
func (c Config) Validate() error {
	if c.Version != Version {
		return fmt.Errorf("initconfig: version %d, want %d", c.Version, Version)
	}
	switch c.Verity {
	case VerityNone, VerityEnable, VerityRequire:
	default:
		return fmt.Errorf("initconfig: verity %q (want none, enable or require)", c.Verity)
	}
	for _, m := range c.Modules {
		if m == "" || strings.ContainsAny(m, "/\x00") || !strings.HasSuffix(m, ".ko") {
			return fmt.Errorf("initconfig: module %q is not a plain .ko file name", m)
		}
	}
	if c.RootLabel == "" {
		return errors.New("initconfig: root_label is empty")
	}
	if c.Signed && c.Ostree {
		return errors.New("initconfig: signed is not supported with ostree (ostree signs commits, not composefs digests)")
	}
	if c.Signed {
		if !c.Composefs {
			return errors.New("initconfig: signed needs composefs")
		}
		if _, err := ParsePublicKey([]byte(c.PublicKey)); err != nil {
			return err
		}
	}
	return nil
}

// Marshal returns the file contents (indented JSON, newline-terminated).
func (c Config) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParsePublicKey parses a PEM PKIX public key and accepts ECDSA P-256 and
// Ed25519 keys only.
func ParsePublicKey(pemData []byte) (crypto.PublicKey, error) {
	b, _ := pem.Decode(pemData)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("initconfig: public_key is not a PEM \"PUBLIC KEY\" block")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("initconfig: public_key: %w", err)
	}
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("initconfig: public_key: ECDSA key is not P-256")
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("initconfig: public_key: unsupported key type %T (want ECDSA P-256 or Ed25519)", k)
	}
	return k, nil
}

func checkHex(digestHex string) error {
	if len(digestHex) != 64 || strings.ToLower(digestHex) != digestHex {
		return fmt.Errorf("initconfig: digest %q is not 64 lower-case hex digits", digestHex)
	}
	if _, err := hex.DecodeString(digestHex); err != nil {
		return fmt.Errorf("initconfig: digest %q: %w", digestHex, err)
	}
	return nil
}

// SignDigest signs digestHex with an ECDSA P-256 or Ed25519 private key and
// returns the base64 signature file contents.
func SignDigest(key crypto.Signer, digestHex string) ([]byte, error) {
	if err := checkHex(digestHex); err != nil {
		return nil, err
	}
	msg := []byte(digestHex)
	var sig []byte
	var err error
	switch key.Public().(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		sig, err = key.Sign(rand.Reader, h[:], crypto.SHA256)
	case ed25519.PublicKey:
		sig, err = key.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		return nil, fmt.Errorf("initconfig: unsupported signing key %T", key.Public())
	}
	if err != nil {
		return nil, fmt.Errorf("initconfig: signing digest: %w", err)
	}
	return []byte(base64.StdEncoding.EncodeToString(sig)), nil
}

// VerifyDigest checks a signature file (raw or base64) over digestHex.
func VerifyDigest(pub crypto.PublicKey, digestHex string, sigFile []byte) error {
	if err := checkHex(digestHex); err != nil {
		return err
	}
	sig := sigFile
	if s := strings.TrimSpace(string(sigFile)); s != "" {
		if dec, err := base64.StdEncoding.DecodeString(s); err == nil {
			sig = dec
		}
	}
	msg := []byte(digestHex)
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		if ecdsa.VerifyASN1(k, h[:], sig) {
			return nil
		}
	case ed25519.PublicKey:
		if len(sig) == ed25519.SignatureSize && ed25519.Verify(k, msg, sig) {
			return nil
		}
	default:
		return fmt.Errorf("initconfig: unsupported public key %T", pub)
	}
	return ErrBadSignature
}
