package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/bootlayout"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/internal/initramfs"
	"github.com/cfs-compose/cfs-compose/internal/kmod"
	"github.com/cfs-compose/cfs-compose/internal/testdeb"
	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/vmtest"
)

// testInit is the image's /sbin/init in the QEMU tests: it reports one
// "CHECK name value" line per property and powers off. The root is
// read-only, so it calls busybox applets explicitly. The sysroot lines
// are what the testbed's sysroot check expects of a booted system: the
// physical root partition mounted at /sysroot (read-only, its composefs
// and state directories visible), nothing left at cfs-init's
// /run/cfs/sysroot.
const testInit = `#!/bin/busybox sh
B=/bin/busybox
echo "TEST-INIT-START uptime=$($B cut -d' ' -f1 /proc/uptime)"
$B cat /proc/mounts | while read l; do echo "MOUNT: $l"; done
echo "CHECK root-fstype $($B awk '$2=="/"{t=$3} END{print t}' /proc/mounts)"
for d in etc var; do if [ -f /$d/cfs-probe ]; then echo "CHECK $d-kept yes"; else echo "CHECK $d-kept no"; fi; done
if $B touch /usr/cfs-probe 2>/run/err; then echo "CHECK usr-writable yes"; else echo "CHECK usr-writable no: $($B cat /run/err)"; fi
if echo probe > /etc/cfs-probe; then echo "CHECK etc-writable yes"; else echo "CHECK etc-writable no"; fi
if echo probe > /var/cfs-probe; then echo "CHECK var-writable yes"; else echo "CHECK var-writable no"; fi
echo "CHECK hostname $($B cat /etc/hostname)"
echo "CHECK usr-data $($B cat /usr/share/cfs/hello)"
echo "CHECK sysroot-mount $($B awk '$2=="/sysroot"{split($4,o,","); print $3, o[1]}' /proc/mounts)"
echo "CHECK run-cfs-sysroot-mount <$($B awk '$2=="/run/cfs/sysroot"{print $3}' /proc/mounts)>"
if [ -d /sysroot/state ]; then echo "CHECK sysroot-state yes"; else echo "CHECK sysroot-state no"; fi
if $B touch /sysroot/cfs-probe 2>/run/err; then echo "CHECK sysroot-writable yes"; else echo "CHECK sysroot-writable no: $($B cat /run/err)"; fi
echo "TEST-INIT-DONE uptime=$($B cut -d' ' -f1 /proc/uptime)"
$B poweroff -f
`

