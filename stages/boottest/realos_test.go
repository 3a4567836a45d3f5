package boottest

// The real-OS boot tests: the shipped testbed-os variant (manifests/
// testbed-os.hcl, the Debian systemd OS fixture of `make fixtures`) built
// by the stage table and booted to multi-user.target with the agent
// delivered at boot. Each real-OS boot costs 1-2 minutes (x86_64) or
// 2-4 (aarch64) under TCG, so the set is small:
//
//	os         composefs on, x86_64 and aarch64 (boot-tested; x86_64 boots
//	           twice for persist-reboot, test.reboot of the manifest)
//	os-plain   composefs off (the contingency switch), x86_64 and aarch64
//	           (boot-tested)
//	os-nobt    composefs on, x86_64, no boot test: what a plain `build`
//	           produces, to show the boot test changed nothing in the image
//	os-require composefs with verity = "require", x86_64, no boot test
//	           stage: TestObjectTamper boots it twice itself
//	os-extra   composefs on, x86_64 (boot-tested), built from the OS
//	           fixture plus a layer adding /data, which rootfs.extra_dirs
//	           declares: TestRealOSExtraDirs
//	ostree     the shipped testbed-ostree variant (manifests/
//	           testbed-ostree.hcl): an ostree sysroot booted by the image's
//	           own dracut initramfs and Debian's ostree-prepare-root,
//	           composefs off, x86_64, booted twice (persist-reboot)
//	ostree-cfs the same ostree sysroot with composefs on (verity
//	           "enable"), booted by cfs-init in ostree mode: the builtin
//	           initramfs checks the commit's composefs digest against the
//	           UKI's composefs= and .ostree.cfs against both, and mounts it
//	           over the repository's objects (Debian's ostree cannot),
//	           x86_64 and aarch64, booted once

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures/ocilayout"
)

const (
	vOS      = "os"
	vOSPlain = "os-plain"
	vOSNoBT  = "os-nobt"
	vOSReq   = "os-require"
	vOSExtra = "os-extra"
	vOstree  = "ostree"
	vOstCfs  = "ostree-cfs"
)

// extraDir is the root-level directory os-extra's image adds and declares
// in rootfs.extra_dirs.
const extraDir = "/data"

// osSet is a pipeline.Manifests of the real-OS versions.
type osSet map[string]map[string]*manifest.Config

func (m osSet) Variants() []string {
	return []string{vOS, vOSNoBT, vOSPlain, vOSReq, vOSExtra, vOstree, vOstCfs}
}
func (m osSet) Arches(v string) []string {
	var as []string
	for _, a := range []string{"aarch64", "x86_64"} {
		if m[v][a] != nil {
			as = append(as, a)
		}
	}
	return as
}
func (m osSet) Config(v, a string) (*manifest.Config, error) { c := *m[v][a]; return &c, nil }
func (m osSet) Compose() manifest.Compose {
	return manifest.Compose{Product: "Fedora", Release: "41", Type: "test"}
}

var (
	osOnce  sync.Once
	osBuilt *built
	osErr   error
	// osConfigs are the manifests osBuilt was built from.
	osConfigs osSet
)

// buildOS builds (and boot-tests) the real-OS set once per test binary;
// arches are the arches of the boot-tested composefs version.
func buildOS(t testing.TB) *built {
	t.Helper()
	return buildOSSet(t, true)
}

// buildOSSet builds the real-OS set once per test binary, with the boot
// test stages of its boot-tested versions when bootTests is set, else
// without any (the benchmarks boot the disks themselves and do not pay
// for the tests' boots). The first call decides: go test runs the tests,
// which want the boot tests, before the benchmarks.
func buildOSSet(t testing.TB, bootTests bool) *built {
	t.Helper()
	layout, err := fixtures.DefaultLayoutDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(layout), fixtures.OSLinkName, "index.json")); err != nil {
		t.Skipf("SKIPPING REAL-OS BOOT TEST: no OS fixture at testbed/fixtures/build/%s (make fixtures builds and links it): %v", fixtures.OSLinkName, err)
	}
	osOnce.Do(func() { osBuilt, osErr = runOSBuild(bootTests) })
	if osErr != nil {
		t.Fatalf("building the real-OS composes: %v", osErr)
	}
	firmwareEnv(t, osBuilt.tools)
	return osBuilt
}

