package boottest

// Test disk images, laid out as the pipeline's disk stage writes them
// (docs/boot-layout.md), built from the testbed fixture content with the
// format libraries the stages use: the root tree of the fixture image (the
// test agent as /usr/sbin/init, the kernel's module subset), its composefs
// image and object store (internal/composefs, internal/objstore), the
// builtin initramfs with cfs-init and the UKI (testbed/fixtures/standin,
// over internal/initramfs and internal/uki), its Authenticode signature
// (signing/secureboot) and the GPT disk (internal/diskimage).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"debug/pe"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/composefs/dirscan"
	"github.com/cfs-compose/cfs-compose/internal/diskimage"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures/standin"
)

// archBase is what every test disk of one arch shares, built once per test
// binary: the UKI kit (fixture content, cfs-init, modules), the image's
// root tree, and its composefs image and objects.
type archBase struct {
	arch    string // x86_64 or aarch64
	kit     *standin.Kit
	content *fixtures.Content
	dir     string
	tree    string // the image's root tree (plain files)
	objects string // composefs object store of the tree
	image   []byte // composefs (EROFS) image of the tree
	digest  string // its fs-verity digest
	tools   *fixtures.Tools
}

var (
	basesMu sync.Mutex
	bases   = map[string]*archBase{}
	baseDir string
)

// TestMain removes the shared per-arch build directory after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if baseDir != "" {
		os.RemoveAll(baseDir)
	}
	os.Exit(code)
}

// requireBoot skips under -short and, loudly, when QEMU or the host tools
// the disk images need are missing.
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
}

