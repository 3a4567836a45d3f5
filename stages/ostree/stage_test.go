package ostree_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/artifacts/composedir"
	cfsinitramfs "github.com/cfs-compose/cfs-compose/internal/initramfs"
	ot "github.com/cfs-compose/cfs-compose/internal/ostree"
	"github.com/cfs-compose/cfs-compose/internal/ostree/ostreetest"
	"github.com/cfs-compose/cfs-compose/internal/ostree/sysroot"
	"github.com/cfs-compose/cfs-compose/internal/uki"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/disk"
	"github.com/cfs-compose/cfs-compose/stages/initramfs"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
	"github.com/cfs-compose/cfs-compose/stages/ostree"
	"github.com/cfs-compose/cfs-compose/stages/source"
	ukistage "github.com/cfs-compose/cfs-compose/stages/uki"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

var _ pipeline.Stage = ostree.New()

const stateroot = "testos"

// ostreeConfig is the testbed target with the ostree backend on image,
// the fixture plus an initramfs.img (the fixture has no dracut; a few
// bytes are enough for the host checks, which do not boot).
func ostreeConfig(image string, composefs bool) *manifest.Config {
	mc := stagetest.TestbedConfig(image)
	mc.Composefs.Enabled = composefs
	mc.Deploy = manifest.Deploy{Backend: manifest.BackendOstree, Stateroot: stateroot}
	mc.Initramfs.Source = manifest.InitramfsImage
	return mc
}