func runOSBuild(bootTests bool) (*built, error) {
	ctx := context.Background()
	// The busybox build sets up the firmware, tools and scratch directory.
	buildOnce.Do(func() { shared, sharedErr = runBuild() })
	if sharedErr != nil {
		return nil, sharedErr
	}
	m, diags := manifest.Load("../../manifests", nil)
	if diags.HasErrors() {
		return nil, diags
	}
	dir := filepath.Join(shared.dir, "realos")
	extraRef, err := deriveOSImage(filepath.Join(dir, "extra-oci"), "amd64", extraDir)
	if err != nil {
		return nil, fmt.Errorf("deriving the os-extra image: %w", err)
	}
	set := osSet{}
	for _, v := range []string{vOS, vOSPlain, vOSNoBT, vOSReq, vOSExtra} {
		set[v] = map[string]*manifest.Config{}
		arches := []string{"x86_64"}
		if v == vOS || v == vOSPlain {
			arches = append(arches, "aarch64")
		}
		for _, arch := range arches {
			c, err := m.Config("testbed-os", arch)
			if err != nil {
				return nil, err
			}
			c.Variant, c.Name = v, "Testbed-"+v
			// One reboot test is enough for CI time: x86_64 composefs.
			c.Test.Reboot = c.Test.Reboot && v == vOS && arch == "x86_64"
			switch v {
			case vOSPlain:
				c.Composefs = manifest.Composefs{Enabled: false, Verity: initconfig.VerityNone}
			case vOSNoBT:
				c.Test.Boot = false
			case vOSReq:
				c.Composefs.Verity = initconfig.VerityRequire
				c.Test.Boot = false
			case vOSExtra:
				c.Source.Image = extraRef
				c.Rootfs.ExtraDirs = []string{extraDir}
			}
			c.Test.Boot = c.Test.Boot && bootTests
			set[v][arch] = c
		}
	}
	c, err := m.Config("testbed-ostree", "x86_64")
	if err != nil {
		return nil, err
	}
	c.Variant, c.Name = vOstree, "Testbed-"+vOstree
	c.Test.Boot = c.Test.Boot && bootTests
	set[vOstree] = map[string]*manifest.Config{"x86_64": c}
	set[vOstCfs] = map[string]*manifest.Config{}
	for _, arch := range []string{"x86_64", "aarch64"} {
		c, err := m.Config("testbed-ostree", arch)
		if err != nil {
			return nil, err
		}
		c.Variant, c.Name = vOstCfs, "Testbed-"+vOstCfs
		c.Composefs = manifest.Composefs{Enabled: true, Verity: initconfig.VerityEnable}
		c.Initramfs = manifest.Initramfs{Source: manifest.InitramfsBuiltin}
		c.Test.Reboot = false
		c.Test.Boot = c.Test.Boot && bootTests
		set[vOstCfs][arch] = c
	}
	osConfigs = set
	b := &built{tools: shared.tools, dir: dir}
	st, err := artifacts.Open(ctx, filepath.Join(b.dir, "cache"), false)
	if err != nil {
		return nil, err
	}
	b.st = st
	start := time.Now()
	plan, err := pipeline.Resolve(ctx, set, stageTable(), &pipeline.ResolveOptions{Offline: true})
	if err != nil {
		return nil, err
	}
	res, err := pipeline.Execute(ctx, plan, b.st, &pipeline.ExecOptions{Jobs: 1})
	if err != nil {
		return nil, err
	}
	b.plan, b.res, b.elapsed = plan, res, time.Since(start)
	return b, nil
}

