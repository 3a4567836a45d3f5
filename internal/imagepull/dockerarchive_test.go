package imagepull

import (
	"context"
	"path/filepath"
	"testing"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"

	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// TestDockerArchive pulls what `podman save` and `skopeo copy …
// docker-archive:` write (made here by containers-image's own
// docker-archive destination) and gets the same tree as from the OCI
// layout it was copied from.
func TestDockerArchive(t *testing.T) {
	layout := "oci:" + ti.Build(t, ti.Sample(ti.Gzip)) + ":" + ti.Tag
	archive := filepath.Join(t.TempDir(), "image.tar")
	src, err := ParseReference(layout)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := ParseReference("docker-archive:" + archive + ":example.org/test:1")
	if err != nil {
		t.Fatal(err)
	}
	if dst.Transport != TransportDockerArchive || !dst.Local() {
		t.Fatalf("reference %+v", dst)
	}
	pc, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Destroy()
	if _, err := copy.Image(context.Background(), pc, dst.Ref, src.Ref, nil); err != nil {
		t.Fatalf("writing the docker archive: %v", err)
	}
	fromLayout, err := pullLocal(t, layout, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fromArchive, err := pullLocal(t, "docker-archive:"+archive, ImportOptions{})
	if err != nil {
		t.Fatalf("pulling the docker archive: %v", err)
	}
	a, _ := imageDigest(t, fromLayout.Tree)
	b, _ := imageDigest(t, fromArchive.Tree)
	if a != b {
		t.Errorf("docker-archive tree %s, OCI layout tree %s", b, a)
	}
}

func TestUnknownTransport(t *testing.T) {
	for _, s := range []string{"podman-archive:x.tar", "docker-daemon:x", "Docker://quay.io/x"} {
		if _, err := ParseReference(s); err == nil {
			t.Errorf("ParseReference(%q) accepted an unknown transport", s)
		}
	}
}
