package artifacts

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Digest is a content digest in OCI form, "sha256:<64 hex>".
type Digest string

// ErrBadDigest reports a malformed digest string.
var ErrBadDigest = errors.New("artifacts: malformed digest")

// NewDigest returns the digest of a raw sha256 sum.
func NewDigest(sum []byte) Digest { return Digest("sha256:" + hex.EncodeToString(sum)) }

// DigestBytes returns the sha256 digest of b.
func DigestBytes(b []byte) Digest {
	s := sha256.Sum256(b)
	return NewDigest(s[:])
}

// ParseDigest validates s and returns it as a Digest.
func ParseDigest(s string) (Digest, error) {
	d := Digest(s)
	if err := d.Validate(); err != nil {
		return "", err
	}
	return d, nil
}

// Validate reports whether d is a well-formed sha256 digest.
func (d Digest) Validate() error {
	hx, ok := strings.CutPrefix(string(d), "sha256:")
	if !ok || len(hx) != 64 {
		return fmt.Errorf("%w: %q", ErrBadDigest, string(d))
	}
	for _, c := range hx {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: %q", ErrBadDigest, string(d))
		}
	}
	return nil
}

// Hex returns the hex part of d.
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), "sha256:") }

// Short returns the first 12 hex characters, for people.
func (d Digest) Short() string {
	h := d.Hex()
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// String returns d as text.
func (d Digest) String() string { return string(d) }

// Descriptor describes one stored artifact.
type Descriptor struct {
	Digest    Digest `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
	// Tree is true when the artifact is a directory tree (trees/), not a blob.
	Tree bool `json:"tree,omitempty"`
}

// Media types of the artifacts the stages exchange.
const (
	MediaTypeDumpfile  = "application/vnd.composefs.dumpfile"
	MediaTypeComposefs = "application/vnd.composefs.erofs"
	MediaTypeJSON      = "application/json"
	MediaTypeLog       = "text/plain; charset=utf-8"
	MediaTypeOctet     = "application/octet-stream"
	MediaTypeTree      = "application/vnd.cfs-compose.tree"
)
