package imagepull

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParseReference(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		in        string
		transport string
		str       string // String()
		pin       string
		tag       string
		identity  string
		wantErr   string
	}{
		{in: "docker://quay.io/fedora/fedora-coreos:stable", transport: "docker", str: "docker://quay.io/fedora/fedora-coreos:stable", identity: "docker://quay.io/fedora/fedora-coreos"},
		{in: "docker://quay.io/fedora/fedora-bootc", transport: "docker", str: "docker://quay.io/fedora/fedora-bootc:latest", identity: "docker://quay.io/fedora/fedora-bootc"},
		{in: "docker://fedora:41", transport: "docker", str: "docker://fedora:41", identity: "docker://docker.io/library/fedora"},
		{in: "docker://quay.io/x/y@" + d, transport: "docker", str: "docker://quay.io/x/y@" + d, pin: d, identity: "docker://quay.io/x/y"},
		{in: "docker://quay.io/x/y:41@" + d, transport: "docker", str: "docker://quay.io/x/y@" + d, pin: d, tag: "41", identity: "docker://quay.io/x/y"},
		{in: "oci:/srv/layout:latest", transport: "oci", str: "oci:/srv/layout:latest", identity: ""},
		{in: "oci:/srv/layout", transport: "oci", str: "oci:/srv/layout:", identity: ""},
		{in: "oci:/srv/layout:tag@" + d, transport: "oci", str: "oci:/srv/layout:tag@" + d, pin: d, identity: ""},
		{in: "oci-archive:/srv/img.tar:v1", transport: "oci-archive", str: "oci-archive:/srv/img.tar:v1", identity: ""},
		{in: "dir:/srv/dir", transport: "dir", str: "dir:/srv/dir", identity: ""},
		{in: "quay.io/fedora/fedora", wantErr: "want TRANSPORT:NAME"},
		{in: "quay.io/fedora/fedora:41", wantErr: `unknown transport "quay.io/fedora/fedora"`},
		{in: "docker:quay.io/x", wantErr: "docker references start with docker://"},
		{in: "docker://UPPER/x", wantErr: "invalid image reference"},
		{in: "docker://x@sha256:123", wantErr: "invalid image reference"},
		{in: "containers-storage:x", wantErr: `unknown transport "containers-storage"`},
		{in: "oci:", wantErr: "empty path"},
		{in: "oci:/x@sha256:zz", wantErr: "pinned digest"},
		{in: "nocolon", wantErr: "want TRANSPORT:NAME"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseReference(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrBadReference) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Transport != tc.transport || r.String() != tc.str || string(r.Pin) != tc.pin || r.Tag != tc.tag || r.Identity() != tc.identity {
				t.Errorf("got transport %s str %s pin %s tag %s identity %s", r.Transport, r, r.Pin, r.Tag, r.Identity())
			}
			if r.Local() == (tc.transport == "docker") {
				t.Errorf("Local() = %v", r.Local())
			}
			// Pinning and reparsing round-trips.
			p, err := r.Pinned(digest.Digest(d))
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseReference(p.String())
			if err != nil || again.Pin != digest.Digest(d) || again.String() != p.String() {
				t.Errorf("pinned %s reparsed as %v, %v", p, again, err)
			}
		})
	}
}