func readOutput(t testing.TB, st *artifacts.Store, p *pipeline.Plan, res *pipeline.Result, o pipeline.Output) []byte {
	t.Helper()
	b, err := os.ReadFile(st.Path(stagetest.Output(t, p, res, o.Kind, o.Name).Descriptor))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHostChecks builds a disk with the ostree backend (source, initramfs
// from the image, ostree, uki, disk), checks the deployment and the UKI's
// command line, then mounts the disk's root partition and checks it with
// the real ostree CLI (Debian trixie's, ostreetest): `ostree fsck` is
// clean, `ostree admin status` lists the deployment, and `ostree admin
// deploy` of a second commit (committed with `ostree commit` into the
// disk's repository) succeeds, after which status lists both. Both states
// of composefs; each is built twice to check that the sysroot and the disk
// are reproducible.
func TestHostChecks(t *testing.T) {
	ch := ostreetest.Get(t)
	kver := stagetest.FixtureContent(t).Kernel.Version
	image := stagetest.DerivedImage(t, ti.File("usr/lib/modules/"+kver+"/initramfs.img", "fake initramfs\n", 0o644))
	key := signingKey(t)
	for _, tc := range []struct{ composefs, signed bool }{{true, false}, {false, false}, {true, true}} {
		composefs := tc.composefs
		config := func() *manifest.Config {
			mc := ostreeConfig(image, composefs)
			if tc.signed {
				mc.Composefs.Signed, mc.Signing.OstreeKey = true, key
			}
			return mc
		}
		t.Run("composefs="+strconv.FormatBool(composefs)+",signed="+strconv.FormatBool(tc.signed), func(t *testing.T) {
			st := stagetest.OpenStore(t)
			p, res, err := stagetest.Build(t, st, config(),
				source.New(), initramfs.New(), ostree.New(), ukistage.New(), disk.New())
			if err != nil {
				t.Fatal(err)
			}
			// Deterministic: a second build in a fresh store gives the same
			// sysroot tree and disk bytes.
			st2 := stagetest.OpenStore(t)
			p2, res2, err := stagetest.Build(t, st2, config(),
				source.New(), initramfs.New(), ostree.New(), ukistage.New(), disk.New())
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range []pipeline.Output{contract.OstreeSysroot, contract.DiskRaw} {
				a, b := stagetest.Output(t, p, res, o.Kind, o.Name), stagetest.Output(t, p2, res2, o.Kind, o.Name)
				if a.Digest != b.Digest {
					t.Errorf("%s differs between two builds: %s, %s", o, a.Digest, b.Digest)
				}
			}
			if p.Targets[0].Nodes[contract.Composefs] != nil {
				t.Error("the composefs stage is planned with the ostree backend")
			}
			dep, err := contract.OstreeDeployment.Decode(readOutput(t, st, p, res, contract.OstreeDeployment.Output))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("deployment %+v", dep)
			want := "root=LABEL=root rw console=ttyS0"
			if !composefs {
				want += " " + sysroot.KargComposefsOff
			}
			want += " ostree=/ostree/boot.1/" + stateroot + "/" + dep.BootCsum + "/0"
			if dep.Cmdline != want {
				t.Errorf("command line %q, want %q", dep.Cmdline, want)
			}
			if (dep.ComposefsDigest != "") != composefs || dep.KernelVersion != kver || dep.Ref != stateroot+"/x86_64" {
				t.Errorf("deployment: composefs digest %q, kernel %q, ref %q", dep.ComposefsDigest, dep.KernelVersion, dep.Ref)
			}

			// The UKI boots straight into the deployment.
			data := readOutput(t, st, p, res, contract.UKIImage)
			f, err := uki.NewFile(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			s := f.Section(uki.SectionCmdline)
			if s == nil {
				t.Fatal("UKI has no .cmdline")
			}
			if got, err := s.Data(); err != nil || string(got) != dep.Cmdline {
				t.Errorf("UKI .cmdline %q (%v), want the deployment's %q", got, err, dep.Cmdline)
			}

			layout, err := contract.DiskLayout.Decode(readOutput(t, st, p, res, contract.DiskLayout.Output))
			if err != nil {
				t.Fatal(err)
			}
			raw := st.Path(stagetest.Output(t, p, res, contract.Disk, contract.DiskRaw.Name).Descriptor)
			initrd, err := f.Section(uki.SectionInitrd).Data()
			if err != nil {
				t.Fatal(err)
			}
			checkSigned(t, st, p, res, dep, initrd, tc.signed)
			verifyDisk(t, raw, layout, dep, composefs, initrd)
			mnt := mountRoot(t, raw, layout)
			if _, err := os.Stat(filepath.Join(mnt, dep.Dir, sysroot.ComposefsFile)); (err == nil) != composefs {
				t.Errorf("%s in the deployment: %v, want present = %t", sysroot.ComposefsFile, err, composefs)
			}
			hostChecks(t, ch, mnt, dep)
		})
	}
}

// TestBuiltinInitramfsPinsDigest: with the builtin initramfs (cfs-init in
// ostree mode) and composefs on, the UKI's command line is the
// deployment's plus composefs=<the .ostree.cfs digest>, which cfs-init
// checks the commit and the image against; the initramfs is configured
// for ostree. Composefs off leaves the deployment's command line alone.
func TestBuiltinInitramfsPinsDigest(t *testing.T) {
	kver := stagetest.FixtureContent(t).Kernel.Version
	image := stagetest.DerivedImage(t, ti.File("usr/lib/modules/"+kver+"/initramfs.img", "fake initramfs\n", 0o644))
	for _, composefs := range []bool{true, false} {
		t.Run("composefs="+strconv.FormatBool(composefs), func(t *testing.T) {
			mc := ostreeConfig(image, composefs)
			mc.Initramfs.Source = manifest.InitramfsBuiltin
			st := stagetest.OpenStore(t)
			p, res, err := stagetest.Build(t, st, mc, source.New(), initramfs.New(), ostree.New(), ukistage.New())
			if err != nil {
				t.Fatal(err)
			}
			dep, err := contract.OstreeDeployment.Decode(readOutput(t, st, p, res, contract.OstreeDeployment.Output))
			if err != nil {
				t.Fatal(err)
			}
			want := dep.Cmdline
			if composefs {
				if dep.ComposefsDigest == "" {
					t.Fatal("no composefs digest in the deployment")
				}
				want += " composefs=" + dep.ComposefsDigest
				// The image records the objects' fs-verity digests, so
				// its digest is the one the commit carries: what
				// cfs-init checks.
				if got := commitDigest(t, st, p, res, dep); got != dep.ComposefsDigest {
					t.Errorf("the commit records composefs digest %s, the deployment's .ostree.cfs has %s", got, dep.ComposefsDigest)
				}
			}
			data := readOutput(t, st, p, res, contract.UKIImage)
			f, err := uki.NewFile(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			s := f.Section(uki.SectionCmdline)
			if s == nil {
				t.Fatal("UKI has no .cmdline")
			}
			if got, err := s.Data(); err != nil || string(got) != want {
				t.Errorf("UKI .cmdline %q (%v), want %q", got, err, want)
			}
			ic := p.Targets[0].Nodes[contract.Initramfs]
			if ic == nil || !strings.Contains(string(ic.Config), `"ostree":true`) {
				t.Errorf("the initramfs is not configured for ostree: %v", ic)
			}
		})
	}
}

// commitDigest returns the ostree.composefs.digest.v0 of the deployment's
// commit in the ostree stage's sysroot output.
func commitDigest(t *testing.T, st *artifacts.Store, p *pipeline.Plan, res *pipeline.Result, dep *artifacts.OstreeDeployment) string {
	t.Helper()
	r, sum, _ := openRepo(t, st, p, res, dep)
	defer r.Close()
	c, err := r.ReadCommit(sum)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := c.Lookup(ot.MetaComposefsDigest)
	b, isBytes := v.AsBytes()
	if !ok || !isBytes {
		t.Fatalf("commit %s has no %s", dep.Commit, ot.MetaComposefsDigest)
	}
	return hex.EncodeToString(b)
}

// mountRoot mounts a copy of the disk's root partition read-write and
// returns the mount point; the test's cleanup unmounts it.
func mountRoot(t *testing.T, raw string, layout *artifacts.DiskLayout) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	if out, err := exec.Command("cp", "--sparse=always", raw, img).CombinedOutput(); err != nil {
		t.Fatalf("copying the disk: %v: %s", err, out)
	}
	var root *artifacts.DiskPartition
	for i := range layout.Partitions {
		if layout.Partitions[i].Type == manifest.PartitionRoot {
			root = &layout.Partitions[i]
		}
	}
	if root == nil {
		t.Fatalf("no root partition in %+v", layout)
	}
	if root.Label != "root" {
		t.Errorf("root partition label %q, the deployment's root= names \"root\"", root.Label)
	}
	mnt := filepath.Join(dir, "root")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "loop,offset=" + strconv.FormatInt(root.Offset, 10) + ",sizelimit=" + strconv.FormatInt(root.Size, 10)
	if out, err := exec.Command("mount", "-t", "ext4", "-o", opts, img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting the root partition: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("unmounting %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// hostChecks runs the real ostree on the mounted sysroot mnt.
func hostChecks(t *testing.T, ch *ostreetest.Chroot, mnt string, dep *artifacts.OstreeDeployment) {
	extra := t.TempDir()
	if err := os.MkdirAll(filepath.Join(extra, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(extra, "usr/lib/second"), []byte("second\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Debian's ostree is built without composefs and refuses to deploy a
	// tree whose prepare-root.conf enables it: the second commit turns it
	// off (the first deployment, ours, keeps its composefs image).
	if err := os.MkdirAll(filepath.Join(extra, "usr/lib/ostree"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(extra, "usr/lib/ostree/prepare-root.conf"), []byte("[composefs]\nenabled = no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	binds := []ostreetest.Bind{{Host: mnt, Guest: "/mnt/sysroot"}, {Host: extra, Guest: "/mnt/extra"}}
	run := func(args ...string) string {
		t.Helper()
		out, err := ch.Ostree(binds, args...)
		if err != nil {
			t.Fatalf("ostree %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	t.Logf("ostree fsck: %s", strings.TrimSpace(run("--repo=/mnt/sysroot/ostree/repo", "fsck")))
	status := run("admin", "status", "--sysroot=/mnt/sysroot")
	if !strings.Contains(status, stateroot+" "+dep.Commit+".0") {
		t.Errorf("ostree admin status does not list the deployment %s.0:\n%s", dep.Commit, status)
	}
	if rev := strings.TrimSpace(run("--repo=/mnt/sysroot/ostree/repo", "rev-parse", dep.Ref)); rev != dep.Commit {
		t.Errorf("ref %s is %s, want %s", dep.Ref, rev, dep.Commit)
	}
	// A second commit (the first plus one file) deploys next to ours.
	second := strings.TrimSpace(run("--repo=/mnt/sysroot/ostree/repo", "commit", "--branch="+dep.Ref,
		"--tree=ref="+dep.Commit, "--tree=dir=/mnt/extra", "-s", "second"))
	t.Logf("second deploy: %s", strings.TrimSpace(run("admin", "deploy", "--sysroot=/mnt/sysroot", "--os="+stateroot, dep.Ref)))
	status = run("admin", "status", "--sysroot=/mnt/sysroot")
	t.Logf("ostree admin status after the second deploy:\n%s", status)
	for _, d := range []string{second + ".0", dep.Commit + ".0"} {
		if !strings.Contains(status, stateroot+" "+d) {
			t.Errorf("status after the second deploy lacks %s", d)
		}
	}
	run("--repo=/mnt/sysroot/ostree/repo", "fsck")
}

// verifyDisk runs cfs-compose verify's ostree rows on the disk (all must
// pass), then on copies of it changed in one place each (one row must
// fail, naming the change).
func verifyDisk(t *testing.T, raw string, layout *artifacts.DiskLayout, dep *artifacts.OstreeDeployment, composefs bool, initrd []byte) {
	t.Helper()
	root := rootOf(t, layout)
	ctx := t.Context()
	rows := composedir.VerifyOstree(ctx, raw, root.Offset, dep.Cmdline, initrd, "")
	wantRows := 4
	if dep.SignedBy != "" {
		wantRows++ // ostree-signature
	}
	if len(rows) != wantRows {
		t.Fatalf("verify rows: %+v", rows)
	}
	for _, r := range rows {
		if !r.OK {
			t.Errorf("verify %s: %s", r.Check, r.Detail)
		} else {
			t.Logf("verify %s: ok: %s", r.Check, r.Detail)
		}
	}
	commitObj := "ostree/repo/objects/" + dep.Commit[:2] + "/" + dep.Commit[2:] + ".commit"
	tests := []struct {
		name   string
		change func(mnt string) error
		check  string
		detail string
		// also may fail too (a removed object is missing from the
		// composefs image's view as well).
		also string
	}{
		{"a dirtree object changed", func(mnt string) error {
			ms, err := filepath.Glob(filepath.Join(mnt, "ostree/repo/objects/*/*.dirtree"))
			if err != nil || len(ms) == 0 {
				return fmt.Errorf("no dirtree objects: %v", err)
			}
			return flipByte(ms[0])
		}, composedir.CheckOstreeObjects, "metadata objects with a wrong checksum (", ""},
		{"a content object removed", func(mnt string) error {
			ms, err := filepath.Glob(filepath.Join(mnt, "ostree/repo/objects/*/*.file"))
			if err != nil || len(ms) == 0 {
				return fmt.Errorf("no content objects: %v", err)
			}
			return os.Remove(ms[len(ms)/2])
		}, composedir.CheckOstreeObjects, "objects the commit's tree references are missing (", composedir.CheckOstreeComposefs},
		{"the commit object changed", func(mnt string) error { return flipByte(filepath.Join(mnt, commitObj)) },
			composedir.CheckOstreeCommit, "not the " + dep.Commit + " its name says", ""},
		{"the ref removed", func(mnt string) error { return os.Remove(filepath.Join(mnt, "ostree/repo/refs/heads/ostree/1/1/0")) },
			composedir.CheckOstreeCommit, "ref ostree/1/1/0 is missing", ""},
		{"the origin removed", func(mnt string) error { return os.Remove(filepath.Join(mnt, dep.Dir+".origin")) },
			composedir.CheckOstreeDeployment, "has no origin file", ""},
	}
	if composefs {
		tests = append(tests, struct {
			name   string
			change func(mnt string) error
			check  string
			detail string
			also   string
		}{".ostree.cfs changed", func(mnt string) error { return flipByte(filepath.Join(mnt, dep.Dir, sysroot.ComposefsFile)) },
			composedir.CheckOstreeComposefs, "is not a composefs image", ""})
	}
	if dep.SignedBy != "" {
		meta := "ostree/repo/objects/" + dep.Commit[:2] + "/" + dep.Commit[2:] + ".commitmeta"
		tests = append(tests, []struct {
			name   string
			change func(mnt string) error
			check  string
			detail string
			also   string
		}{
			{"the signature changed", func(mnt string) error { return flipByteAt(filepath.Join(mnt, meta), 40) },
				composedir.CheckOstreeSignature, "no valid ed25519 signature", ""},
			{"the signature removed", func(mnt string) error { return os.Remove(filepath.Join(mnt, meta)) },
				composedir.CheckOstreeSignature, "but the commit has no ostree.sign.ed25519 signature", ""},
		}...)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := changedCopy(t, raw, root, tt.change)
			var got *composedir.OstreeRow
			for _, r := range composedir.VerifyOstree(ctx, img, root.Offset, dep.Cmdline, initrd, "") {
				if r.Check == tt.check {
					got = &r
				} else if !r.OK && !strings.HasPrefix(r.Detail, "not checked") && r.Check != tt.also {
					t.Errorf("%s failed too: %s", r.Check, r.Detail)
				}
			}
			if got == nil || got.OK || !strings.Contains(got.Detail, tt.detail) {
				t.Fatalf("%s: %+v, want a failure saying %q", tt.check, got, tt.detail)
			}
			t.Logf("%s: %s", tt.check, got.Detail)
		})
	}
}

func rootOf(t *testing.T, layout *artifacts.DiskLayout) *artifacts.DiskPartition {
	t.Helper()
	for i := range layout.Partitions {
		if layout.Partitions[i].Type == manifest.PartitionRoot {
			return &layout.Partitions[i]
		}
	}
	t.Fatalf("no root partition in %+v", layout)
	return nil
}

// changedCopy copies the disk, applies change to its mounted root
// partition, unmounts it and returns the copy.
func changedCopy(t *testing.T, raw string, root *artifacts.DiskPartition, change func(mnt string) error) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	if out, err := exec.Command("cp", "--sparse=always", raw, img).CombinedOutput(); err != nil {
		t.Fatalf("copying the disk: %v: %s", err, out)
	}
	mnt := filepath.Join(dir, "root")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "loop,offset=" + strconv.FormatInt(root.Offset, 10) + ",sizelimit=" + strconv.FormatInt(root.Size, 10)
	if out, err := exec.Command("mount", "-t", "ext4", "-o", opts, img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting the root partition: %v: %s", err, out)
	}
	cerr := change(mnt)
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmounting %s: %v: %s", mnt, err, out)
	}
	if cerr != nil {
		t.Fatal(cerr)
	}
	return img
}

// flipByte inverts the first byte of the file p.
func flipByte(p string) error { return flipByteAt(p, 0) }

// flipByteAt inverts byte i of the file p.
func flipByteAt(p string, i int) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if len(b) <= i {
		return fmt.Errorf("%s has %d bytes", p, len(b))
	}
	b[i] ^= 0xff
	return os.WriteFile(p, b, 0o644)
}

// signingKey writes an ed25519 key as PKCS#8 PEM (what `openssl genpkey
// -algorithm ed25519` writes) and returns its path.
func signingKey(t *testing.T) string {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(7 * i)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ostree.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkSigned checks a signed build: the deployment names the key, the
// commit's detached signature verifies with it, and the initramfs (the
// image's own, with an appended archive) carries it where
// ostree-prepare-root reads it; an unsigned build has none of these.
func checkSigned(t *testing.T, st *artifacts.Store, p *pipeline.Plan, res *pipeline.Result, dep *artifacts.OstreeDeployment, initrd []byte, signed bool) {
	t.Helper()
	keyText, hasKey := cfsinitramfs.FindFile(initrd, ot.RootBindingKeyPath)
	if !signed {
		if dep.SignedBy != "" || hasKey || !bytes.Equal(initrd, []byte("fake initramfs\n")) {
			t.Errorf("unsigned build: signed by %q, key in the initramfs %v, initramfs %q", dep.SignedBy, hasKey, initrd)
		}
		return
	}
	if dep.SignedBy == "" || string(keyText) != dep.SignedBy+"\n" {
		t.Errorf("signed by %q, initramfs key %q", dep.SignedBy, keyText)
	}
	if !bytes.HasPrefix(initrd, []byte("fake initramfs\n\x00")) {
		t.Errorf("the image's initramfs is not kept in front of the key archive: %q", initrd[:min(len(initrd), 40)])
	}
	r, c, repo := openRepo(t, st, p, res, dep)
	defer r.Close()
	meta, err := r.ReadCommitMeta(c)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(repo, filepath.FromSlash(ot.ObjectPath(c, ot.ObjectCommit))))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := base64.StdEncoding.DecodeString(dep.SignedBy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ot.VerifyCommit(data, meta, []ed25519.PublicKey{pub}); err != nil {
		t.Errorf("the commit's signature: %v", err)
	}
}

// openRepo opens the repository of the ostree stage's sysroot output and
// parses the deployment's commit; it returns the reader, the commit and
// the repository's directory.
func openRepo(t *testing.T, st *artifacts.Store, p *pipeline.Plan, res *pipeline.Result, dep *artifacts.OstreeDeployment) (*ot.Reader, ot.Checksum, string) {
	t.Helper()
	repo := filepath.Join(st.Path(stagetest.Output(t, p, res, contract.Ostree, contract.OstreeSysroot.Name).Descriptor), sysroot.RepoDir)
	r, err := ot.OpenDir(repo)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ot.ParseChecksum(dep.Commit)
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	return r, c, repo
}
