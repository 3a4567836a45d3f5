package main

// A compose built for real by pipeline.Build, from fake composefs, uki and
// disk stages that write real artifacts (an EROFS composefs image and its
// objects, a UKI built from a synthetic stub with the composefs digest on
// its command line and optionally Authenticode-signed, a GPT disk with a
// FAT32 ESP and an ext4 root laid out as docs/boot-layout.md says) and the
// real sign stage, finalized by the build verb's finalizer.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/diskimage"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/internal/uki"
	"github.com/cfs-compose/cfs-compose/internal/uki/ukitest"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/sign"
)

// testPass is the passphrase of the fixture's cosign.key.
const testPass = "Pa55-fixture"

// testKeys makes a development key set (cosign.key with testPass).
func testKeys(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := signing.GenerateKeys(dir, signing.GenerateOptions{Passphrase: []byte(testPass)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testManifests is a pipeline.Manifests of literal configs.
type testManifests map[string]map[string]*manifest.Config

func (m testManifests) Variants() []string {
	var vs []string
	for v := range m {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	return vs
}

func (m testManifests) Arches(v string) []string {
	var as []string
	for a := range m[v] {
		as = append(as, a)
	}
	slices.Sort(as)
	return as
}

func (m testManifests) Config(v, a string) (*manifest.Config, error) {
	c, ok := m[v][a]
	if !ok {
		return nil, fmt.Errorf("no %s/%s", v, a)
	}
	cp := *c
	return &cp, nil
}

func (m testManifests) Compose() manifest.Compose {
	return manifest.Compose{Product: "Fedora", Release: "41", Type: "test"}
}

// variantConfig is a variant signed with the keys in keyDir: cosign
// when sign is set, Secure Boot when sb is set.
func variantConfig(variant, keyDir string, sign, sb bool) *manifest.Config {
	c := &manifest.Config{
		Variant: variant, Name: strings.ToUpper(variant[:1]) + variant[1:], Arch: "x86_64",
		Composefs: manifest.Composefs{Enabled: true, Verity: initconfig.VerityEnable},
		Kernel:    manifest.Kernel{Cmdline: []string{"console=ttyS0,115200n8"}},
	}
	if sign {
		c.Signing = manifest.Signing{Key: filepath.Join(keyDir, "cosign.key"), Pub: filepath.Join(keyDir, "cosign.pub")}
	}
	if sb {
		c.SecureBoot = manifest.SecureBoot{Key: filepath.Join(keyDir, "db.key"), Cert: filepath.Join(keyDir, "db.crt")}
	}
	return c
}

func publishName(name, arch, ext string) string {
	return fmt.Sprintf("Fedora-%s-41.%s.%s", name, arch, ext)
}

// fakeComposefs writes a composefs image of a small tree; its external
// files go into the shared object store.
type fakeComposefs struct{}

func (fakeComposefs) plan(_ context.Context, pc *pipeline.PlanContext) (*map[string]string, error) {
	return &map[string]string{"name": pc.Config.Name, "arch": pc.Config.Arch, "variant": pc.Config.Variant}, nil
}

func (fakeComposefs) run(_ context.Context, rc *pipeline.RunContext, cp *map[string]string) error {
	c := *cp
	tr := composefs.NewTree()
	for _, d := range []string{"/usr", "/usr/bin", "/usr/lib", "/etc"} {
		if err := tr.Add(d, &composefs.Inode{Mode: composefs.TypeDir | 0o755}); err != nil {
			return err
		}
	}
	files := map[string][]byte{
		"/usr/bin/hello":   []byte("#!/bin/sh\necho hello from " + c["variant"] + "\n"),
		"/usr/lib/big":     bytes.Repeat([]byte(c["variant"]+" big file\n"), 20000),
		"/usr/lib/another": []byte("another object"),
	}
	var objects []string
	for name, data := range files {
		d := fsverity.Sum(data)
		ino := &composefs.Inode{Mode: composefs.TypeRegular | 0o644, Size: int64(len(data))}
		ino.SetObject(d)
		if err := tr.Add(name, ino); err != nil {
			return err
		}
		p := filepath.Join(rc.ObjectsDir(), filepath.FromSlash(ino.Payload))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		objects = append(objects, fsverity.Hex(d))
	}
	inline := []byte("ID=testbed\n")
	if err := tr.Add("/etc/os-release", &composefs.Inode{Mode: composefs.TypeRegular | 0o644, Size: int64(len(inline)), Content: inline}); err != nil {
		return err
	}
	var img bytes.Buffer
	if err := composefs.WriteImage(&img, tr, &composefs.DefaultWriteOptions); err != nil {
		return err
	}
	if err := rc.AddObjectSet(objects); err != nil {
		return err
	}
	return contract.ComposefsImage.Put(rc, img.Bytes(), &artifacts.Publish{Filename: publishName(c["name"], c["arch"], "cfs")})
}

// fakeUKI builds a UKI around a synthetic stub with composefs=<digest> on
// its command line, Authenticode-signed when the config names db keys.
type fakeUKI struct{}

func (fakeUKI) inputs() []pipeline.Dep { return []pipeline.Dep{{Kind: "composefs", Optional: true}} }
func (fakeUKI) plan(_ context.Context, pc *pipeline.PlanContext) (*map[string]string, error) {
	return &map[string]string{
		"name": pc.Config.Name, "arch": pc.Config.Arch, "cmdline": strings.Join(pc.Config.Kernel.Cmdline, " "),
		"key": pc.Config.SecureBoot.Key, "cert": pc.Config.SecureBoot.Cert,
	}, nil
}

func (fakeUKI) run(ctx context.Context, rc *pipeline.RunContext, cp *map[string]string) error {
	c := *cp
	cmdline := c["cmdline"]
	if contract.ComposefsImage.Present(rc) {
		p, err := contract.ComposefsImage.Path(rc)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		d, _, err := fsverity.SumReader(f)
		f.Close()
		if err != nil {
			return err
		}
		cmdline += " composefs=" + fsverity.Hex(d)
	}
	stub := ukitest.Stub(4, 0x400, 0x1000, 0x200, nil)
	var buf bytes.Buffer
	err := uki.Build(&buf, bytes.NewReader(stub), int64(len(stub)), uki.Sections{
		Linux: strings.NewReader("not really a kernel " + c["arch"]), Initrd: strings.NewReader("not really an initramfs"),
		Cmdline: cmdline, OSRel: "ID=testbed\n", Uname: "6.12.0-test",
	})
	if err != nil {
		return err
	}
	out := filepath.Join(rc.TempDir(), "uki.efi")
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	if c["key"] != "" {
		kp, err := secureboot.LoadKeyPair(c["cert"], c["key"])
		if err != nil {
			return err
		}
		if err := secureboot.SignPE(ctx, kp, out, out); err != nil {
			return err
		}
	}
	return contract.UKIImage.AddFile(rc, out, &artifacts.Publish{Filename: publishName(c["name"], c["arch"], "efi"), Type: "uki", Format: "efi"})
}

// fakeDisk writes a GPT disk: the UKI on a FAT32 ESP, the composefs image
// and its objects on an ext4 root partition.
type fakeDisk struct{}

func (fakeDisk) inputs() []pipeline.Dep {
	return []pipeline.Dep{{Kind: "uki"}, {Kind: "composefs", Optional: true}}
}
func (fakeDisk) plan(_ context.Context, pc *pipeline.PlanContext) (*map[string]string, error) {
	return &map[string]string{"name": pc.Config.Name, "arch": pc.Config.Arch, "variant": pc.Config.Variant}, nil
}

func (fakeDisk) run(ctx context.Context, rc *pipeline.RunContext, cp *map[string]string) error {
	c := *cp
	ukiBytes, err := contract.UKIImage.Read(rc)
	if err != nil {
		return err
	}
	root := filepath.Join(rc.TempDir(), "root")
	if err := os.MkdirAll(filepath.Join(root, "state/os/default/var"), 0o755); err != nil {
		return err
	}
	if contract.ComposefsImage.Present(rc) {
		img, err := contract.ComposefsImage.Read(rc)
		if err != nil {
			return err
		}
		hexd := fsverity.Hex(fsverity.Sum(img))
		if err := writeFile(filepath.Join(root, "composefs/images", hexd), img); err != nil {
			return err
		}
		tr, err := composefs.ReadImage(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return err
		}
		for _, o := range tr.Objects() {
			data, err := os.ReadFile(filepath.Join(rc.ObjectsDir(), filepath.FromSlash(o)))
			if err != nil {
				return err
			}
			if err := writeFile(filepath.Join(root, "composefs/objects", filepath.FromSlash(o)), data); err != nil {
				return err
			}
		}
	}
	spec := &diskimage.Spec{
		Size: 96 << 20, Arch: c["arch"], Seed: "fixture/" + c["variant"], Epoch: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Partitions: []diskimage.Partition{
			{Name: "esp", Type: diskimage.TypeESP, Size: 48 << 20, FS: diskimage.FSVfat, Label: "ESP", Files: []diskimage.File{
				diskimage.BytesFile("EFI/BOOT/BOOTX64.EFI", ukiBytes),
				diskimage.BytesFile("EFI/Linux/"+c["variant"]+".efi", ukiBytes),
			}},
			{Name: "root", Type: diskimage.TypeRoot, Size: 0, FS: diskimage.FSExt4, Label: "root", Verity: true, Dir: root},
		},
	}
	out := filepath.Join(rc.TempDir(), "disk.raw")
	if _, err := diskimage.Write(ctx, spec, out); err != nil {
		return err
	}
	return contract.DiskRaw.AddFile(rc, out, &artifacts.Publish{Filename: publishName(c["name"], c["arch"], "raw"), Type: "raw", Format: "raw", Bootable: true})
}

func writeFile(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// fixtureStages is the stage table of the fixture: fake upstream stages
// and the real sign stage.
func fixtureStages() []pipeline.Stage {
	return []pipeline.Stage{fakeComposefs{}.stage(), fakeUKI{}.stage(), fakeDisk{}.stage(), sign.New()}
}

// testGlobals returns globals with an environment holding the passphrase.
func testGlobals(stderr io.Writer) *globals {
	g := &globals{stdin: strings.NewReader(""), stdout: io.Discard, stderr: stderr,
		environ: []string{passwordEnv + "=" + testPass}, logLevelV: zerolog.InfoLevel}
	g.log = g.newLogger(stderr)
	return g
}

// buildFixture builds a compose of m into out with the cache at cache the
// way the build verb does (key pre-flight, secrets, finalizer) and returns
// its record.
func buildFixture(t testing.TB, m testManifests, cache, out string) *artifacts.ComposeRecord {
	t.Helper()
	return buildFixtureWith(t, m, fixtureStages(), cache, out)
}

// buildFixtureWith is buildFixture with another stage table.
func buildFixtureWith(t testing.TB, m testManifests, stages []pipeline.Stage, cache, out string) *artifacts.ComposeRecord {
	t.Helper()
	ctx := context.Background()
	var log bytes.Buffer
	g := testGlobals(&log)
	keys, err := g.loadBuildKeys(m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := artifacts.Open(ctx, cache, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := pipeline.Build(ctx, m, stages, st, &pipeline.BuildOptions{
		Out:  out,
		Exec: pipeline.ExecOptions{Jobs: 2, Secret: keys.secret, Tool: "cfs-compose test", LogWriter: &log},
		Finalize: func(ctx context.Context, c *artifacts.Compose, rec *artifacts.ComposeRecord) error {
			return g.finalizeCompose(ctx, c, rec, keys, g.log)
		},
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	return rec
}

// copyTree copies a compose directory file by file (published files are
// hard links into the cache, which a tampering test must not modify).
func copyTree(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// snapshot maps every file below dir to its SHA-256.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		rel, _ := filepath.Rel(dir, p)
		m[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// runCLI runs the command line in-process and returns its exit status and
// output.
func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// fixtureDirs are removed after the tests (fixtures shared by tests live
// outside any one test's TempDir).
var fixtureDirs []string

func signingGenerate(dir string) ([]string, error) {
	return signing.GenerateKeys(dir, signing.GenerateOptions{Passphrase: []byte(testPass)})
}

// stage adapts a fake stage (its plan, run and inputs) to the pipeline.
func fakeDef[F interface {
	plan(context.Context, *pipeline.PlanContext) (*map[string]string, error)
	run(context.Context, *pipeline.RunContext, *map[string]string) error
}](kind string, inputs []pipeline.Dep, f F) pipeline.Stage {
	return pipeline.Define(pipeline.Spec[map[string]string]{Kind: kind, Version: "1", Inputs: inputs, Plan: f.plan, Run: f.run})
}

func (f fakeComposefs) stage() pipeline.Stage { return fakeDef(contract.Composefs, nil, f) }
func (f fakeUKI) stage() pipeline.Stage       { return fakeDef(contract.UKI, f.inputs(), f) }
func (f fakeDisk) stage() pipeline.Stage      { return fakeDef(contract.Disk, f.inputs(), f) }
