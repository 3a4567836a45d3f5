package sign

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

// CacheKey implements pipeline.Keyer: the key hint only, so moving the key
// files or building on another machine with the same key reuses the cache.
func (c *Config) CacheKey() any {
	return struct {
		Hint string `json:"hint"`
	}{c.Hint}
}