// base returns the shared build of arch, preparing it on first use
// (fetching the fixture packages if they are not cached).
func base(t testing.TB, arch string) *archBase {
	t.Helper()
	basesMu.Lock()
	defer basesMu.Unlock()
	if b, ok := bases[arch]; ok {
		return b
	}
	ctx := context.Background()
	kit, err := standin.LoadKit(ctx, arch)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := fixtures.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	lock, err := fixtures.Fetch(ctx, fixtures.FetchOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	tools, err := fixtures.ExtractTools(ctx, cache, lock)
	if err != nil {
		t.Fatal(err)
	}
	if baseDir == "" {
		if baseDir, err = os.MkdirTemp("", "cfs-boottest-"); err != nil {
			t.Fatal(err)
		}
	}
	b := &archBase{arch: arch, kit: kit, content: kit.Content, tools: tools, dir: filepath.Join(baseDir, arch)}
	b.tree = filepath.Join(b.dir, "tree")
	b.objects = filepath.Join(b.dir, "objects")
	if err := b.writeTree(); err != nil {
		t.Fatal(err)
	}
	st, err := objstore.Open(b.objects)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := dirscan.Scan(ctx, b.tree, &dirscan.Options{Store: st})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var img bytes.Buffer
	if err := composefs.WriteImage(&img, tree, nil); err != nil {
		t.Fatal(err)
	}
	b.image = img.Bytes()
	b.digest = fsverity.Hex(fsverity.Sum(b.image))
	bases[arch] = b
	return b
}

// writeTree writes the fixture image's root as plain files: the agent as
// /usr/sbin/init, the kernel's modules with modules.dep (the agent loads
// efivarfs from there), os-release and the FHS mount points.
func (b *archBase) writeTree() error {
	k := b.content.Kernel
	mods := "usr/lib/modules/" + k.Version + "/"
	files := map[string][]byte{
		"usr/sbin/init":           b.content.Agent,
		"usr/lib/os-release":      []byte(fixtures.OSRelease(k.Version)),
		"etc/hostname":            []byte("testbed\n"),
		"usr/share/testbed/hello": []byte("hello from the composefs object store, a file long enough not to be inlined\n"),
		mods + "modules.dep":      k.Dep,
		mods + "modules.order":    k.Order,
		mods + "modules.builtin":  k.Builtin,
	}
	for _, m := range k.Modules {
		files[mods+m.Path] = m.Data
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "var", "sysroot", "etc", "boot"} {
		if err := os.MkdirAll(filepath.Join(b.tree, d), 0o755); err != nil {
			return err
		}
	}
	for p, data := range files {
		full := filepath.Join(b.tree, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if p == "usr/sbin/init" {
			mode = 0o755
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			return err
		}
	}
	for link, target := range map[string]string{"etc/os-release": "../usr/lib/os-release",
		"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"} {
		if err := os.Symlink(target, filepath.Join(b.tree, link)); err != nil {
			return err
		}
	}
	return nil
}

// ukiMode says how the test UKI is signed.
type ukiMode int

const (
	ukiUnsigned ukiMode = iota
	ukiSigned
	ukiSignedTamperedCmdline // signed, then one byte of .cmdline changed
)

// imageOpts are the variations of a test disk.
type imageOpts struct {
	composefs   bool
	verity      string            // composefs verity mode (initramfs configuration)
	digestKey   *ecdsa.PrivateKey // signs the composefs digest (signed composefs)
	uki         ukiMode
	signer      *secureboot.KeyPair // Authenticode key for ukiSigned*
	tamperImage bool                // one byte of the composefs image changed on the root partition
}

// testImage is a built test disk.
type testImage struct {
	disk    string
	digest  string // composefs digest on the command line (empty: plain)
	cmdline string
}

// build writes a test disk for the options into dir.
func (b *archBase) build(t testing.TB, dir string, o imageOpts) *testImage {
	t.Helper()
	ctx := context.Background()
	part := filepath.Join(dir, "rootpart")
	img := &testImage{disk: filepath.Join(dir, "disk.raw")}
	cfg := initconfig.Config{Version: 1, Composefs: o.composefs, Verity: initconfig.VerityNone, RootLabel: "root"}
	if o.composefs {
		img.digest = b.digest
		cfg.Verity = o.verity
		images := filepath.Join(part, "composefs", "images")
		if err := os.MkdirAll(images, 0o755); err != nil {
			t.Fatal(err)
		}
		data := append([]byte(nil), b.image...)
		if o.tamperImage {
			data[len(data)/2] ^= 0x01
		}
		write(t, filepath.Join(images, b.digest), data, 0o644)
		if o.digestKey != nil {
			sig, err := initconfig.SignDigest(o.digestKey, b.digest)
			if err != nil {
				t.Fatal(err)
			}
			write(t, filepath.Join(images, b.digest+".sig"), sig, 0o644)
			der, err := x509.MarshalPKIXPublicKey(&o.digestKey.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Signed, cfg.PublicKey = true, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		}
		copyTree(t, b.objects, filepath.Join(part, "composefs", "objects"))
	} else {
		copyTree(t, b.tree, filepath.Join(part, "state", "deploy", "plain", "root"))
	}
	img.cmdline = b.kit.Cmdline(img.digest)
	rd, err := b.kit.Initramfs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ukiPath := filepath.Join(dir, "uki.efi")
	if err := b.kit.BuildUKI(ukiPath, rd, img.cmdline); err != nil {
		t.Fatal(err)
	}
	if o.uki != ukiUnsigned {
		signed := filepath.Join(dir, "uki.signed.efi")
		if err := secureboot.SignPE(ctx, o.signer, ukiPath, signed); err != nil {
			t.Fatal(err)
		}
		ukiPath = signed
		if o.uki == ukiSignedTamperedCmdline {
			tamperSection(t, ukiPath, ".cmdline")
		}
	}
	efiBytes, err := os.ReadFile(ukiPath)
	if err != nil {
		t.Fatal(err)
	}
	bootName := map[string]string{"x86_64": "BOOTX64.EFI", "aarch64": "BOOTAA64.EFI"}[b.arch]
	spec := &diskimage.Spec{Size: 192 << 20, Arch: b.arch, Seed: "boottest " + dir, Epoch: time.Unix(1704067200, 0),
		Partitions: []diskimage.Partition{
			{Name: "esp", Type: diskimage.TypeESP, Size: 96 << 20, FS: diskimage.FSVfat, Label: "ESP", Files: []diskimage.File{
				diskimage.BytesFile("EFI/BOOT/"+bootName, efiBytes), diskimage.BytesFile("EFI/Linux/testbed.efi", efiBytes)}},
			{Name: "root", Type: diskimage.TypeRoot, FS: diskimage.FSExt4, Label: "root", Verity: true, Dir: part},
		}}
	if _, err := diskimage.Write(ctx, spec, img.disk); err != nil {
		t.Fatal(err)
	}
	return img
}

// tamperSection flips one bit of the first byte of a PE section's data.
func tamperSection(t testing.TB, path, name string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(name)
	if s == nil {
		t.Fatalf("%s has no %s section", path, name)
	}
	data[s.Offset] ^= 0x01
	write(t, path, data, 0o644)
}

func write(t testing.TB, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies a directory tree (cp -a keeps modes, links and times).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", src, dst, err, strings.TrimSpace(string(out)))
	}
}

// newDigestKey returns an ECDSA P-256 key for signing composefs digests.
func newDigestKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