// fixture is everything the QEMU tests boot: a kernel, initramfs
// ingredients and a GPT disk whose root partition carries a composefs
// repository and a plain deployment tree.
type fixture struct {
	arch              guestArch
	dir, kernel, disk string
	initBin           []byte
	modules           []initramfs.Module
	digest            string // composefs image digest
	tampered          string // digest name of a tampered copy of the image
	key               *ecdsa.PrivateKey
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: building the composefs test image needs root (trusted.overlay.* xattrs)")
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// guestArch is what differs between the architectures the tests boot.
type guestArch struct {
	goarch, arch, qemu, cpu string
}

var guestArches = map[string]guestArch{
	"amd64": {"amd64", "x86_64", "qemu-system-x86_64", ""},
	// cortex-a57: plain -cpu max is 2.5x slower under TCG (FACTS.md 5).
	"arm64": {"arm64", "aarch64", "qemu-system-aarch64", "cortex-a57"},
}

// busyboxFor returns a static busybox for the guest architecture: the
// host's for amd64, trixie's busybox-static:arm64 for arm64.
func busyboxFor(t *testing.T, goarch string) []byte {
	t.Helper()
	p := "/bin/busybox"
	if goarch != runtime.GOARCH {
		dir := testdeb.Package(t, "busybox-static", goarch)
		p = filepath.Join(dir, "usr/bin/busybox")
		if !fileExists(p) {
			p = filepath.Join(dir, "bin/busybox")
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("SKIP: no static busybox for %s (busybox-static): %v", goarch, err)
	}
	return b
}

func newFixture(t *testing.T, goarch string) *fixture {
	t.Helper()
	ga := guestArches[goarch]
	vmtest.Require(t, ga.qemu, "mkfs.erofs", "mkfs.ext4", "sgdisk", "qemu-img")
	requireRoot(t)
	busybox := busyboxFor(t, goarch)
	f := &fixture{arch: ga, dir: t.TempDir()}

	// cfs-init for the guest, as `make initbins` builds it.
	bin := filepath.Join(f.dir, "cfs-init")
	build := exec.Command(goTool(t), "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building cfs-init: %v\n%s", err, out)
	}
	f.initBin, _ = os.ReadFile(bin)

	// Kernel and modules from the trixie cloud kernel package.
	kdir, release := testdeb.Kernel(t, goarch)
	f.kernel = filepath.Join(kdir, "boot", "vmlinuz-"+release)
	ix, err := kmod.Load(os.DirFS(kdir), release)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ix.Resolve("virtio_blk", "loop", "erofs", "overlay")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		data, err := ix.Read(m)
		if err != nil {
			t.Fatal(err)
		}
		f.modules = append(f.modules, initramfs.Module{File: m.File(), Data: data})
	}

	// The image tree: every regular file is a metacopy stub redirecting
	// to an object named by its fs-verity digest.
	src := filepath.Join(f.dir, "src")
	part := filepath.Join(f.dir, "part")
	plain := filepath.Join(part, bootlayout.Plain.Root())
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{"bin/busybox", busybox, 0o755},
		{"sbin/init", []byte(testInit), 0o755},
		{"etc/hostname", []byte("cfs-testbed\n"), 0o644},
		{"etc/os-release", []byte("ID=testbed\n"), 0o644},
		{"usr/share/cfs/hello", []byte("hello from the object store\n"), 0o644},
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "var", "etc", "sysroot", "usr/share/cfs"} {
		for _, root := range []string{src, plain} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
	}
	for _, fl := range files {
		sum, _ := verityDigest(bytes.NewReader(fl.data))
		d := hex.EncodeToString(sum[:])
		obj := filepath.Join(part, bootlayout.ObjectsDir, d[:2], d[2:])
		write(t, obj, fl.data, 0o644)
		stub := filepath.Join(src, fl.path)
		write(t, stub, nil, fl.mode)
		os.Chmod(stub, fl.mode)
		if err := os.Truncate(stub, int64(len(fl.data))); err != nil {
			t.Fatal(err)
		}
		if err := unix.Setxattr(stub, "trusted.overlay.metacopy", append([]byte{0, 36, 0, 1}, sum[:]...), 0); err != nil {
			t.Fatalf("setting trusted.overlay.metacopy: %v", err)
		}
		if err := unix.Setxattr(stub, "trusted.overlay.redirect", []byte("/"+d[:2]+"/"+d[2:]), 0); err != nil {
			t.Fatal(err)
		}
		data := fl.data
		if fl.path == "etc/hostname" {
			data = []byte("plain-testbed\n")
		}
		write(t, filepath.Join(plain, fl.path), data, fl.mode)
		os.Chmod(filepath.Join(plain, fl.path), fl.mode)
	}
	image := filepath.Join(f.dir, "image.erofs")
	run(t, "mkfs.erofs", "--chunksize=4096", "-x2", "-T0", "--all-root", "-U", "7a9b2f3c-1d2e-4f5a-8b6c-0d1e2f3a4b5c", image, src)
	img, _ := os.ReadFile(image)
	sum, _ := verityDigest(bytes.NewReader(img))
	f.digest = hex.EncodeToString(sum[:])
	write(t, filepath.Join(part, bootlayout.ImagesDir, f.digest), img, 0o644)
	bad := append([]byte{}, img...)
	bad[len(bad)-1] ^= 0xff
	f.tampered = strings.Repeat("e", 64)
	write(t, filepath.Join(part, bootlayout.ImagesDir, f.tampered), bad, 0o644)
	f.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sig, err := initconfig.SignDigest(f.key, f.digest)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(part, bootlayout.ImagesDir, f.digest+".sig"), sig, 0o644)

	// GPT disk: one ext4 (verity feature) partition named "root".
	ext4 := filepath.Join(f.dir, "root.ext4")
	run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "verity", "-L", "root", "-E", "root_owner=0:0", "-d", part, ext4, "64M")
	f.disk = filepath.Join(f.dir, "disk.img")
	if err := os.WriteFile(f.disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f.disk, 70<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "sgdisk", "-o", "-n", "1:2048:+64M", "-t", "1:"+rootType(goarch), "-c", "1:root", f.disk)
	part1, _ := os.ReadFile(ext4)
	df, err := os.OpenFile(f.disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := df.WriteAt(part1, 2048*512); err != nil {
		t.Fatal(err)
	}
	df.Close()
	return f
}

