package boottest

// The test disks come from the real pipeline: the stage table of
// cfs-compose (source, composefs, initramfs, uki, sign, disk, boottest;
// stages/stages_test.go checks that is stages.All())
// builds the shipped testbed manifest (manifests/testbed.hcl, made from the
// fixture image of `make fixtures`) in four versions per arch, once per
// test binary:
//
//	testbed   composefs (verity "enable", digest signed with a cosign key),
//	          UKI signed with the db key, boot-tested with Secure Boot
//	plain     composefs disabled (plain deployment tree), boot-tested
//	unsigned  composefs, UKI not signed (not boot-tested: refusal tests)
//	otherkey  composefs, UKI signed with a db key that is never enrolled
//
// The refusal tests also tamper with copies of the testbed disk: one byte
// of the UKI's .cmdline on the ESP, one byte of the composefs image on the
// root partition.

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/debfetch"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing"
	cfsstage "github.com/cfs-compose/cfs-compose/stages/composefs"
	"github.com/cfs-compose/cfs-compose/stages/disk"
	"github.com/cfs-compose/cfs-compose/stages/initramfs"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
	ostreestage "github.com/cfs-compose/cfs-compose/stages/ostree"
	"github.com/cfs-compose/cfs-compose/stages/sign"
	"github.com/cfs-compose/cfs-compose/stages/source"
	"github.com/cfs-compose/cfs-compose/stages/uki"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
)

// Versions of the testbed variant the tests build.
const (
	vTestbed  = "testbed"
	vPlain    = "plain"
	vUnsigned = "unsigned"
	vOtherKey = "otherkey"
)

const passphrase = "boottest-pass"

// composeSet is a pipeline.Manifests of literal configs.
type composeSet map[string]map[string]*manifest.Config

func (m composeSet) Variants() []string {
	return []string{vOtherKey, vPlain, vTestbed, vUnsigned}
}
func (m composeSet) Arches(v string) []string {
	var as []string
	for _, a := range []string{"aarch64", "x86_64"} {
		if m[v][a] != nil {
			as = append(as, a)
		}
	}
	return as
}
func (m composeSet) Config(v, a string) (*manifest.Config, error) { c := *m[v][a]; return &c, nil }
func (m composeSet) Compose() manifest.Compose {
	return manifest.Compose{Product: "Fedora", Release: "41", Type: "test"}
}

// built is the result of the shared build.
type built struct {
	set     composeSet
	st      *artifacts.Store
	plan    *pipeline.Plan
	res     *pipeline.Result
	keys    string // signing.GenerateKeys output: cosign.key, db.key, db.crt, ...
	other   string // the other key set
	tools   *fixtures.Tools
	elapsed time.Duration
	dir     string
}

var (
	buildOnce sync.Once
	shared    *built
	sharedErr error
	sharedDir string
)

// TestMain removes the shared build after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.st.Close()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// requireBoot skips under -short and, loudly, when QEMU or the host tools
// the pipeline needs are missing.
func requireBoot(t testing.TB, arch string) {
	t.Helper()
	if testing.Short() {
		t.Skip("real QEMU boot test; skipped with -short")
	}
	for _, tool := range []string{"qemu-system-" + arch, "qemu-img", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING REAL BOOT TEST: %s is not installed (make deps installs qemu-system-x86, qemu-system-arm, qemu-utils, e2fsprogs)", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING REAL BOOT TEST: the disk stage needs root (device nodes and owners in the root partition); CI runs as root")
	}
}

// build returns the shared build, running it on first use.
func build(t testing.TB) *built {
	t.Helper()
	buildOnce.Do(func() { shared, sharedErr = runBuild() })
	if sharedErr != nil {
		t.Fatalf("building the test composes: %v", sharedErr)
	}
	firmwareEnv(t, shared.tools)
	return shared
}

