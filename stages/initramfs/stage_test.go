package initramfs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	cpio "github.com/cfs-compose/cfs-compose/internal/initramfs"
	"github.com/cfs-compose/cfs-compose/internal/kmod"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/initramfs"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
	"github.com/cfs-compose/cfs-compose/stages/source"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

var _ pipeline.Stage = initramfs.New()

// cosignKeys writes a development key set and returns cosign.key's path.
func cosignKeys(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := signing.GenerateKeys(dir, signing.GenerateOptions{Passphrase: []byte("pw")}); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, signing.CosignKeyFile)
}

// TestBuiltin builds the builtin initramfs from the fixture image and
// reads the archive back: cfs-init as /init, the modules in load order
// (decompressed, each the module its name says), the console device, and
// the init configuration.
func TestBuiltin(t *testing.T) {
	initBin := requireInitbin(t)
	ref := fixtureRef(t)
	key := cosignKeys(t)
	pubPEM, err := os.ReadFile(strings.TrimSuffix(key, ".key") + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		edit        func(c *manifest.Config)
		wantModules []string
		wantBuiltin []string
		want        initconfig.Config
	}{{
		name: "composefs signed, verity require, extra modules",
		edit: func(c *manifest.Config) {
			c.Composefs.Verity, c.Composefs.Signed = initconfig.VerityRequire, true
			c.Signing.Key, c.Signing.Pub = key, strings.TrimSuffix(key, ".key")+".pub"
			c.Initramfs.Modules = []string{"vfat", "virtio-blk", "efivarfs"}
			c.Disk.Partitions[1].Label = "sysroot"
		},
		wantModules: []string{"virtio_blk.ko", "loop.ko", "libcrc32c.ko", "erofs.ko", "overlay.ko", "fat.ko", "vfat.ko", "efivarfs.ko"},
		wantBuiltin: []string{"ext4"},
		want:        initconfig.Config{Composefs: true, Verity: "require", Signed: true, PublicKey: string(pubPEM), RootLabel: "sysroot"},
	}, {
		name:        "composefs unsigned",
		edit:        func(c *manifest.Config) {},
		wantModules: []string{"virtio_blk.ko", "loop.ko", "libcrc32c.ko", "erofs.ko", "overlay.ko"},
		wantBuiltin: []string{"ext4"},
		want:        initconfig.Config{Composefs: true, Verity: "enable", RootLabel: "root"},
	}, {
		name: "plain root",
		edit: func(c *manifest.Config) {
			c.Composefs.Enabled = false
			c.Composefs.Signed = true // ignored without composefs
		},
		wantModules: []string{"virtio_blk.ko"},
		wantBuiltin: []string{"ext4"},
		want:        initconfig.Config{Composefs: false, Verity: "none", RootLabel: "root"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := config(ref)
			tc.edit(mc)
			st := openStore(t)
			p, res, err := build(t, st, mc, source.New(), initramfs.New())
			if err != nil {
				t.Fatal(err)
			}
			o := output(t, p, res, contract.Initramfs, contract.InitramfsArchive.Name)
			raw, err := os.ReadFile(st.Path(o.Descriptor))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
				t.Errorf("archive is not gzip-compressed: % x", raw[:4])
			}
			entries, err := cpio.Read(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			byPath := map[string]cpio.Entry{}
			var paths, modFiles []string
			for _, e := range entries {
				byPath[e.Path] = e
				paths = append(paths, e.Path)
				if strings.HasPrefix(e.Path, initconfig.ModuleDir+"/") {
					modFiles = append(modFiles, strings.TrimPrefix(e.Path, initconfig.ModuleDir+"/"))
				}
			}
			if init := byPath["init"]; init.Type != cpio.TypeFile || init.Perm != 0o755 || !bytes.Equal(init.Data, initBin) {
				t.Errorf("init: type %v perm %o, %d bytes; want the embedded cfs-init (%d bytes)", init.Type, init.Perm, len(init.Data), len(initBin))
			}
			if c := byPath["dev/console"]; c.Type != cpio.TypeCharDev || c.Major != 5 || c.Minor != 1 || c.Perm != 0o600 {
				t.Errorf("dev/console: %+v", c)
			}
			for _, d := range []string{"proc", "sys", "run", "sysroot", "tmp"} {
				if byPath[d].Type != cpio.TypeDir {
					t.Errorf("no %s/ in %v", d, paths)
				}
			}
			cfg, err := initconfig.Parse(byPath[initconfig.Path].Data)
			if err != nil {
				t.Fatalf("%s: %v", initconfig.Path, err)
			}
			if !slices.Equal(cfg.Modules, tc.wantModules) {
				t.Errorf("configured modules %v, want %v", cfg.Modules, tc.wantModules)
			}
			slices.Sort(modFiles)
			sorted := slices.Sorted(slices.Values(tc.wantModules))
			if !slices.Equal(modFiles, sorted) {
				t.Errorf("module files %v, want %v", modFiles, sorted)
			}
			for _, f := range tc.wantModules {
				data := byPath[initconfig.ModuleDir+"/"+f].Data
				info, err := kmod.ModInfo(data)
				if err != nil {
					t.Errorf("%s: %v", f, err)
					continue
				}
				if info["name"] != strings.TrimSuffix(f, ".ko") {
					t.Errorf("%s is module %q", f, info["name"])
				}
			}
			got := cfg
			got.Modules, got.Version = nil, 0
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("init config\n got %+v\nwant %+v", got, tc.want)
			}
			var metaMods, metaBuiltin []string
			json.Unmarshal(res.Of(p.Targets[0].Nodes[contract.Initramfs]).Record.Meta["modules"], &metaMods)
			json.Unmarshal(res.Of(p.Targets[0].Nodes[contract.Initramfs]).Record.Meta["built_in"], &metaBuiltin)
			if !slices.Equal(metaMods, tc.wantModules) || !slices.Equal(metaBuiltin, tc.wantBuiltin) {
				t.Errorf("meta modules %v built_in %v", metaMods, metaBuiltin)
			}
		})
	}
}