// TestRealOS boots the real OS: composefs on and off, x86_64 and
// aarch64, and deployed as an ostree sysroot booted by the image's own
// initramfs (x86_64), systemd running with nothing failed, every applicable check
// passing; and the composefs image of the boot-tested build is the one a
// plain build (no boot test) produces: the agent is not in the image.
func TestRealOS(t *testing.T) {
	requireBoot(t, "x86_64")
	requireBoot(t, "aarch64")
	b := buildOS(t)
	t.Logf("real-OS build and boot tests: %.1fs, %v", b.elapsed.Seconds(), b.res.Counts())
	common := []string{"agent-report", "uefi-boot", "systemd-running", "root-immutable", "sysroot", "etc-writable", "var-writable"}
	want := map[string][]string{
		vOS:      append([]string{"composefs-root", "composefs-digest", "composefs-verity", "root-full", "usr-readonly"}, common...),
		vOSPlain: append([]string{"plain-root"}, common...),
		// usr-readonly applies to ostree deployments too: prepare-root
		// binds /usr read-only (os-plain's /usr is writable: SKIP there).
		vOstree: append([]string{"plain-root", "usr-readonly", "ostree-booted", "image-initramfs"}, common...),
		vOstCfs: append([]string{"composefs-root", "composefs-digest", "composefs-verity", "root-full", "usr-readonly", "ostree-booted"}, common...),
	}
	for _, vt := range []struct{ v, arch string }{{vOS, "x86_64"}, {vOSPlain, "x86_64"}, {vOS, "aarch64"}, {vOSPlain, "aarch64"}, {vOstree, "x86_64"}, {vOstCfs, "x86_64"}, {vOstCfs, "aarch64"}} {
		reboot := (vt.v == vOS || vt.v == vOstree) && vt.arch == "x86_64"
		nr := b.node(t, vt.v, vt.arch, contract.BootTest)
		if nr.Status != pipeline.StatusRan {
			t.Fatalf("%s/%s: boottest %s", vt.v, vt.arch, nr.Status)
		}
		name := "Fedora-Testbed-" + vt.v + "-41." + vt.arch
		pass := want[vt.v]
		if reboot {
			pass = append(slices.Clip(pass), "persist-reboot")
		}
		checkOutputs(t, b.st, nr.Record, name, pass)
		var r artifacts.BootTestResults
		raw, err := os.ReadFile(b.st.Path(nr.Record.Outputs["results"].Descriptor))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if r.Facts["agent-delivery"] != AgentSystemd || r.Facts["pid"] == "1" {
			t.Errorf("%s: agent delivery %q, pid %s", name, r.Facts["agent-delivery"], r.Facts["pid"])
		}
		if vt.v == vOstree || vt.v == vOstCfs {
			// The guest booted the deployment the ostree stage wrote.
			var dep artifacts.OstreeDeployment
			rec := b.node(t, vt.v, vt.arch, contract.Ostree).Record
			raw, err := os.ReadFile(b.st.Path(rec.Outputs["deployment"].Descriptor))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &dep); err != nil {
				t.Fatal(err)
			}
			if want := dep.Stateroot + " " + dep.Commit + ".0"; r.Facts["ostree-booted"] != want {
				t.Errorf("%s: booted deployment %q, the compose wrote %q", name, r.Facts["ostree-booted"], want)
			}
		}
		if !slices.Contains(r.Features, "systemd") {
			t.Errorf("%s: features %v lack systemd", name, r.Features)
		}
		if got := slices.Contains(r.Features, "reboot"); got != reboot {
			t.Errorf("%s: reboot feature %v, want %v", name, got, reboot)
		}
		if reboot {
			// The second boot found the first boot's tokens: the
			// checks above include persist-reboot.
			for _, k := range []string{"persist-etc", "persist-var-lib"} {
				if w := r.FirstBootFacts[k]; w != "new:"+r.Facts[k] {
					t.Errorf("%s: %s first boot %q, second %q", name, k, w, r.Facts[k])
				}
			}
			t.Logf("REAL-OS BOOT TIME %s: first boot verdict %.1fs", name, r.FirstBootVerdictSeconds)
		}
		t.Logf("REAL-OS BOOT TIME %s: verdict %.1fs, QEMU %.1fs", name, r.VerdictSeconds, r.QEMUSeconds)
	}
	// The image under test is the image a plain build produces.
	if got, plain := b.digest(t, vOS, "x86_64"), b.digest(t, vOSNoBT, "x86_64"); got != plain || got == "" {
		t.Errorf("the boot-tested build's composefs digest %s differs from a plain build's %s", got, plain)
	}
}

