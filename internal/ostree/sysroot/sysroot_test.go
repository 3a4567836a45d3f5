package sysroot

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/ostree"
)

func TestImageRef(t *testing.T) {
	tests := []struct {
		name string
		ref  ImageRef
		want string // origin line value; "" for an error
	}{
		{"unverified", ImageRef{Image: "quay.io/fedora/fedora-bootc:42"}, "ostree-unverified-registry:quay.io/fedora/fedora-bootc:42"},
		{"policy", ImageRef{Image: "quay.io/fedora/fedora-bootc:42", Verify: VerifyPolicy}, "ostree-image-signed:docker://quay.io/fedora/fedora-bootc:42"},
		{"remote", ImageRef{Image: "quay.io/x/y@sha256:00", Verify: VerifyOstreeRemote, Remote: "fedora"}, "ostree-remote-image:fedora:docker://quay.io/x/y@sha256:00"},
		{"empty", ImageRef{}, ""},
		{"transport", ImageRef{Image: "docker://quay.io/x/y"}, ""},
		{"newline", ImageRef{Image: "quay.io/x/y\n[evil]"}, ""},
		{"remote without verify", ImageRef{Image: "quay.io/x/y", Remote: "r"}, ""},
		{"verify without remote", ImageRef{Image: "quay.io/x/y", Verify: VerifyOstreeRemote}, ""},
		{"unknown verify", ImageRef{Image: "quay.io/x/y", Verify: 7}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ContainerOrigin(tt.ref)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ContainerOrigin(%+v) = %q, want an error", tt.ref, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "[origin]\ncontainer-image-reference=" + tt.want + "\n"; got != want {
				t.Errorf("ContainerOrigin = %q, want %q", got, want)
			}
		})
	}
}

func TestParseOSRelease(t *testing.T) {
	got := parseOSRelease("NAME=Fedora\n# PRETTY_NAME=no\nPRETTY_NAME=\"Fedora Linux 42 (Adams)\"\nID='fedora'\n" +
		"A=a\\ b\nB=\"q\\\"uote\\$ \\x\"\nC='unterminated\nD=\"x\"'y'z\n=empty\nnoequals\nE=\nNAME=later\n")
	want := map[string]string{
		"NAME": "later", "PRETTY_NAME": "Fedora Linux 42 (Adams)", "ID": "fedora",
		"A": "a b", "B": "q\"uote$ \\x", "D": "xyz", "": "empty", "E": "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["C"]; ok || len(got) != len(want) {
		t.Errorf("parsed %q", got)
	}
}

func TestReplaceKarg(t *testing.T) {
	tests := []struct {
		kargs []string
		arg   string
		want  string
	}{
		{nil, "ostree=/x", "ostree=/x"},
		{[]string{"a", "b=1"}, "ostree=/x", "a b=1 ostree=/x"},
		{[]string{"init=/a", "rw", "init=/b"}, "init=/new", "init=/new rw"},
		{[]string{"rw", "init"}, "init=/new", "rw init=/new"},
	}
	for _, tt := range tests {
		if got := strings.Join(replaceKarg(tt.kargs, tt.arg), " "); got != tt.want {
			t.Errorf("replaceKarg(%q, %q) = %q, want %q", tt.kargs, tt.arg, got, tt.want)
		}
	}
}

// TestStrHashOrder pins the iteration orders TestOracle checks against
// libostree's entries (aboot before abootcfg with 7 keys, after it with
// 8, when the table has grown) and checks that growing keeps every key.
func TestStrHashOrder(t *testing.T) {
	unknown := func(keys []string) []string {
		return slices.DeleteFunc(strHashOrder(keys), func(k string) bool { return k != "aboot" && k != "abootcfg" })
	}
	base := []string{"options", "title", "version", "linux", "initrd", "aboot", "abootcfg"}
	if got := unknown(append(slices.Clone(base), "options")); !slices.Equal(got, []string{"aboot", "abootcfg"}) {
		t.Errorf("7 keys: %v", got)
	}
	if got := unknown(append(slices.Clone(base), "devicetree", "options")); !slices.Equal(got, []string{"abootcfg", "aboot"}) {
		t.Errorf("8 keys: %v", got)
	}
	var many []string
	for i := range 1000 {
		many = append(many, strings.Repeat("k", i%7)+string(rune('a'+i%26))+strings.Repeat("z", i/26))
	}
	got := strHashOrder(append(many, many...))
	slices.Sort(got)
	want := slices.Clone(many)
	slices.Sort(want)
	want = slices.Compact(want)
	if !slices.Equal(got, want) {
		t.Errorf("strHashOrder lost or duplicated keys: %d, want %d", len(got), len(want))
	}
}