// TestCacheKey: the same inputs are cached; a module change reruns the
// initramfs but not the source; settings the initramfs does not read
// (kernel.cmdline) leave its key alone.
func TestCacheKey(t *testing.T) {
	requireInitbin(t)
	ref := fixtureRef(t)
	st := openStore(t)
	mc := config(ref)
	stages := []pipeline.Stage{source.New(), initramfs.New()}
	p1, res1, err := build(t, st, mc, stages...)
	if err != nil {
		t.Fatal(err)
	}
	key := func(p *pipeline.Plan, res *pipeline.Result, kind string) (string, pipeline.Status) {
		nr := res.Of(p.Targets[0].Nodes[kind])
		return nr.Key, nr.Status
	}
	k1, s1 := key(p1, res1, contract.Initramfs)
	if s1 != pipeline.StatusRan {
		t.Fatalf("first run: %s", s1)
	}
	tests := []struct {
		name       string
		edit       func(c *manifest.Config)
		wantStatus pipeline.Status
		sameKey    bool
	}{
		{"unchanged", func(c *manifest.Config) {}, pipeline.StatusCached, true},
		{"cmdline changed", func(c *manifest.Config) { c.Kernel.Cmdline = []string{"console=ttyS0", "quiet"} }, pipeline.StatusCached, true},
		{"uki name changed", func(c *manifest.Config) { c.UKI.Name = "other" }, pipeline.StatusCached, true},
		{"module added", func(c *manifest.Config) { c.Initramfs.Modules = []string{"vfat"} }, pipeline.StatusRan, false},
		{"verity changed", func(c *manifest.Config) { c.Composefs.Verity = initconfig.VerityRequire }, pipeline.StatusRan, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := config(ref)
			tc.edit(mc)
			p, res, err := build(t, st, mc, stages...)
			if err != nil {
				t.Fatal(err)
			}
			if _, s := key(p, res, contract.Source); s != pipeline.StatusCached {
				t.Errorf("source: %s, want cached", s)
			}
			k, s := key(p, res, contract.Initramfs)
			if s != tc.wantStatus || (k == k1) != tc.sameKey {
				t.Errorf("initramfs: %s (key same: %t), want %s (same: %t)", s, k == k1, tc.wantStatus, tc.sameKey)
			}
		})
	}
}