func runBuild() (*built, error) {
	ctx := context.Background()
	cache, err := debfetch.CacheDir()
	if err != nil {
		return nil, err
	}
	lock, err := fixtures.Fetch(ctx, fixtures.FetchOptions{CacheDir: cache})
	if err != nil {
		return nil, err
	}
	b := &built{set: composeSet{}}
	if b.tools, err = fixtures.ExtractTools(ctx, cache, lock); err != nil {
		return nil, err
	}
	// The stages and the boot tests read these.
	os.Setenv("CFS_FIRMWARE_DIRS", b.tools.OVMFDir+":"+b.tools.AAVMFDir)
	os.Setenv("CFS_VIRT_FW_VARS", b.tools.VirtFwVarsWrapper)
	layout, err := fixtures.DefaultLayoutDir()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err != nil {
		return nil, err // make fixtures builds it
	}
	if sharedDir, err = os.MkdirTemp("", "cfs-boottest-"); err != nil {
		return nil, err
	}
	b.dir = sharedDir
	b.keys, b.other = filepath.Join(b.dir, "keys"), filepath.Join(b.dir, "other-keys")
	for _, d := range []string{b.keys, b.other} {
		if _, err := signing.GenerateKeys(d, signing.GenerateOptions{Passphrase: []byte(passphrase)}); err != nil {
			return nil, err
		}
	}
	m, diags := manifest.Load("../../manifests", nil)
	if diags.HasErrors() {
		return nil, diags
	}
	for _, v := range []string{vTestbed, vPlain, vUnsigned, vOtherKey} {
		b.set[v] = map[string]*manifest.Config{}
		for _, arch := range []string{"x86_64", "aarch64"} {
			c, err := m.Config("testbed", arch)
			if err != nil {
				return nil, err
			}
			c.Variant, c.Name = v, strings.ToUpper(v[:1])+v[1:]
			c.Test.Timeout = 3 * time.Minute
			switch v {
			case vTestbed:
				c.Composefs.Signed = true
				c.Signing = manifest.Signing{Key: filepath.Join(b.keys, "cosign.key"), Pub: filepath.Join(b.keys, "cosign.pub")}
				c.SecureBoot = manifest.SecureBoot{Key: filepath.Join(b.keys, "db.key"), Cert: filepath.Join(b.keys, "db.crt")}
				c.Test.SecureBoot = true
			case vPlain:
				c.Composefs = manifest.Composefs{Enabled: false, Verity: initconfig.VerityNone}
			case vUnsigned:
				c.Test.Boot = false
			case vOtherKey:
				c.SecureBoot = manifest.SecureBoot{Key: filepath.Join(b.other, "db.key"), Cert: filepath.Join(b.other, "db.crt")}
				c.Test.Boot = false
			}
			b.set[v][arch] = c
		}
	}
	if b.st, err = artifacts.Open(ctx, filepath.Join(b.dir, "cache"), false); err != nil {
		return nil, err
	}
	start := time.Now()
	if b.plan, b.res, err = b.execute(nil); err != nil {
		return nil, err
	}
	b.elapsed = time.Since(start)
	return b, nil
}

// stageTable is stages.All() (which this package cannot import: it
// imports boottest).
func stageTable() []pipeline.Stage {
	return []pipeline.Stage{source.New(), cfsstage.New(), initramfs.New(), ostreestage.New(), uki.New(), disk.New(), sign.New(), New()}
}

// execute runs the plan of the set; rerun forces nodes to run.
func (b *built) execute(rerun func(*pipeline.Node) bool) (*pipeline.Plan, *pipeline.Result, error) {
	ctx := context.Background()
	plan, err := pipeline.Resolve(ctx, b.set, stageTable(), &pipeline.ResolveOptions{Offline: true})
	if err != nil {
		return nil, nil, err
	}
	var logs stagetest.SyncBuffer
	res, err := pipeline.Execute(ctx, plan, b.st, &pipeline.ExecOptions{Jobs: 1, LogWriter: &logs, Rerun: rerun,
		Secret: func(n string) (string, bool) { return passphrase, n == "CFS_SIGNING_PASSWORD" }})
	if err != nil {
		return nil, nil, &buildError{err: err, logs: logs.String()}
	}
	return plan, res, nil
}

type buildError struct {
	err  error
	logs string
}

func (e *buildError) Error() string { return e.err.Error() + "\nlogs:\n" + e.logs }

// node returns the result of a stage of a version and arch.
func (b *built) node(t testing.TB, version, arch, kind string) *pipeline.NodeResult {
	t.Helper()
	for _, tn := range b.plan.Targets {
		if tn.Target.Variant == version && tn.Target.Arch == arch {
			n := tn.Nodes[kind]
			if n == nil {
				t.Fatalf("%s/%s has no %s stage", version, arch, kind)
			}
			return b.res.Of(n)
		}
	}
	t.Fatalf("no target %s/%s", version, arch)
	return nil
}

