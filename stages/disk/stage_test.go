package disk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/fat"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing"
	cfsstage "github.com/cfs-compose/cfs-compose/stages/composefs"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/disk"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
	"github.com/cfs-compose/cfs-compose/stages/source"
)

var _ pipeline.Stage = disk.New()
var _ pipeline.Stage = cfsstage.New()

// fixture is the testbed's fixture image directory (make fixtures).
func fixture(t *testing.T) string { return stagetest.FixtureLayout(t) }

// fakeUKI stands in for the uki stage: a few bytes are enough for the ESP.
var fakeUKI = pipeline.Define(pipeline.Spec[string]{
	Kind: contract.UKI, Version: "1",
	Plan: func(context.Context, *pipeline.PlanContext) (*string, error) { s := "fake"; return &s, nil },
	Run: func(_ context.Context, rc *pipeline.RunContext, _ *string) error {
		return contract.UKIImage.Put(rc, []byte("MZ fake unified kernel image"), nil)
	},
})

func config(image string, composefs bool) *manifest.Config {
	return &manifest.Config{
		Variant: "testbed", Name: "Testbed", Arch: manifest.ArchX86_64,
		Source:    manifest.Source{Image: "oci:" + image + ":testbed", Kind: manifest.SourceContainer},
		Composefs: manifest.Composefs{Enabled: composefs, Verity: initconfig.VerityEnable},
		UKI:       manifest.UKI{Enabled: true, Stub: "image", Name: "testbed"},
		Disk: manifest.Disk{Size: 256 << 20, Formats: []string{"raw", "qcow2"}, Partitions: []manifest.Partition{
			{Name: "esp", Type: "esp", Size: 64 << 20, FS: "vfat", Label: "esp"},
			{Name: "root", Type: "root", Size: 0, FS: "ext4", Label: "root", Verity: true},
		}},
		Lints: manifest.Lints{Skip: []string{"root-dirs"}},
	}
}