// newSysroot lays out a sysroot with the stateroot "testos" and commits
// the tree specs to it, with the composefs digest when cfs.
func newSysroot(t *testing.T, specs []spec, cfs bool) (string, ostree.Checksum) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("SKIPPING: the bare repository and the checkout need root (chown, security xattrs, immutable flag)")
	}
	tree, dir := t.TempDir(), sysrootDir(t)
	if err := makeTree(tree, specs); err != nil {
		t.Fatal(err)
	}
	if err := Init(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := InitStateroot(dir, "testos"); err != nil {
		t.Fatal(err)
	}
	c := writeCommit(t, dir, tree, "testos/x86_64", ostree.Commit{Subject: "s", Timestamp: time.Unix(1.7e9, 0)}, cfs)
	return dir, c
}

// TestDeployComposefs deploys with composefs: the image is in the
// deployment, with verity its digest is the commit's, and the kernel
// arguments do not turn composefs off.
func TestDeployComposefs(t *testing.T) {
	for _, verity := range []bool{false, true} {
		dir, c := newSysroot(t, deployTree, true)
		dep, err := Deploy(dir, c, &Options{Stateroot: "testos", Origin: RefspecOrigin("testos/x86_64"), Composefs: true, ComposefsVerity: verity})
		if err != nil {
			t.Fatal(err)
		}
		img, err := os.ReadFile(filepath.Join(dir, dep.Dir, ComposefsFile))
		if err != nil {
			t.Fatal(err)
		}
		if d, _, _ := fsverity.SumReader(strings.NewReader(string(img))); dep.ComposefsDigest == nil || d != *dep.ComposefsDigest {
			t.Errorf("verity %v: image digest %x, Deployment.ComposefsDigest %x", verity, d, dep.ComposefsDigest)
		}
		r, err := ostree.OpenDir(filepath.Join(dir, RepoDir))
		if err != nil {
			t.Fatal(err)
		}
		cm, err := r.ReadCommit(c)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		meta, _ := cm.Metadata[0].Value.AsBytes()
		if match := string(meta) == string(dep.ComposefsDigest[:]); match != verity {
			t.Errorf("verity %v: image digest equals the commit's: %v", verity, match)
		}
		if strings.Contains(dep.Options, "composefs") || !strings.HasPrefix(dep.Options, "ostree=/ostree/boot.1/testos/") {
			t.Errorf("verity %v: options %q", verity, dep.Options)
		}
		entry, err := os.ReadFile(filepath.Join(dir, dep.Entry))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(entry), "\noptions "+dep.Options+"\n") {
			t.Errorf("entry:\n%s", entry)
		}
	}
}

// TestDeployDeterministic deploys the same commit twice and requires
// identical trees, modification times included.
func TestDeployDeterministic(t *testing.T) {
	var scans []map[string]*node
	for range 2 {
		dir, c := newSysroot(t, deployTree, false)
		if _, err := Deploy(dir, c, &Options{Stateroot: "testos", Kargs: []string{"quiet"}, Origin: RefspecOrigin("x"), Time: time.Unix(1e9, 5)}); err != nil {
			t.Fatal(err)
		}
		n, _ := scan(t, dir)
		for _, v := range n {
			v.ino = 0
		}
		scans = append(scans, n)
	}
	if len(scans[0]) != len(scans[1]) {
		t.Fatalf("%d paths, then %d", len(scans[0]), len(scans[1]))
	}
	for p, a := range scans[0] {
		if b := scans[1][p]; b == nil || a.kind != b.kind || a.mode != b.mode || a.mtime != b.mtime || a.content != b.content || a.links != b.links || a.immutable != b.immutable {
			t.Errorf("%s: %+v, then %+v", p, a, b)
		}
		if a.mtime != 0 && a.mtime != time.Unix(1e9, 5).UnixNano() {
			t.Errorf("%s: mtime %d", p, a.mtime)
		}
	}
}

