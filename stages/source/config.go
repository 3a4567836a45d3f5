package source

import "github.com/cfs-compose/cfs-compose/internal/imagepull"

// Config is the resolved configuration of one source stage instance: what
// Plan returns and Run reads. Tags are pinned to digests, the policy file
// and keys are fingerprinted, defaults are explicit.
type Config struct {
	// Image is the reference as the manifest wrote it.
	Image string `json:"image"`
	// Pinned is the reference pinned to ManifestDigest (what Run opens).
	Pinned string `json:"pinned"`
	// Transport is the reference's transport (docker, oci, oci-archive, dir).
	Transport string `json:"transport"`
	// Identity is the machine-independent name of the image: the docker
	// repository, or for a local image its transport and manifest digest
	// ("oci@sha256:…").
	Identity string `json:"identity"`
	// Arch is the architecture being built (x86_64, aarch64).
	Arch string `json:"arch"`
	// ManifestDigest is the digest the reference resolved to (a manifest
	// list for multi-arch images).
	ManifestDigest string `json:"manifest_digest"`
	// InstanceDigest and ConfigDigest are the arch's manifest and its
	// configuration; empty when planned offline from a pinned manifest
	// list (Run then picks the instance).
	InstanceDigest string `json:"instance_digest,omitempty"`
	ConfigDigest   string `json:"config_digest,omitempty"`
	// Policy is the resolved signature policy.
	Policy imagepull.PolicySpec `json:"policy"`
	// Kind is manifest.SourceContainer or manifest.SourceOstree.
	Kind string `json:"kind"`
	// Kernel selects the kernel version; empty means the only one.
	Kernel string `json:"kernel,omitempty"`
	// Lints holds the manifest settings the lints compare against.
	Lints LintSettings `json:"lints"`
}

// CacheKey implements pipeline.Keyer: the config without machine-local
// paths (local image paths, the policy file and key paths). The digests
// identify the content instead.
func (c *Config) CacheKey() any {
	k := *c
	k.Image, k.Pinned = "", ""
	k.Policy.Path, k.Policy.SignedBy = "", ""
	if k.Transport == imagepull.TransportDocker {
		k.Pinned = k.Identity + "@" + k.ManifestDigest
	}
	k.Lints.UKIStub = stubKey(k.Lints.UKIStub)
	return k
}

// stubKey keeps "image" but hides a host stub path (its content is the
// UKI stage's business).
func stubKey(s string) string {
	if s == "image" || s == "" {
		return s
	}
	return "host"
}