func build(t *testing.T, cache string, c *manifest.Config) (*pipeline.Plan, *pipeline.Result) {
	t.Helper()
	st, err := artifacts.Open(context.Background(), cache, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	stages := []pipeline.Stage{source.New(), cfsstage.New(), fakeUKI, disk.New()}
	p, err := pipeline.Resolve(context.Background(), stagetest.OneConfig{C: c}, stages, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Execute(context.Background(), p, st, &pipeline.ExecOptions{Jobs: 2, Secret: func(n string) (string, bool) {
		return "test-pass", n == "CFS_SIGNING_PASSWORD"
	}})
	if err != nil {
		t.Fatal(err)
	}
	return p, res
}

func output(t *testing.T, p *pipeline.Plan, res *pipeline.Result, kind, name string) artifacts.Output {
	return stagetest.Output(t, p, res, kind, name)
}

func storePath(cache string, o artifacts.Output) string {
	return filepath.Join(cache, "blobs", "sha256", o.Digest.Hex())
}

func requireTools(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed (make deps installs it)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIP: needs root (device nodes and owners in the root partition); CI runs as root")
	}
}

func debugfs(t *testing.T, img string, offset int64, cmd string) string {
	t.Helper()
	var stderr bytes.Buffer
	c := exec.Command("debugfs", "-R", cmd, img+"?offset="+itoa(offset))
	c.Stderr = &stderr
	out, err := c.Output() // stdout only: debugfs prints its banner on stderr
	if err != nil {
		t.Fatalf("debugfs %s: %v\n%s", cmd, err, stderr.Bytes())
	}
	return string(out)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func layout(t *testing.T, cache string, p *pipeline.Plan, res *pipeline.Result) artifacts.DiskLayout {
	var l artifacts.DiskLayout
	b, err := os.ReadFile(storePath(cache, output(t, p, res, "disk", "layout")))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func part(l artifacts.DiskLayout, typ string) artifacts.DiskPartition {
	for _, p := range l.Partitions {
		if p.Type == typ {
			return p
		}
	}
	return artifacts.DiskPartition{}
}

// TestComposefsDisk builds source -> composefs -> disk from the fixture
// image and checks the disk: a clean GPT, the UKI on the ESP, and a clean
// ext4 root holding the composefs image under its digest plus every object
// it references; the same inputs give the same bytes.
func TestComposefsDisk(t *testing.T) {
	img := fixture(t)
	requireTools(t, "debugfs", "e2fsck", "sgdisk", "fsck.vfat", "qemu-img")
	cache := t.TempDir()
	p, res := build(t, cache, config(img, true))
	raw := storePath(cache, output(t, p, res, "disk", "raw"))
	l := layout(t, cache, p, res)

	var d artifacts.ComposefsDigest
	b, _ := os.ReadFile(storePath(cache, output(t, p, res, "composefs", "digest")))
	json.Unmarshal(b, &d)
	cfsImg, _ := os.ReadFile(storePath(cache, output(t, p, res, "composefs", "image")))
	if got := fsverity.Hex(fsverity.Sum(cfsImg)); got != d.Digest || l.ComposefsDigest != d.Digest {
		t.Fatalf("digest output %s, image digest %s, layout %s", d.Digest, got, l.ComposefsDigest)
	}

	if out, err := exec.Command("sgdisk", "-v", raw).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	esp := part(l, "esp")
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	espFS, err := fat.NewReader(ioSection(f, esp.Offset, esp.Size), esp.Size)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"EFI/BOOT/BOOTX64.EFI", "EFI/Linux/testbed.efi"} {
		got, err := readFS(espFS, p)
		if err != nil || string(got) != "MZ fake unified kernel image" {
			t.Errorf("ESP %s: %q %v", p, got, err)
		}
	}

	root := part(l, "root")
	if out, err := exec.Command("e2fsck", "-fn", raw+"?offset="+itoa(root.Offset)).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	ls := debugfs(t, raw, root.Offset, "ls -l composefs/images")
	if !strings.Contains(ls, d.Digest) {
		t.Errorf("composefs/images lacks %s:\n%s", d.Digest, ls)
	}
	got := debugfs(t, raw, root.Offset, "cat composefs/images/"+d.Digest)
	if !bytes.Equal([]byte(got), cfsImg) {
		t.Errorf("image on disk differs from the composefs output (%d vs %d bytes)", len(got), len(cfsImg))
	}
	// Every object the image references is on the disk with its content.
	tree, err := readImage(cfsImg)
	if err != nil {
		t.Fatal(err)
	}
	objs := tree.Objects()
	if len(objs) == 0 {
		t.Fatal("no objects referenced")
	}
	for _, o := range objs { // payloads: "XX/YYYY…"
		content := debugfs(t, raw, root.Offset, "cat composefs/objects/"+o)
		if fsverity.Hex(fsverity.Sum([]byte(content))) != strings.ReplaceAll(o, "/", "") {
			t.Errorf("object %s on disk has the wrong content", o)
		}
	}

	// Reproducible: a fresh cache gives the same disk bytes.
	cache2 := t.TempDir()
	p2, res2 := build(t, cache2, config(img, true))
	if a, b := output(t, p, res, "disk", "raw").Digest, output(t, p2, res2, "disk", "raw").Digest; a != b {
		t.Errorf("same inputs, different disks: %s vs %s", a, b)
	}
	q := storePath(cache, output(t, p, res, "disk", "qcow2"))
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, q).CombinedOutput(); err != nil {
		t.Errorf("qcow2 differs from raw: %v\n%s", err, out)
	}
}

// TestPlainDisk is the contingency path: composefs disabled, the root
// partition holds the plain deployment tree with owners, modes and links.
func TestPlainDisk(t *testing.T) {
	img := fixture(t)
	requireTools(t, "debugfs", "e2fsck")
	cache := t.TempDir()
	p, res := build(t, cache, config(img, false))
	if n := p.Targets[0].Nodes["composefs"]; n != nil {
		t.Fatal("composefs stage planned although disabled")
	}
	raw := storePath(cache, output(t, p, res, "disk", "raw"))
	l := layout(t, cache, p, res)
	if l.ComposefsDigest != "" {
		t.Errorf("plain disk records a composefs digest")
	}
	root := part(l, "root")
	if out, err := exec.Command("e2fsck", "-fn", raw+"?offset="+itoa(root.Offset)).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	st := debugfs(t, raw, root.Offset, "stat state/deploy/plain/root/usr/bin/busybox")
	if !strings.Contains(st, "Type: regular") || !strings.Contains(st, "Mode:  0755") {
		t.Errorf("busybox on the plain root:\n%s", st)
	}
	osr := debugfs(t, raw, root.Offset, "cat state/deploy/plain/root/usr/lib/os-release")
	if !strings.Contains(osr, "ID=") {
		t.Errorf("os-release on the plain root: %q", osr)
	}
	link := debugfs(t, raw, root.Offset, "stat state/deploy/plain/root/usr/sbin/init")
	if !strings.Contains(link, "Type: regular") && !strings.Contains(link, "Type: symlink") {
		t.Errorf("init on the plain root:\n%s", link)
	}
}

// TestSignedDigest checks composefs { signed = true }: the digest
// signature verifies with the public key the initramfs embeds.
func TestSignedDigest(t *testing.T) {
	img := fixture(t)
	keys := t.TempDir()
	t.Setenv("CFS_SIGNING_PASSWORD", "test-pass")
	if _, err := signing.GenerateKeys(keys, signing.GenerateOptions{Passphrase: []byte("test-pass")}); err != nil {
		t.Fatal(err)
	}
	c := config(img, true)
	c.Composefs.Signed = true
	c.Signing = manifest.Signing{Key: filepath.Join(keys, "cosign.key"), Pub: filepath.Join(keys, "cosign.pub")}
	cache := t.TempDir()
	st, err := artifacts.Open(context.Background(), cache, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, err := pipeline.Resolve(context.Background(), stagetest.OneConfig{C: c}, []pipeline.Stage{source.New(), cfsstage.New()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.Execute(context.Background(), p, st, &pipeline.ExecOptions{Secret: func(n string) (string, bool) { return "test-pass", true }})
	if err != nil {
		t.Fatal(err)
	}
	var d artifacts.ComposefsDigest
	b, _ := os.ReadFile(storePath(cache, output(t, p, res, "composefs", "digest")))
	json.Unmarshal(b, &d)
	sig, _ := os.ReadFile(storePath(cache, output(t, p, res, "composefs", "digest.sig")))
	pubPEM, _ := os.ReadFile(filepath.Join(keys, "cosign.pub"))
	pub, err := initconfig.ParsePublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := initconfig.VerifyDigest(pub, d.Digest, sig); err != nil {
		t.Errorf("digest signature does not verify: %v", err)
	}
	if err := initconfig.VerifyDigest(pub, strings.Repeat("0", 64), sig); err == nil {
		t.Error("signature verifies for another digest")
	}
	// A wrong passphrase is a clear error.
	cache2 := t.TempDir()
	st2, _ := artifacts.Open(context.Background(), cache2, false)
	defer st2.Close()
	_, err = pipeline.Execute(context.Background(), p, st2, &pipeline.ExecOptions{Secret: func(string) (string, bool) { return "wrong", true }})
	if err == nil || !strings.Contains(err.Error(), "cosign.key") {
		t.Errorf("wrong passphrase: %v", err)
	}
}
