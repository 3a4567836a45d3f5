package sysroot

import (
	"fmt"
	"strings"
)

// Verify says how an updater checks a container image's signatures; it
// selects the signature-source prefix of an [ImageRef].
type Verify int

const (
	// VerifyNone checks no signature: "ostree-unverified-registry:IMAGE".
	VerifyNone Verify = iota
	// VerifyPolicy checks signatures as the containers policy
	// (/etc/containers/policy.json) requires:
	// "ostree-image-signed:docker://IMAGE".
	VerifyPolicy
	// VerifyOstreeRemote checks signatures with the keys of an ostree
	// remote ([ImageRef.Remote]): "ostree-remote-image:REMOTE:docker://IMAGE".
	VerifyOstreeRemote
)

// ImageRef is the container image a deployment follows, in the form
// ostree-rs-ext (bootc, rpm-ostree) records it in the origin file. Only
// the registry transport is supported.
type ImageRef struct {
	// Image is the registry reference without transport, e.g.
	// "quay.io/fedora/fedora-bootc:42".
	Image string
	// Verify selects how signatures are checked.
	Verify Verify
	// Remote is the ostree remote of [VerifyOstreeRemote].
	Remote string
}

// String returns the reference as ostree-rs-ext formats an
// OstreeImageReference: "ostree-unverified-registry:IMAGE",
// "ostree-image-signed:docker://IMAGE" or
// "ostree-remote-image:REMOTE:docker://IMAGE".
func (r ImageRef) String() string {
	switch r.Verify {
	case VerifyPolicy:
		return "ostree-image-signed:docker://" + r.Image
	case VerifyOstreeRemote:
		return "ostree-remote-image:" + r.Remote + ":docker://" + r.Image
	default:
		return "ostree-unverified-registry:" + r.Image
	}
}

func (r ImageRef) validate() error {
	if r.Image == "" || strings.HasPrefix(r.Image, "docker://") || strings.ContainsAny(r.Image, " \t\r\n\\") {
		return fmt.Errorf("sysroot: invalid image reference %q (want a registry reference without transport)", r.Image)
	}
	switch r.Verify {
	case VerifyNone, VerifyPolicy:
		if r.Remote != "" {
			return fmt.Errorf("sysroot: image reference %q: a remote needs VerifyOstreeRemote", r.Image)
		}
	case VerifyOstreeRemote:
		if r.Remote == "" || strings.ContainsAny(r.Remote, ": \t\r\n\\") {
			return fmt.Errorf("sysroot: invalid ostree remote %q", r.Remote)
		}
	default:
		return fmt.Errorf("sysroot: image reference %q: unknown verification %d", r.Image, r.Verify)
	}
	return nil
}

// OriginKeyContainer is the origin-file key (in group "origin") of the
// container image a deployment follows (ostree-rs-ext's ORIGIN_CONTAINER).
const OriginKeyContainer = "container-image-reference"

// ContainerOrigin returns the origin file of a deployment that follows the
// container image r, as bootc writes it:
//
//	[origin]
//	container-image-reference=ostree-unverified-registry:quay.io/fedora/fedora-bootc:42
func ContainerOrigin(r ImageRef) (string, error) {
	if err := r.validate(); err != nil {
		return "", err
	}
	return "[origin]\n" + OriginKeyContainer + "=" + r.String() + "\n", nil
}

// RefspecOrigin returns the origin file `ostree admin deploy REFSPEC`
// writes: "[origin]\nrefspec=REFSPEC\n".
func RefspecOrigin(refspec string) string {
	return "[origin]\nrefspec=" + refspec + "\n"
}