// goTool returns the go command that runs this test (go test sets GOROOT
// in the environment), else the one on PATH.
func goTool(t *testing.T) string {
	if r := os.Getenv("GOROOT"); r != "" {
		if p := filepath.Join(r, "bin", "go"); fileExists(p) {
			return p
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("SKIP: no go command to build cfs-init: %v", err)
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// initrd writes a builtin initramfs with the given configuration.
func (f *fixture) initrd(t *testing.T, name string, cfg initconfig.Config) string {
	t.Helper()
	var buf bytes.Buffer
	if err := initramfs.WriteBuiltin(&buf, initramfs.Gzip, initramfs.Builtin{Init: f.initBin, Modules: f.modules, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(f.dir, name+".cpio.gz")
	write(t, p, buf.Bytes(), 0o644)
	return p
}

func (f *fixture) pubPEM(t *testing.T, k *ecdsa.PrivateKey) string {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// boot boots the kernel with initrd and the disk with the testbed runner
// (through the given qcow2 overlay, kept for a later boot, or else a
// throwaway one) and returns the result. cfs-init gets time to power the
// machine off by itself after a FATAL error, so its halt path is tested.
func (f *fixture) boot(t *testing.T, initrd, cmdline, overlay string) *testbed.BootResult {
	t.Helper()
	res := vmtest.Boot(t, testbed.Machine{
		Arch: f.arch.arch, CPU: f.arch.cpu, MemoryMiB: 768,
		Kernel: f.kernel, Initrd: initrd,
		Append: testbed.DefaultConsole(f.arch.arch) + " panic=-1 " + quiet() + cmdline,
		Disk:   f.disk, Overlay: overlay,
		Timeout: 4 * time.Minute, FatalGrace: time.Minute,
	})
	t.Logf("%s: %s at %.2fs (TCG)", t.Name(), res.Outcome, res.Duration.Seconds())
	return res
}

// quiet returns "quiet " unless CFS_INIT_KERNEL_LOG is set (to see the
// kernel's messages when debugging a boot).
func quiet() string {
	if os.Getenv("CFS_INIT_KERNEL_LOG") != "" {
		return ""
	}
	return "quiet "
}

func expectLines(t *testing.T, res *testbed.BootResult, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if _, ok := res.Find(l); !ok {
			vmtest.Fail(t, res, "console lacks %q", l)
			return
		}
	}
}

// expectFatal checks that cfs-init refused with the reason, the image's
// init never ran, and the machine powered off by itself.
func expectFatal(t *testing.T, res *testbed.BootResult, reason string) {
	t.Helper()
	expectLines(t, res, "cfs-init: FATAL: "+reason, "cfs-init: refusing to boot; powering off")
	if _, ran := res.Find("TEST-INIT-START"); ran {
		vmtest.Fail(t, res, "the image's init ran after a FATAL error")
	}
	if res.Outcome != testbed.OutcomeInitFatal || res.ExitCode != 0 {
		vmtest.Fail(t, res, "the machine did not power off by itself after the FATAL error (outcome %s, exit code %d)", res.Outcome, res.ExitCode)
	}
}

// TestQEMU boots the real trixie cloud kernel with the builtin initramfs
// (cfs-init and the kernel's own modules) against a GPT disk, under TCG:
// the composefs root (signed, verity=require, first and second boot), the
// plain root, and refusals.
func TestQEMU(t *testing.T) {
	f := newFixture(t, "amd64")
	base := initconfig.Config{Version: 1, Composefs: true, Verity: initconfig.VerityRequire, RootLabel: "root",
		Signed: true, PublicKey: f.pubPEM(t, f.key)}
	signedRD := f.initrd(t, "signed", base)

	t.Run("composefs", func(t *testing.T) {
		overlay := filepath.Join(t.TempDir(), "disk.qcow2")
		res := f.boot(t, signedRD, "composefs="+f.digest, overlay)
		expectLines(t, res,
			"cfs-init: loaded 5 modules",
			"cfs-init: root partition /dev/vda1",
			"cfs-init: composefs digest signature verified",
			"cfs-init: enabled fs-verity on 5 of 5 objects",
			"cfs-init: image fs-verity digest verified in userspace",
			"cfs-init: composefs root mounted (image "+f.digest+", verity=require)",
			"cfs-init: root partition moved to /sysroot (read-only)",
			"CHECK root-fstype overlay",
			"CHECK usr-writable no: touch: /usr/cfs-probe: Read-only file system",
			"CHECK sysroot-mount ext4 ro",
			"CHECK run-cfs-sysroot-mount <>",
			"CHECK sysroot-state yes",
			"CHECK sysroot-writable no: touch: /sysroot/cfs-probe: Read-only file system",
			"CHECK etc-kept no",
			"CHECK var-kept no",
			"CHECK etc-writable yes",
			"CHECK var-writable yes",
			"CHECK hostname cfs-testbed",
			"CHECK usr-data hello from the object store",
			"TEST-INIT-DONE")
		if l, ok := res.Find("MOUNT: composefs / overlay"); !ok || !strings.Contains(l.Text, "verity=require") || !strings.Contains(l.Text, "metacopy=on") {
			vmtest.Fail(t, res, "root mount line: %q", l.Text)
		}
		if l, ok := res.Find("MOUNT: overlay /etc overlay rw"); !ok || !strings.Contains(l.Text, "upperdir=/run/cfs/sysroot/state/deploy/"+f.digest+"/etc") {
			vmtest.Fail(t, res, "/etc mount line: %q", l.Text)
		}
		if start, ok := res.Find("TEST-INIT-START"); ok {
			t.Logf("composefs first boot: image init at %.2fs", start.At.Seconds())
		}

		// Second boot of the same disk: fs-verity is now on, the kernel
		// measures the image; the EROFS image goes through a loop device;
		// what the first boot wrote to /etc and /var is still there.
		res = f.boot(t, signedRD, "composefs="+f.digest+" cfs.erofs=loop", overlay)
		expectLines(t, res, "cfs-init: image fs-verity digest verified by the kernel",
			"cfs-init: mounting the composefs image through /dev/loop0", "CHECK root-fstype overlay", "CHECK usr-data hello from the object store",
			"CHECK etc-kept yes", "CHECK var-kept yes", "TEST-INIT-DONE")
		if _, again := res.Find("cfs-init: enabled fs-verity"); again {
			vmtest.Fail(t, res, "fs-verity was enabled again on the second boot")
		}
	})

	t.Run("plain", func(t *testing.T) {
		cfg := base
		cfg.Composefs, cfg.Signed, cfg.PublicKey, cfg.Verity = false, false, "", initconfig.VerityNone
		cfg.RootLabel = "system" // no such partition name: found by its GPT type
		res := f.boot(t, f.initrd(t, "plain", cfg), "", "")
		expectLines(t, res,
			"cfs-init: starting: plain root (composefs disabled)",
			"cfs-init: root partition /dev/vda1",
			"cfs-init: plain root mounted",
			"cfs-init: root partition moved to /sysroot (read-only)",
			"CHECK root-fstype ext4",
			"CHECK sysroot-mount ext4 ro",
			"CHECK run-cfs-sysroot-mount <>",
			"CHECK sysroot-state yes",
			"CHECK sysroot-writable no: touch: /sysroot/cfs-probe: Read-only file system",
			"CHECK usr-writable no: touch: /usr/cfs-probe: Read-only file system",
			"CHECK etc-writable yes",
			"CHECK var-writable yes",
			"CHECK hostname plain-testbed",
			"TEST-INIT-DONE")
	})

	t.Run("wrong-digest", func(t *testing.T) {
		other := strings.Repeat("0", 64)
		res := f.boot(t, signedRD, "composefs="+other, "")
		expectFatal(t, res, "composefs image composefs/images/"+other+" not found on the root partition")
	})

	t.Run("tampered-image", func(t *testing.T) {
		cfg := base
		cfg.Signed, cfg.PublicKey = false, ""
		res := f.boot(t, f.initrd(t, "unsigned", cfg), "composefs="+f.tampered, "")
		expectFatal(t, res, "composefs image digest mismatch: the image's fs-verity digest is ")
	})

	t.Run("wrong-key", func(t *testing.T) {
		other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cfg := base
		cfg.PublicKey = f.pubPEM(t, other)
		res := f.boot(t, f.initrd(t, "wrongkey", cfg), "composefs="+f.digest, "")
		expectFatal(t, res, fmt.Sprintf("signed composefs: signature composefs/images/%s.sig does not verify with the embedded key", f.digest))
	})
}

// TestQEMUArm64 boots the arm64 cfs-init with the arm64 trixie cloud kernel
// (qemu-system-aarch64, TCG): the composefs root with verity=require, and
// a refusal.
func TestQEMUArm64(t *testing.T) {
	f := newFixture(t, "arm64")
	cfg := initconfig.Config{Version: 1, Composefs: true, Verity: initconfig.VerityRequire, RootLabel: "root"}
	rd := f.initrd(t, "arm64", cfg)
	t.Run("composefs", func(t *testing.T) {
		res := f.boot(t, rd, "composefs="+f.digest, "")
		expectLines(t, res,
			"cfs-init: enabled fs-verity on 5 of 5 objects",
			"cfs-init: composefs root mounted (image "+f.digest+", verity=require)",
			"cfs-init: root partition moved to /sysroot (read-only)",
			"CHECK root-fstype overlay",
			"CHECK usr-writable no: touch: /usr/cfs-probe: Read-only file system",
			"CHECK sysroot-mount ext4 ro",
			"CHECK run-cfs-sysroot-mount <>",
			"CHECK sysroot-state yes",
			"CHECK sysroot-writable no: touch: /sysroot/cfs-probe: Read-only file system",
			"CHECK etc-writable yes",
			"CHECK var-writable yes",
			"CHECK usr-data hello from the object store",
			"TEST-INIT-DONE")
	})
	t.Run("tampered-image", func(t *testing.T) {
		res := f.boot(t, rd, "composefs="+f.tampered, "")
		expectFatal(t, res, "composefs image digest mismatch")
	})
}
