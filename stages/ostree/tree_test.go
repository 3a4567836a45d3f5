package ostree

import (
	"strings"
	"testing"

	cfs "github.com/cfs-compose/cfs-compose/internal/composefs"
)

func testTree(t *testing.T, extra func(tr *cfs.Tree)) *cfs.Tree {
	t.Helper()
	tr := cfs.NewTree()
	add := func(name string, ino *cfs.Inode) {
		t.Helper()
		if err := tr.Add(name, ino); err != nil {
			t.Fatal(err)
		}
	}
	add("/", &cfs.Inode{Mode: cfs.TypeDir | 0o755})
	add("/etc", &cfs.Inode{Mode: cfs.TypeDir | 0o755, Mtime: cfs.Timespec{Sec: 5}})
	add("/etc/hostname", &cfs.Inode{Mode: cfs.TypeRegular | 0o644, Size: 2, Content: []byte("h\n")})
	add("/usr", &cfs.Inode{Mode: cfs.TypeDir | 0o755})
	add("/usr/bin", &cfs.Inode{Mode: cfs.TypeDir | 0o755})
	add("/usr/bin/a", &cfs.Inode{Mode: cfs.TypeRegular | 0o755, UID: 1, GID: 2, Size: 1, Content: []byte("a"),
		Xattrs: []cfs.Xattr{{Name: "security.capability", Value: "x"}}})
	if err := tr.Link("/etc/hard", "/usr/bin/a"); err != nil {
		t.Fatal(err)
	}
	if extra != nil {
		extra(tr)
	}
	return tr
}

func TestCommitTree(t *testing.T) {
	got, err := commitTree(testTree(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := got.Lookup("etc"); err == nil {
		t.Error("/etc is still in the commit")
	}
	d, err := got.Lookup("usr/etc")
	if err != nil || d.Mtime.Sec != 5 {
		t.Fatalf("/usr/etc: %v (mtime %+v)", err, d)
	}
	h, err := got.Lookup("usr/etc/hostname")
	if err != nil || string(h.Content) != "h\n" {
		t.Fatalf("/usr/etc/hostname: %v", err)
	}
	a, err := got.Lookup("usr/bin/a")
	if err != nil {
		t.Fatal(err)
	}
	l, err := got.Lookup("usr/etc/hard")
	if err != nil || l != a || a.Nlink != 2 {
		t.Errorf("/usr/etc/hard is not a hard link of /usr/bin/a: %v (nlink %d)", err, a.Nlink)
	}
	if v, ok := a.Xattr("security.capability"); !ok || v != "x" || a.UID != 1 || a.GID != 2 {
		t.Errorf("/usr/bin/a lost its owner or attributes: %+v", a)
	}
}

func TestCommitTreeErrors(t *testing.T) {
	tests := []struct {
		name  string
		extra func(tr *cfs.Tree)
		want  string
	}{
		{"device", func(tr *cfs.Tree) {
			_ = tr.Add("/usr/null", &cfs.Inode{Mode: cfs.TypeChar | 0o666, Rdev: 0x103})
		}, "/usr/null is a character device"},
		{"both etc", func(tr *cfs.Tree) {
			_ = tr.Add("/usr/etc", &cfs.Inode{Mode: cfs.TypeDir | 0o755})
		}, "both /etc and /usr/etc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := commitTree(testTree(t, tc.extra))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestOrigin(t *testing.T) {
	tests := []struct {
		image  string
		signed bool
		want   string
	}{
		{"docker://quay.io/fedora/fedora-coreos:stable", false, "container-image-reference=ostree-unverified-registry:quay.io/fedora/fedora-coreos:stable\n"},
		{"docker://quay.io/fedora/fedora-coreos:stable", true, "container-image-reference=ostree-image-signed:docker://quay.io/fedora/fedora-coreos:stable\n"},
		{"oci:/srv/layout:tag", false, "refspec=fedora/x86_64\n"},
	}
	for _, tc := range tests {
		got, err := originOf(tc.image, tc.signed, "fedora/x86_64")
		if err != nil || got != "[origin]\n"+tc.want {
			t.Errorf("originOf(%q, %t) = %q, %v; want %q", tc.image, tc.signed, got, err, "[origin]\n"+tc.want)
		}
	}
}
