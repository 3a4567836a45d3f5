package imagepull

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"

	// The transports cfs-compose reads from; each registers itself.
	_ "go.podman.io/image/v5/directory"
	_ "go.podman.io/image/v5/docker/archive"
	_ "go.podman.io/image/v5/oci/archive"
	_ "go.podman.io/image/v5/oci/layout"
)

// Transport names accepted in image references.
const (
	TransportDocker     = "docker"
	TransportOCI        = "oci"
	TransportOCIArchive = "oci-archive"
	TransportDir        = "dir"
	// TransportDockerArchive is what `podman save` and
	// `skopeo copy … docker-archive:FILE` write: a docker-save tarball.
	TransportDockerArchive = "docker-archive"
)

// Transports lists the transports ParseReference accepts, in the form a
// reference starts with.
func Transports() []string {
	return []string{TransportDocker + "://", TransportOCI + ":", TransportOCIArchive + ":", TransportDockerArchive + ":", TransportDir + ":"}
}

// ErrBadReference reports an image reference that cannot be parsed.
var ErrBadReference = errors.New("imagepull: invalid image reference")

// Reference is a parsed image reference: a transport and the
// transport-specific part, plus the digest the reference is pinned to.
type Reference struct {
	// Transport is one of TransportDocker, TransportOCI,
	// TransportOCIArchive, TransportDir.
	Transport string
	// Ref is the containers-image reference. For docker references pinned
	// by digest it names the digest (never the tag).
	Ref types.ImageReference
	// Pin is the manifest digest the reference must resolve to; empty when
	// the reference is a plain tag. Docker references carry it in Ref as
	// well; local transports (which cannot address manifests by digest)
	// check it after reading the manifest.
	Pin digest.Digest
	// Tag is the tag of a docker reference that was pinned by digest as
	// "name:tag@sha256:…" (informational).
	Tag string
}

// ParseReference parses "TRANSPORT:REST" as written in a manifest or on the
// command line: "docker://quay.io/fedora/fedora-coreos:stable",
// "docker://quay.io/x@sha256:…", "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]",
// "docker-archive:FILE[:NAME:TAG]" or "dir:DIR". A trailing "@sha256:<hex>" pins any transport to a manifest
// digest. Relative paths are kept as written.
func ParseReference(s string) (*Reference, error) {
	name, rest, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return nil, fmt.Errorf("%w %q: want TRANSPORT:NAME (docker://…, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE, dir:DIR)", ErrBadReference, s)
	}
	r := &Reference{Transport: name}
	switch name {
	case TransportDocker:
		if !strings.HasPrefix(rest, "//") {
			return nil, fmt.Errorf("%w %q: docker references start with docker://", ErrBadReference, s)
		}
		named, err := reference.ParseNormalizedNamed(strings.TrimPrefix(rest, "//"))
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrBadReference, s, err)
		}
		if d, ok := named.(reference.Digested); ok {
			r.Pin = d.Digest()
			if t, ok := named.(reference.Tagged); ok {
				r.Tag = t.Tag()
			}
			named, err = reference.WithDigest(reference.TrimNamed(named), d.Digest())
			if err != nil {
				return nil, fmt.Errorf("%w %q: %w", ErrBadReference, s, err)
			}
		} else {
			named = reference.TagNameOnly(named)
		}
		ref, err := docker.NewReference(named)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrBadReference, s, err)
		}
		r.Ref = ref
		return r, nil
	case TransportOCI, TransportOCIArchive, TransportDockerArchive, TransportDir:
		if i := strings.LastIndex(rest, "@sha256:"); i >= 0 {
			d, err := digest.Parse(rest[i+1:])
			if err != nil {
				return nil, fmt.Errorf("%w %q: pinned digest: %w", ErrBadReference, s, err)
			}
			r.Pin = d
			rest = rest[:i]
		}
		if rest == "" {
			return nil, fmt.Errorf("%w %q: empty path", ErrBadReference, s)
		}
		t := transports.Get(name)
		if t == nil {
			return nil, fmt.Errorf("%w %q: transport %s not available", ErrBadReference, s, name)
		}
		ref, err := t.ParseReference(rest)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrBadReference, s, err)
		}
		r.Ref = ref
		return r, nil
	default:
		return nil, fmt.Errorf("%w %q: unknown transport %q (want docker, oci, oci-archive, docker-archive or dir)", ErrBadReference, s, name)
	}
}

// Local reports whether the reference names a file on this machine (and
// so needs no network).
func (r *Reference) Local() bool { return r.Transport != TransportDocker }

// String returns the reference in TRANSPORT:NAME form, with the pin.
func (r *Reference) String() string {
	s := r.Transport + ":" + r.Ref.StringWithinTransport()
	if r.Local() && r.Pin != "" {
		s += "@" + r.Pin.String()
	}
	return s
}

// Pinned returns the reference pinned to manifest digest d: for docker,
// "docker://NAME@d" (the tag is kept in Tag); for local transports the
// same reference with Pin set.
func (r *Reference) Pinned(d digest.Digest) (*Reference, error) {
	cp := *r
	cp.Pin = d
	if r.Transport != TransportDocker {
		return &cp, nil
	}
	named := r.Ref.DockerReference()
	if t, ok := named.(reference.Tagged); ok && cp.Tag == "" {
		cp.Tag = t.Tag()
	}
	pinned, err := reference.WithDigest(reference.TrimNamed(named), d)
	if err != nil {
		return nil, fmt.Errorf("pinning %s: %w", r, err)
	}
	if cp.Ref, err = docker.NewReference(pinned); err != nil {
		return nil, fmt.Errorf("pinning %s: %w", r, err)
	}
	return &cp, nil
}

// Identity returns the name that identifies the image independently of
// this machine: the repository name for docker references; "" for local
// files, whose paths must stay out of cache keys and which only their
// content digest identifies (the source stage records that).
func (r *Reference) Identity() string {
	if r.Transport == TransportDocker {
		return "docker://" + reference.TrimNamed(r.Ref.DockerReference()).String()
	}
	return ""
}
