package uki

import (
	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// StubFromImage is the Stub value that takes the EFI stub from the image.
const StubFromImage = manifest.StubFromImage

// Config is the resolved configuration of one uki stage instance: what
// Plan returns and Run reads.
type Config struct {
	// Arch is the architecture being built.
	Arch *arch.Arch `json:"arch"`
	// Cmdline is the manifest's kernel.cmdline, in order.
	Cmdline []string `json:"cmdline"`
	// Composefs says whether the composefs stage runs; its digest then
	// goes on the command line.
	Composefs bool `json:"composefs"`
	// Ostree says the target uses the ostree deployment backend: the
	// command line is the ostree stage's deployment's (kernel.cmdline,
	// root=, rw and ostree=) instead of kernel.cmdline and composefs=.
	Ostree bool `json:"ostree,omitempty"`
	// OstreeComposefs (ostree backend, composefs on, builtin initramfs)
	// appends composefs=<digest> of the deployment's .ostree.cfs to the
	// deployment's command line: the UKI pins the digest, and cfs-init
	// boots only a deployment whose commit records that digest and whose
	// image measures to it (docs/boot-layout.md).
	OstreeComposefs bool `json:"ostree_composefs,omitempty"`
	// Stub is StubFromImage or the absolute path of an EFI stub on the
	// build host; StubSHA256 is the host stub's hex SHA-256 (the cache key
	// keeps it and drops the path).
	Stub       string `json:"stub"`
	StubSHA256 string `json:"stub_sha256,omitempty"`
	// SBAT is extra SBAT CSV lines (uki.sbat); empty means ukify's default
	// UKI line.
	SBAT string `json:"sbat"`
	// Filename is the published name: <Product>-<Name>-<Release>.<arch>.efi.
	Filename string `json:"filename"`
	// SecureBoot is the db key the UKI is Authenticode-signed with; nil
	// means unsigned.
	SecureBoot *SecureBoot `json:"secureboot,omitempty"`
}

// SecureBoot names the Secure Boot db key pair.
type SecureBoot struct {
	Key  string `json:"key"`  // absolute path of the db private key (PEM)
	Cert string `json:"cert"` // absolute path of the db certificate (PEM or DER)
	// CertFingerprint is the hex SHA-256 of the certificate's DER: it
	// identifies the key in the cache key and in compose.json.
	CertFingerprint string `json:"cert_fingerprint"`
}

// CacheKey implements pipeline.Keyer: the config without host paths. The
// host stub is identified by its SHA-256 and the signing key by its
// certificate's fingerprint.
func (c *Config) CacheKey() any {
	k := *c
	if k.Stub != StubFromImage {
		k.Stub = "host"
	}
	if c.SecureBoot != nil {
		sb := *c.SecureBoot
		sb.Key, sb.Cert = "", ""
		k.SecureBoot = &sb
	}
	return k
}