// TestModuleErrors: modules that do not exist or are not module names are
// errors naming them, at plan time when the name alone is wrong, else at
// run time with the kernel version.
func TestModuleErrors(t *testing.T) {
	requireInitbin(t)
	c := fixtureContent(t)
	kver := c.Kernel.Version
	var dep []string
	for _, l := range strings.Split(string(c.Kernel.Dep), "\n") {
		if !strings.Contains(l, "erofs") && l != "" {
			dep = append(dep, l)
		}
	}
	noErofs := derivedImage(t, ti.File("usr/lib/modules/"+kver+"/modules.dep", strings.Join(dep, "\n")+"\n", 0o644),
		ti.Whiteout("usr/lib/modules/"+kver+"/kernel/fs/erofs/erofs.ko.xz"))
	ref := fixtureRef(t)
	tests := []struct {
		name    string
		image   string
		modules []string
		atPlan  bool
		want    []string
	}{
		{"missing extra module", ref, []string{"vfat", "no_such_module"}, false,
			[]string{"initramfs.modules", "module not found: no_such_module", kver}},
		{"path as module name", ref, []string{"../../etc/passwd"}, true, []string{`initramfs.modules[0] = "../../etc/passwd"`}},
		{"file name as module name", ref, []string{"erofs", "erofs.ko"}, true, []string{`initramfs.modules[1] = "erofs.ko"`}},
		{"base module missing from the image", noErofs, nil, false,
			[]string{"module erofs, which the builtin initramfs needs to mount the root", "module not found: erofs", kver}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := config(tc.image)
			mc.Initramfs.Modules = tc.modules
			p, _, err := build(t, openStore(t), mc, source.New(), initramfs.New())
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if (p == nil) != tc.atPlan {
				t.Errorf("error at plan time: %t, want %t (%v)", p == nil, tc.atPlan, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestPlanKeyErrors: signed composefs needs a readable ECDSA P-256 or
// Ed25519 public key; problems are plan-time errors naming the file.
func TestPlanKeyErrors(t *testing.T) {
	requireInitbin(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pub")
	os.WriteFile(garbage, []byte("not a key\n"), 0o644)
	key := cosignKeys(t)
	tests := []struct {
		name string
		sign manifest.Signing
		want []string
	}{
		{"public key missing", manifest.Signing{Key: filepath.Join(dir, "absent.key"), Pub: filepath.Join(dir, "absent.pub")}, []string{"composefs.signed", filepath.Join(dir, "absent.pub"), "no such file"}},
		{"public key garbage", manifest.Signing{Key: key, Pub: garbage}, []string{"composefs.signed", garbage, "PUBLIC KEY"}},
		{"private key given as public", manifest.Signing{Key: key, Pub: key}, []string{"composefs.signed", key}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := config("oci:/nonexistent:x") // plan fails before the image matters
			mc.Composefs.Signed = true
			mc.Signing = tc.sign
			_, err := pipeline.PlanConfig[initramfs.Config](context.Background(), initramfs.New(), stagetest.PlanContext(t, mc))
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestImageSource: initramfs { source = "image" } copies the image's
// initramfs.img byte for byte, and without one names the missing file.
func TestImageSource(t *testing.T) {
	c := fixtureContent(t)
	kver := c.Kernel.Version
	img := "usr/lib/modules/" + kver + "/initramfs.img"
	var want bytes.Buffer
	w := cpio.NewWriter(&want, cpio.Zstd)
	w.AddFile("init", []byte("#!/bin/sh\necho dracut stand-in\n"), 0o755)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		image   string
		wantErr string
	}{
		{"with initramfs.img", derivedImage(t, ti.File(img, want.String(), 0o644)), ""},
		{"without initramfs.img", fixtureRef(t), "/" + img},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := config(tc.image)
			mc.Initramfs.Source = manifest.InitramfsImage
			st := openStore(t)
			p, res, err := build(t, st, mc, source.New(), initramfs.New())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `source = "image"`) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(st.Path(output(t, p, res, contract.Initramfs, contract.InitramfsArchive.Name).Descriptor))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("output (%d bytes) is not the image's initramfs.img (%d bytes)", len(got), want.Len())
			}
		})
	}
}