// output returns the store path of a stage output.
func (b *built) output(t testing.TB, version, arch, kind, name string) string {
	t.Helper()
	o, ok := b.node(t, version, arch, kind).Record.Outputs[name]
	if !ok {
		t.Fatalf("%s/%s %s has no output %s", version, arch, kind, name)
	}
	return b.st.Path(o.Descriptor)
}

// disk returns the raw disk image of a version.
func (b *built) disk(t testing.TB, version, arch string) string {
	return b.output(t, version, arch, "disk", "raw")
}

// digest returns the composefs digest of a version.
func (b *built) digest(t testing.TB, version, arch string) string {
	t.Helper()
	raw, err := os.ReadFile(b.output(t, version, arch, "composefs", "digest"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	return d.Digest
}

// layout returns the disk layout of a version.
func (b *built) layout(t testing.TB, version, arch string) artifacts.DiskLayout {
	t.Helper()
	raw, err := os.ReadFile(b.output(t, version, arch, "disk", "layout"))
	if err != nil {
		t.Fatal(err)
	}
	var l artifacts.DiskLayout
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

// config resolves the boottest config of a version (with test.boot on).
func (b *built) config(t testing.TB, version, arch string) *Config {
	t.Helper()
	mc := *b.set[version][arch]
	mc.Test.Boot = true
	c, err := resolve(&mc, b.set.Compose())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// copyDisk copies a disk image (sparse) into dir.
func copyDisk(t testing.TB, src, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, filepath.Base(src)+".raw")
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copying %s: %v: %s", src, err, out)
	}
	if err := os.Chmod(dst, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// flipAll flips the lowest bit of the byte at off in every occurrence of
// pattern within [start, start+size) of the file, and returns how many
// occurrences it changed. Only occurrences starting on a multiple of align
// (relative to start) count. The region is read in chunks.
func flipAll(t testing.TB, path string, start, size int64, pattern []byte, off int, align int64) int {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const chunk = 16 << 20
	overlap := int64(len(pattern) - 1)
	buf := make([]byte, chunk+overlap)
	var hits []int64
	for pos := int64(0); pos < size; pos += chunk {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-pos)], start+pos)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		for i := 0; ; {
			j := bytes.Index(buf[i:n], pattern)
			if j < 0 {
				break
			}
			at := pos + int64(i+j)
			if at%align == 0 && at < pos+chunk {
				hits = append(hits, at)
			}
			i += j + 1
		}
	}
	for _, at := range hits {
		var b [1]byte
		if _, err := f.ReadAt(b[:], start+at+int64(off)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{b[0] ^ 0x01}, start+at+int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	return len(hits)
}

// tamperCmdline returns a copy of a version's disk in which one byte of
// the UKI's .cmdline is changed, in both copies of the UKI on the ESP.
func (b *built) tamperCmdline(t testing.TB, version, arch, dir string) string {
	t.Helper()
	f, err := pe.Open(b.output(t, version, arch, "uki", "uki"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := f.Section(".cmdline")
	if s == nil {
		t.Fatal("the UKI has no .cmdline")
	}
	cmdline, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	cmdline = cmdline[:s.VirtualSize]
	disk := copyDisk(t, b.disk(t, version, arch), dir)
	esp := partition(t, b.layout(t, version, arch), "esp")
	if n := flipAll(t, disk, esp.Offset, esp.Size, cmdline, 0, 1); n == 0 {
		t.Fatalf("the command line %q is not on the ESP", cmdline)
	}
	return disk
}

// tamperImage returns a copy of a version's disk in which one byte of the
// composefs image on the root partition is changed.
func (b *built) tamperImage(t testing.TB, version, arch, dir string) string {
	t.Helper()
	img, err := os.ReadFile(b.output(t, version, arch, "composefs", "image"))
	if err != nil {
		t.Fatal(err)
	}
	disk := copyDisk(t, b.disk(t, version, arch), dir)
	root := partition(t, b.layout(t, version, arch), "root")
	block := img[:min(len(img), 4096)]
	if n := flipAll(t, disk, root.Offset, root.Size, block, len(block)/2, 4096); n != 1 {
		t.Fatalf("the composefs image's first block is on the root partition %d times, want 1", n)
	}
	return disk
}

func partition(t testing.TB, l artifacts.DiskLayout, typ string) artifacts.DiskPartition {
	t.Helper()
	for _, p := range l.Partitions {
		if p.Type == typ {
			return p
		}
	}
	t.Fatalf("the disk has no %s partition", typ)
	return artifacts.DiskPartition{}
}
