package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/imagepull"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// streamedDigest is the composefs digest of an image reference, computed
// through the library.
func streamedDigest(t *testing.T, ref, arch string) string {
	t.Helper()
	r, err := imagepull.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	p, err := imagepull.Pull(context.Background(), r, &imagepull.PullOptions{Arch: arch})
	if err != nil {
		t.Fatal(err)
	}
	d := fsverity.New()
	if err := composefs.WriteImage(d, p.Tree, nil); err != nil {
		t.Fatal(err)
	}
	return fsverity.Hex(d.Sum())
}

func TestComposefsCreateFromImage(t *testing.T) {
	t.Setenv("CONTAINERS_POLICY_JSON", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	amd := ti.Sample(ti.Gzip)
	arm := ti.Sample(ti.Zstd)
	arm.Architecture = "arm64"
	arm.Layers = arm.Layers[:2]
	layout := ti.Build(t, amd, arm)
	archive := filepath.Join(t.TempDir(), "image.tar")
	if out, err := exec.Command("tar", "-C", layout, "-cf", archive, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := closed.Addr().String()
	closed.Close()
	amdDigest := streamedDigest(t, "oci:"+layout+":"+ti.Tag, "x86_64")
	armDigest := streamedDigest(t, "oci:"+layout+":"+ti.Tag, "aarch64")
	if amdDigest == armDigest {
		t.Fatal("arches have the same digest")
	}
	tmp := t.TempDir()
	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    string // exact, when set
		stderr    string // substring
		objects   bool   // the digest store must hold the objects
		imageFile string
	}{
		{name: "oci layout with digest store", args: []string{"--print-digest", "--digest-store", tmp + "/store1", "--arch", "x86_64", "oci:" + layout + ":" + ti.Tag, tmp + "/a.cfs"}, stdout: amdDigest + "\n", objects: true, imageFile: tmp + "/a.cfs"},
		{name: "oci layout, other arch", args: []string{"--print-digest", "--arch", "arm64", "oci:" + layout + ":" + ti.Tag, tmp + "/b.cfs"}, stdout: armDigest + "\n", imageFile: tmp + "/b.cfs"},
		{name: "oci-archive", args: []string{"--print-digest", "--arch", "amd64", "oci-archive:" + archive + ":" + ti.Tag, tmp + "/c.cfs"}, stdout: amdDigest + "\n", imageFile: tmp + "/c.cfs"},
		{name: "unknown tag", args: []string{"--arch", "x86_64", "oci:" + layout + ":nope", tmp + "/d.cfs"}, code: 1, stderr: "image not found"},
		{name: "unsupported arch", args: []string{"--arch", "ppc64le", "oci:" + layout + ":" + ti.Tag, tmp + "/e.cfs"}, code: 2, stderr: "--arch"},
		{name: "from-file with an image", args: []string{"--from-file", "oci:" + layout + ":" + ti.Tag, tmp + "/f.cfs"}, code: 2, stderr: "do not apply to a container image"},
		{name: "arch with a directory", args: []string{"--arch", "x86_64", layout, tmp + "/g.cfs"}, code: 2, stderr: "apply to container image sources"},
		{name: "unreachable registry", args: []string{"docker://" + dead + "/x:1", tmp + "/h.cfs"}, code: 1, stderr: "registry unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"composefs", "create"}, tc.args...), strings.NewReader(""), &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if tc.stdout != "" && stdout.String() != tc.stdout {
				t.Errorf("stdout = %q, want %q", stdout.String(), tc.stdout)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr = %q, want %q", stderr.String(), tc.stderr)
			}
			if tc.imageFile != "" {
				b, err := os.ReadFile(tc.imageFile)
				if err != nil {
					t.Fatal(err)
				}
				if got := fsverity.Hex(fsverity.Sum(b)); got+"\n" != tc.stdout {
					t.Errorf("image file digest %s, printed %s", got, tc.stdout)
				}
			}
			if tc.objects {
				var dump bytes.Buffer
				if code := run([]string{"composefs", "missing-objects", "--basedir", tmp + "/store1", tc.imageFile}, strings.NewReader(""), &dump, &stderr); code != 0 || dump.Len() != 0 {
					t.Errorf("missing objects (exit %d): %s %s", code, dump.String(), stderr.String())
				}
			}
		})
	}
}