// TestRealOSExtraDirs: the real OS built from an image with one more
// root-level directory, declared in rootfs.extra_dirs, boots with
// composefs and root-immutable finds the directory in the read-only root
// (the agent gets the manifest's extra_dirs through its unit).
func TestRealOSExtraDirs(t *testing.T) {
	requireBoot(t, "x86_64")
	b := buildOS(t)
	const arch = "x86_64"
	nr := b.node(t, vOSExtra, arch, contract.BootTest)
	if nr.Status != pipeline.StatusRan {
		t.Fatalf("%s/%s: boottest %s", vOSExtra, arch, nr.Status)
	}
	name := "Fedora-Testbed-" + vOSExtra + "-41." + arch
	checkOutputs(t, b.st, nr.Record, name, []string{"agent-report", "systemd-running", "composefs-root", "composefs-digest", "root-immutable", "sysroot"})
	var r artifacts.BootTestResults
	raw, err := os.ReadFile(b.st.Path(nr.Record.Outputs["results"].Descriptor))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	want := "rootfs.extra_dirs present: " + extraDir
	for _, c := range r.Checks {
		if c.Name != "root-immutable" {
			continue
		}
		if out := strings.Join(c.Output, "; "); !strings.Contains(out, want) {
			t.Errorf("root-immutable: %q, want %q", out, want)
		} else {
			t.Logf("root-immutable: %s", out)
		}
		return
	}
	t.Errorf("no root-immutable check in %s", name)
}

// deriveOSImage writes an OCI layout into dir holding the OS fixture's
// image for goarch plus one layer that adds the root-level directory
// rootDir, and returns its reference. The fixture's blobs are linked, not
// copied; the new layer, config and manifest are written.
func deriveOSImage(dir, goarch, rootDir string) (string, error) {
	layout, err := fixtures.DefaultLayoutDir()
	if err != nil {
		return "", err
	}
	src, err := filepath.EvalSymlinks(filepath.Join(filepath.Dir(layout), fixtures.OSLinkName))
	if err != nil {
		return "", fmt.Errorf("locating the OS fixture: %w", err)
	}
	blob := func(digest string) string {
		return filepath.Join(src, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
	}
	readJSON := func(p string, v any) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("decoding %s: %w", p, err)
		}
		return nil
	}
	var idx struct {
		Manifests []ocilayout.Descriptor `json:"manifests"`
	}
	if err := readJSON(filepath.Join(src, "index.json"), &idx); err != nil {
		return "", err
	}
	var md *ocilayout.Descriptor
	for i, d := range idx.Manifests {
		if d.MediaType == ocilayout.MediaTypeManifest && d.Platform != nil && d.Platform.Architecture == goarch {
			md = &idx.Manifests[i]
		}
	}
	if md == nil {
		return "", fmt.Errorf("the OS fixture %s has no %s image", src, goarch)
	}
	// Generic JSON, so that every field of the fixture's documents stays.
	var man, cfg map[string]any
	if err := readJSON(blob(md.Digest), &man); err != nil {
		return "", err
	}
	var layers []ocilayout.Descriptor
	var cd ocilayout.Descriptor
	if err := remarshal(man["layers"], &layers); err != nil {
		return "", err
	}
	if err := remarshal(man["config"], &cd); err != nil {
		return "", err
	}
	if err := readJSON(blob(cd.Digest), &cfg); err != nil {
		return "", err
	}

	w, err := ocilayout.Create(dir)
	if err != nil {
		return "", err
	}
	for _, l := range layers {
		if err := os.Symlink(blob(l.Digest), filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:"))); err != nil {
			return "", fmt.Errorf("linking layer %s: %w", l.Digest, err)
		}
	}
	created := time.Date(2025, 8, 9, 0, 0, 0, 0, time.UTC)
	raw, err := ocilayout.TarBytes([]ocilayout.Entry{{Header: tar.Header{Name: strings.TrimPrefix(rootDir, "/") + "/",
		Typeflag: tar.TypeDir, Mode: 0o755, ModTime: created, Format: tar.FormatPAX}}})
	if err != nil {
		return "", err
	}
	gz, err := ocilayout.Compress(raw, ocilayout.Gzip)
	if err != nil {
		return "", err
	}
	ld, err := w.Blob(ocilayout.MediaTypeLayerGzip, gz)
	if err != nil {
		return "", err
	}
	rootfs, _ := cfg["rootfs"].(map[string]any)
	diffIDs, _ := rootfs["diff_ids"].([]any)
	if rootfs == nil || len(diffIDs) != len(layers) {
		return "", fmt.Errorf("the fixture's config has %d diff_ids for %d layers", len(diffIDs), len(layers))
	}
	rootfs["diff_ids"] = append(diffIDs, fmt.Sprintf("sha256:%x", sha256.Sum256(raw)))
	hist, _ := cfg["history"].([]any)
	cfg["history"] = append(hist, map[string]any{"created": created.Format(time.RFC3339), "created_by": "boottest: root-level " + rootDir + " (rootfs.extra_dirs)"})
	cb, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	ncd, err := w.Blob(ocilayout.MediaTypeConfig, cb)
	if err != nil {
		return "", err
	}
	man["config"], man["layers"] = ncd, append(layers, ld)
	mb, err := json.Marshal(man)
	if err != nil {
		return "", err
	}
	nmd, err := w.Blob(ocilayout.MediaTypeManifest, mb)
	if err != nil {
		return "", err
	}
	nmd.Platform = md.Platform
	const tag = "testbed-os-extra"
	w.Tag(nmd, tag)
	if err := w.Close(); err != nil {
		return "", err
	}
	return "oci:" + dir + ":" + tag, nil
}