func TestDeployErrors(t *testing.T) {
	twoKernels := append(slices.Clone(deployTree),
		spec{path: "usr/lib/modules/7.0", dir: true, mode: 0o755}, spec{path: "usr/lib/modules/7.0/vmlinuz", mode: 0o644, data: "k"})
	populatedEtc := append(slices.Clone(deployTree), spec{path: "etc/passwd", mode: 0o644, data: "root:x:0:0::/root:/bin/sh\n"})
	noKernel := []spec{{path: "usr", dir: true, mode: 0o755}}
	good := &Options{Stateroot: "testos", Origin: RefspecOrigin("x")}
	tests := []struct {
		name   string
		tree   []spec
		opts   *Options
		is     error
		substr string
	}{
		{"nil options", deployTree, nil, nil, "needs a stateroot"},
		{"no origin", deployTree, &Options{Stateroot: "testos"}, nil, "needs a stateroot"},
		{"bad karg", deployTree, &Options{Stateroot: "testos", Origin: "o", Kargs: []string{"a b"}}, nil, "invalid kernel argument"},
		{"ostree karg", deployTree, &Options{Stateroot: "testos", Origin: "o", Kargs: []string{"ostree=/x"}}, nil, "invalid kernel argument"},
		{"no stateroot", deployTree, &Options{Stateroot: "other", Origin: "o"}, nil, "no such stateroot"},
		{"two kernels", twoKernels, good, ErrUnsupported, "several kernels"},
		{"populated etc", populatedEtc, good, ErrUnsupported, "populated /etc"},
		{"no kernel", noKernel, good, nil, "no kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, c := newSysroot(t, tt.tree, false)
			_, err := Deploy(dir, c, tt.opts)
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) || !strings.Contains(err.Error(), tt.substr) {
				t.Fatalf("Deploy: %v, want %v containing %q", err, tt.is, tt.substr)
			}
		})
	}
	t.Run("second deployment", func(t *testing.T) {
		dir, c := newSysroot(t, deployTree, false)
		if _, err := Deploy(dir, c, good); err != nil {
			t.Fatal(err)
		}
		if _, err := Deploy(dir, c, good); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("second Deploy: %v, want ErrUnsupported", err)
		}
	})
	t.Run("config", func(t *testing.T) {
		dir := t.TempDir()
		if err := Init(dir, &InitOptions{Modern: true}); err != nil {
			t.Fatal(err)
		}
		if err := Configure(dir, Config{Bootloader: "grub2"}); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Configure grub2: %v", err)
		}
		if err := Configure(dir, BootcConfig); err != nil {
			t.Fatal(err)
		}
		if c, err := readConfig(filepath.Join(dir, RepoDir)); err != nil || c != BootcConfig {
			t.Errorf("readConfig = %+v, %v", c, err)
		}
		if err := Configure(dir, BootcConfig); !errors.Is(err, ErrUnsupported) {
			t.Errorf("second Configure: %v", err)
		}
		cfg := filepath.Join(dir, RepoDir, "config")
		for _, tt := range []struct{ config, err string }{
			{ostree.Config + "[sysroot]\nbootloader=grub2\n", "sysroot.bootloader=grub2"},
			{ostree.Config + "[sysroot]\nbootprefix=yes\n", "not a boolean"},
		} {
			if err := os.WriteFile(cfg, []byte(tt.config), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := readConfig(filepath.Join(dir, RepoDir)); err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("readConfig of %q: %v", tt.config, err)
			}
		}
	})
	t.Run("stateroot", func(t *testing.T) {
		dir := t.TempDir()
		if err := Init(dir, &InitOptions{Modern: true}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"", "a/b", "..", ".x"} {
			if err := InitStateroot(dir, name); err == nil {
				t.Errorf("InitStateroot(%q) succeeded", name)
			}
		}
		if err := InitStateroot(dir, "os"); err != nil {
			t.Fatal(err)
		}
		if err := InitStateroot(dir, "os"); err == nil {
			t.Error("InitStateroot of an existing stateroot succeeded")
		}
	})
}
