package ostree

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// MetaSignEd25519 is the detached-metadata key under which ostree keeps a
// commit's ed25519 signatures (`ostree sign --sign-type=ed25519`): an
// array of 64-byte signatures ("aay") over the commit object's bytes.
const MetaSignEd25519 = "ostree.sign.ed25519"

// ErrSignature reports a commit signature that does not verify.
var ErrSignature = errors.New("ostree: no valid ed25519 signature")

// SignCommit returns the ed25519 signature of commit object data (the
// bytes of the .commit file), as `ostree sign` makes it: pure Ed25519
// over the whole object.
func SignCommit(data []byte, key ed25519.PrivateKey) []byte { return ed25519.Sign(key, data) }

// VerifyCommit reports whether one of the ed25519 signatures in the
// detached metadata meta verifies commit object data with one of keys
// (ostree's rule: any valid signature by any trusted key); it returns the
// index of the key that verified.
func VerifyCommit(data []byte, meta []MetaEntry, keys []ed25519.PublicKey) (int, error) {
	var sigs [][]byte
	for _, e := range meta {
		if e.Key == MetaSignEd25519 {
			bs, ok := e.Value.AsByteArrays()
			if !ok {
				return -1, fmt.Errorf("ostree: %s has type %s, want aay", MetaSignEd25519, e.Value.Type())
			}
			sigs = append(sigs, bs...)
		}
	}
	if len(sigs) == 0 {
		return -1, fmt.Errorf("%w: the commit has no %s signature", ErrSignature, MetaSignEd25519)
	}
	for _, sig := range sigs {
		for i, k := range keys {
			if len(sig) == ed25519.SignatureSize && ed25519.Verify(k, data, sig) {
				return i, nil
			}
		}
	}
	return -1, fmt.Errorf("%w: %d signature(s), none by the %d trusted key(s)", ErrSignature, len(sigs), len(keys))
}

// PublicKeyText returns a public key as ostree's key files and
// command-line key IDs write it: base64 of the 32 key bytes.
func PublicKeyText(k ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(k) }

// ParseSecretKeyText parses ostree's ed25519 secret key text (base64 of
// the 64-byte seed and public key, as `ostree sign` takes it).
func ParseSecretKeyText(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("ostree: ed25519 secret key: %w", err)
	}
	if len(b) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ostree: ed25519 secret key: %d bytes, want %d", len(b), ed25519.PrivateKeySize)
	}
	k := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
	if !k.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(b[ed25519.SeedSize:])) {
		return nil, errors.New("ostree: ed25519 secret key: its public half does not belong to its seed")
	}
	return k, nil
}

// WriteCommitMeta writes the detached metadata object of commit c
// (objects/XX/….commitmeta), replacing any; ostree writes it with mode
// 0644 as it does metadata objects.
func (w *Writer) WriteCommitMeta(c Checksum, meta []MetaEntry) error {
	if w.err != nil {
		return w.err
	}
	b, err := MarshalDict(meta)
	if err != nil {
		return w.fail(fmt.Errorf("ostree: detached metadata of %s: %w", c, err))
	}
	if err := w.fanout(c); err != nil {
		return w.fail(err)
	}
	tmp := filepath.Join(w.root, "tmp", tmpName())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return w.fail(fmt.Errorf("ostree: detached metadata of %s: %w", c, err))
	}
	if err := unix.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return w.fail(fmt.Errorf("ostree: detached metadata of %s: %w", c, err))
	}
	if err := atomicfile.Publish(tmp, filepath.Join(w.root, filepath.FromSlash(ObjectPath(c, ObjectCommitMeta)))); err != nil {
		return w.fail(fmt.Errorf("ostree: detached metadata of %s: %w", c, err))
	}
	return nil
}

// ReadCommitMeta loads the detached metadata of commit c; it returns an
// error wrapping [ErrNotExist] when there is none.
func (r *Reader) ReadCommitMeta(c Checksum) ([]MetaEntry, error) {
	p := ObjectPath(c, ObjectCommitMeta)
	b, err := r.readSmall(p)
	if err != nil {
		return nil, err
	}
	m, err := ParseDict(b)
	if err != nil {
		return nil, fmt.Errorf("ostree: %s: %w", p, err)
	}
	return m, nil
}

// ParseSigningKey parses an ed25519 commit-signing key: PKCS#8 PEM
// ("PRIVATE KEY", as `openssl genpkey -algorithm ed25519` writes it) or
// ostree's base64 secret-key text ([ParseSecretKeyText]).
func ParseSigningKey(data []byte) (ed25519.PrivateKey, error) {
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("ostree: signing key: PEM block %q, want an unencrypted PKCS#8 \"PRIVATE KEY\"", blk.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ostree: signing key: %w", err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("ostree: signing key: a %T, ostree signs with ed25519", k)
		}
		return ek, nil
	}
	return ParseSecretKeyText(strings.TrimSpace(string(data)))
}

// LoadSigningKey reads an ed25519 commit-signing key file
// ([ParseSigningKey]).
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseSigningKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// RootBindingKeyPath is where ostree-prepare-root reads the public keys a
// signed composefs commit must verify with (its default
// composefs.keypath), in the initramfs.
const RootBindingKeyPath = "etc/ostree/initramfs-root-binding.key"