// remarshal converts a decoded JSON value into v.
func remarshal(from, v any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// TestDeriveOSImage: the derived layout of os-extra is a valid OCI layout
// (every digest and diff_id checked) whose image is the fixture's, labels
// included, plus one last layer holding the root-level directory only.
func TestDeriveOSImage(t *testing.T) {
	layout, err := fixtures.DefaultLayoutDir()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(filepath.Dir(layout), fixtures.OSLinkName)
	if _, err := os.Stat(filepath.Join(src, "index.json")); err != nil {
		t.Skipf("SKIPPING: no OS fixture at testbed/fixtures/build/%s (make fixtures builds and links it): %v", fixtures.OSLinkName, err)
	}
	orig, err := ocilayout.Validate(src)
	if err != nil {
		t.Fatal(err)
	}
	var base *ocilayout.ImageInfo
	for i, im := range orig {
		if im.Arch == "amd64" && im.Manifest.MediaType == ocilayout.MediaTypeManifest {
			base = &orig[i]
		}
	}
	if base == nil {
		t.Fatal("the OS fixture has no amd64 image")
	}
	dir := filepath.Join(t.TempDir(), "oci")
	ref, err := deriveOSImage(dir, "amd64", extraDir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "oci:" + dir + ":testbed-os-extra"; ref != want {
		t.Errorf("ref %s, want %s", ref, want)
	}
	got, err := ocilayout.Validate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d images in the derived layout, want 1", len(got))
	}
	im := got[0]
	if im.Arch != "amd64" || len(im.Layers) != len(base.Layers)+1 || !slices.Equal(im.DiffIDs[:len(base.DiffIDs)], base.DiffIDs) {
		t.Errorf("derived image: arch %s, %d layers (fixture %d), diff_ids %v", im.Arch, len(im.Layers), len(base.Layers), im.DiffIDs)
	}
	if !maps.Equal(im.Labels, base.Labels) || im.Labels["containers.bootc"] != "1" {
		t.Errorf("labels changed: %v", im.Labels)
	}
	last := im.Layers[len(im.Layers)-1]
	f, err := os.Open(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(last.Digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, fmt.Sprintf("%s %c %o", h.Name, h.Typeflag, h.Mode))
	}
	if want := []string{"data/ 5 755"}; !slices.Equal(names, want) {
		t.Errorf("the added layer holds %q, want %q", names, want)
	}
}
