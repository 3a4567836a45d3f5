package sign

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Config is the resolved configuration of one sign stage instance.
type Config struct {
	// Hint identifies the signing key: base64(SHA-256(PKIX DER of the
	// public key)), the Sigstore key hint. It is the only part of the
	// config in the cache key.
	Hint string `json:"hint"`
	// Key is the absolute path of the encrypted cosign private key.
	Key string `json:"key"`
	// Pub is the absolute path of the matching public key.
	Pub string `json:"pub"`
}

// Validate checks a config for internal consistency (no I/O).
func (c *Config) Validate() error {
	switch {
	case c.Hint == "":
		return errors.New("sign: no key hint")
	case !filepath.IsAbs(c.Key):
		return fmt.Errorf("sign: signing.key %q is not an absolute path", c.Key)
	case !filepath.IsAbs(c.Pub):
		return fmt.Errorf("sign: signing.pub %q is not an absolute path", c.Pub)
	}
	return nil
}

// CacheKey implements pipeline.Keyer: the key hint only, so moving the key
// files or building on another machine with the same key reuses the cache.
func (c *Config) CacheKey() any {
	return struct {
		Hint string `json:"hint"`
	}{c.Hint}
}
