package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/bootlayout"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
)

// fakeSys records syscalls and simulates just enough: mounting the root
// partition or the new root makes a test directory appear at the target.
type fakeSys struct {
	t      *testing.T
	root   string
	calls  []string
	parts  map[string]string // device -> directory standing for its filesystem
	image  string            // directory standing for the composefs root
	verity map[string][]byte // namespace path -> fs-verity digest
	noFSV  bool              // EnableVerity fails like ext4 without the verity feature
}

func (f *fakeSys) record(format string, a ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

// appear replaces the (empty) directory target with a symlink to dir.
func (f *fakeSys) appear(target, dir string) {
	p := filepath.Join(f.root, target)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.t.Fatalf("fake mount on %s: %v", target, err)
	}
	if err := os.Symlink(dir, p); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	f.record("mount %s %s %s %s %s", source, target, fstype, flagString(flags), data)
	switch {
	case fstype == "ext4":
		dir, ok := f.parts[source]
		if !ok {
			return fmt.Errorf("fake: no filesystem on %s", source)
		}
		f.appear(target, dir)
	case target == newRoot && fstype == "overlay":
		f.appear(target, f.image)
	case target == newRoot && flags == unix.MS_BIND:
		f.appear(target, filepath.Join(f.root, source))
	}
	return nil
}

func (f *fakeSys) LoadModule(p string) error { f.record("insmod %s", p); return nil }

func (f *fakeSys) MeasureVerity(p string) ([]byte, error) {
	if d, ok := f.verity[p]; ok {
		return d, nil
	}
	return nil, errNoVerity
}

func (f *fakeSys) EnableVerity(p string) error {
	f.record("enable-verity %s", p)
	if f.noFSV {
		return errors.New("operation not supported")
	}
	data, err := os.ReadFile(filepath.Join(f.root, p))
	if err != nil {
		return err
	}
	d, _ := verityDigest(bytes.NewReader(data))
	f.verity[p] = d[:]
	return nil
}

func (f *fakeSys) MountImage(file, target, fstype string, loop bool) (string, error) {
	if loop {
		f.record("mount-image %s %s %s loop", file, target, fstype)
		return "/dev/loop0", nil
	}
	f.record("mount-image %s %s %s", file, target, fstype)
	return "", nil
}

func (f *fakeSys) SwitchRoot(nr string) error { f.record("switch-root %s", nr); return nil }

func (f *fakeSys) Exec(p string, argv, _ []string) error {
	f.record("exec %s %s", p, strings.Join(argv, " "))
	return nil
}

// env is a fake machine: an initramfs tree, a root partition directory
// with a composefs repository, and an image tree.
type env struct {
	root, part, image string
	sys               *fakeSys
	out               bytes.Buffer
	digest            string
	cfg               initconfig.Config
	cmdline           string
	key               *ecdsa.PrivateKey
	polls             int             // root-partition polls so far
	onPoll            func(polls int) // called after each poll's sleep
}

func write(t *testing.T, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{root: t.TempDir(), part: t.TempDir(), image: t.TempDir()}
	img := []byte("pretend this is an EROFS image\n")
	d, _ := verityDigest(bytes.NewReader(img))
	e.digest = hex.EncodeToString(d[:])
	write(t, filepath.Join(e.part, bootlayout.ImagesDir, e.digest), img, 0o644)
	write(t, filepath.Join(e.part, bootlayout.ObjectsDir, "ab", strings.Repeat("c", 62)), []byte("object one"), 0o644)
	write(t, filepath.Join(e.part, bootlayout.ObjectsDir, "12", strings.Repeat("3", 62)), []byte("object two"), 0o644)
	write(t, filepath.Join(e.part, bootlayout.Plain.Root(), "sbin", "init"), []byte("#!"), 0o755)
	write(t, filepath.Join(e.part, bootlayout.Plain.Root(), "etc", "hostname"), []byte("plain"), 0o644)
	write(t, filepath.Join(e.image, "sbin", "init"), []byte("#!"), 0o755)
	// Both roots have the mount point of the root partition, as bootable
	// container images do.
	for _, d := range []string{filepath.Join(e.part, bootlayout.Plain.Root(), "sysroot"), filepath.Join(e.image, "sysroot")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(e.root, "lib/modules/loop.ko"), []byte("\x7fELF"), 0o644)
	write(t, filepath.Join(e.root, "lib/modules/erofs.ko"), []byte("\x7fELF"), 0o644)
	write(t, filepath.Join(e.root, "sys/class/block/vda/uevent"), []byte("DEVNAME=vda\nDEVTYPE=disk\n"), 0o644)
	write(t, filepath.Join(e.root, "sys/class/block/vda1/uevent"), []byte("DEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=ESP\n"), 0o644)
	write(t, filepath.Join(e.root, "sys/class/block/vda2/uevent"), []byte("DEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=root\n"), 0o644)
	write(t, filepath.Join(e.root, "dev/vda2"), nil, 0o600) // stands for the device node
	e.sys = &fakeSys{t: t, root: e.root, parts: map[string]string{"/dev/vda2": e.part}, image: e.image, verity: map[string][]byte{}}
	e.cfg = initconfig.Config{Version: 1, Modules: []string{"loop.ko", "erofs.ko"}, Composefs: true, Verity: "none", RootLabel: "root"}
	e.cmdline = "console=ttyS0 composefs=" + e.digest
	return e
}

func (e *env) sign(t *testing.T, digest string) {
	t.Helper()
	if e.key == nil {
		e.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKIXPublicKey(&e.key.PublicKey)
		e.cfg.Signed = true
		e.cfg.PublicKey = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	sig, err := initconfig.SignDigest(e.key, digest)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(e.part, bootlayout.ImagesDir, e.digest+".sig"), sig, 0o644)
}

func (e *env) run(t *testing.T) error {
	t.Helper()
	conf, err := e.cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(e.root, initconfig.Path), conf, 0o644)
	write(t, filepath.Join(e.root, "proc/cmdline"), []byte(e.cmdline+"\n"), 0o444)
	b := newBooter(e.sys, e.root, &e.out)
	b.arch = "amd64"
	clock := time.Unix(0, 0)
	b.now = func() time.Time { return clock }
	b.sleep = func(d time.Duration) {
		clock = clock.Add(d)
		e.polls++
		if e.onPoll != nil {
			e.onPoll(e.polls)
		}
	}
	return b.boot([]string{"single"})
}

func (e *env) calls() string { return strings.Join(e.sys.calls, "\n") }

func TestBootComposefs(t *testing.T) {
	e := newEnv(t)
	if err := e.run(t); err != nil {
		t.Fatalf("boot: %v\n%s", err, e.out.String())
	}
	d := e.digest
	cp := "/run/cfs/" + d + ".erofs"
	want := []string{
		"mount proc /proc proc other ",
		"mount sysfs /sys sysfs other ",
		"mount devtmpfs /dev devtmpfs other mode=0755",
		"mount tmpfs /run tmpfs other mode=0755",
		"insmod /lib/modules/loop.ko",
		"insmod /lib/modules/erofs.ko",
		"mount /dev/vda2 /run/cfs/sysroot ext4 rw ",
		"mount-image " + cp + " /run/cfs/erofs erofs",
		"mount composefs /sysroot overlay ro lowerdir=/run/cfs/erofs::/run/cfs/sysroot/composefs/objects,metacopy=on,redirect_dir=on",
		"mount overlay /sysroot/etc overlay rw lowerdir=/run/cfs/erofs/etc::/run/cfs/sysroot/composefs/objects,upperdir=/run/cfs/sysroot/state/deploy/" + d + "/etc,workdir=/run/cfs/sysroot/state/deploy/" + d + "/etc.work,metacopy=on,redirect_dir=on",
		"mount /run/cfs/sysroot/state/os/default/var /sysroot/var  bind ",
		"mount /run/cfs/sysroot /sysroot/sysroot  move ",
		"mount  /sysroot/sysroot  bind,remount,ro ",
		"switch-root /sysroot",
		"exec /sbin/init /sbin/init single",
	}
	if got := e.calls(); got != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	// The verified image bytes were copied for mounting.
	img, _ := os.ReadFile(filepath.Join(e.part, bootlayout.ImagesDir, d))
	if cpy, err := os.ReadFile(filepath.Join(e.root, cp)); err != nil || !bytes.Equal(cpy, img) {
		t.Errorf("verified copy: %v", err)
	}
	for _, p := range []string{"state/deploy/" + d + "/etc", "state/deploy/" + d + "/etc.work", "state/os/default/var"} {
		if fi, err := os.Stat(filepath.Join(e.part, p)); err != nil || !fi.IsDir() {
			t.Errorf("%s not created on first boot: %v", p, err)
		}
	}
	// The contract files the booted system reads.
	for p, want := range map[string]string{recordedDigest: d + "\n", recordedImage: cp + "\n"} {
		if b, err := os.ReadFile(filepath.Join(e.root, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	for _, line := range []string{"cfs-init: starting: composefs " + d, "cfs-init: root partition /dev/vda2", "cfs-init: image fs-verity digest verified in userspace", "cfs-init: composefs root mounted"} {
		if !strings.Contains(e.out.String(), line) {
			t.Errorf("console lacks %q:\n%s", line, e.out.String())
		}
	}
}

func TestBootVerityFirstBoot(t *testing.T) {
	e := newEnv(t)
	e.cfg.Verity = "require"
	if err := e.run(t); err != nil {
		t.Fatalf("boot: %v\n%s", err, e.out.String())
	}
	img := path.Join(partMount, bootlayout.ImagesDir, e.digest)
	for _, want := range []string{
		"enable-verity /run/cfs/sysroot/composefs/objects/12/" + strings.Repeat("3", 62),
		"enable-verity /run/cfs/sysroot/composefs/objects/ab/" + strings.Repeat("c", 62),
		"enable-verity " + img,
		"mount-image " + img + " /run/cfs/erofs erofs", // verity-protected: mounted in place
		",verity=require",
	} {
		if !strings.Contains(e.calls(), want) {
			t.Errorf("calls lack %q:\n%s", want, e.calls())
		}
	}
	if !strings.Contains(e.out.String(), "enabled fs-verity on 2 of 2 objects") {
		t.Errorf("console:\n%s", e.out.String())
	}
	// The booted system finds the image under /sysroot.
	if b, err := os.ReadFile(filepath.Join(e.root, recordedImage)); err != nil || string(b) != path.Join("/sysroot", bootlayout.ImagesDir, e.digest)+"\n" {
		t.Errorf("recorded image path %q, %v", b, err)
	}
	// Second boot: the stamp skips the walk, the kernel measures the image.
	e.sys.calls = nil
	e.out.Reset()
	if err := e.run(t); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.calls(), "enable-verity") || !strings.Contains(e.out.String(), "verified by the kernel") {
		t.Errorf("second boot:\n%s\n%s", e.calls(), e.out.String())
	}
}

func TestBootLoop(t *testing.T) {
	e := newEnv(t)
	e.cmdline += " cfs.erofs=loop"
	if err := e.run(t); err != nil {
		t.Fatalf("boot: %v\n%s", err, e.out.String())
	}
	if !strings.Contains(e.calls(), " /run/cfs/erofs erofs loop") || !strings.Contains(e.out.String(), "mounting the composefs image through /dev/loop0") {
		t.Errorf("calls:\n%s\nconsole:\n%s", e.calls(), e.out.String())
	}
}

func TestBootPlain(t *testing.T) {
	e := newEnv(t)
	e.cfg.Composefs = false
	if err := e.run(t); err != nil {
		t.Fatalf("boot: %v\n%s", err, e.out.String())
	}
	for _, want := range []string{
		"mount /run/cfs/sysroot/state/deploy/plain/root /sysroot  bind ",
		"mount  /sysroot  bind,remount,ro ",
		"mount /run/cfs/sysroot /sysroot/sysroot  move ",
		"mount  /sysroot/sysroot  bind,remount,ro ",
		"exec /sbin/init",
	} {
		if !strings.Contains(e.calls(), want) {
			t.Errorf("calls lack %q:\n%s", want, e.calls())
		}
	}
	if strings.Contains(e.calls(), "overlay") {
		t.Errorf("plain boot mounted an overlay:\n%s", e.calls())
	}
}

func TestBootSigned(t *testing.T) {
	e := newEnv(t)
	e.sign(t, e.digest)
	if err := e.run(t); err != nil {
		t.Fatalf("boot: %v\n%s", err, e.out.String())
	}
	if !strings.Contains(e.out.String(), "composefs digest signature verified") {
		t.Errorf("console:\n%s", e.out.String())
	}
}

// TestBootRootByType finds the root partition by GPT type when no
// partition carries the name.
func TestBootRootByType(t *testing.T) {
	e := newEnv(t)
	disk := makeGPT(t, "-o", "-n", "1:2048:+1M", "-t", "1:ef00", "-n", "2:0:+1M", "-t", "2:4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
	data, _ := os.ReadFile(disk)
	write(t, filepath.Join(e.root, "dev/vda"), data, 0o644)
	write(t, filepath.Join(e.root, "sys/class/block/vda2/uevent"), []byte("DEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\n"), 0o644)
	if err := e.run(t); err != nil {
		t.Fatalf("boot: %v\n%s", err, e.out.String())
	}
	if !strings.Contains(e.calls(), "mount /dev/vda2 /run/cfs/sysroot ext4") {
		t.Errorf("calls:\n%s", e.calls())
	}
}

// TestBootWaitsForDeviceNode covers the race between the sysfs entry and
// the devtmpfs node: the partition is used only once its node exists.
func TestBootWaitsForDeviceNode(t *testing.T) {
	e := newEnv(t)
	node := filepath.Join(e.root, "dev/vda2")
	os.Remove(node)
	os.Remove(filepath.Join(e.root, "sys/class/block/vda2/uevent"))
	e.onPoll = func(n int) {
		switch n {
		case 2: // the partition shows up in sysfs ...
			write(t, filepath.Join(e.root, "sys/class/block/vda2/uevent"), []byte("DEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=root\n"), 0o644)
		case 5: // ... and its device node a little later
			write(t, node, nil, 0o600)
		}
	}
	if err := e.run(t); err != nil {
		t.Fatalf("boot: %v\n%s", err, e.out.String())
	}
	if e.polls != 5 {
		t.Errorf("root found after %d polls, want 5", e.polls)
	}
}

func TestBootFailures(t *testing.T) {
	other := strings.Repeat("0", 64)
	tests := []struct {
		name  string
		setup func(t *testing.T, e *env)
		want  string
	}{
		{"digest mismatch", func(t *testing.T, e *env) {
			e.cfg.Verity = "require" // nothing may be enabled before the image is verified
			write(t, filepath.Join(e.part, bootlayout.ImagesDir, e.digest), []byte("tampered image\n"), 0o644)
		}, "composefs image digest mismatch: the image's fs-verity digest is "},
		{"kernel-measured mismatch", func(t *testing.T, e *env) {
			e.sys.verity[path.Join(partMount, bootlayout.ImagesDir, e.digest)] = make([]byte, 32)
		}, "fs-verity measures 0000"},
		{"missing image", func(t *testing.T, e *env) { e.cmdline = "composefs=" + other }, "composefs image composefs/images/" + other + " not found"},
		{"missing object store", func(t *testing.T, e *env) { os.RemoveAll(filepath.Join(e.part, bootlayout.ObjectsDir)) }, "composefs object store composefs/objects missing"},
		{"no digest", func(t *testing.T, e *env) { e.cmdline = "quiet" }, "no composefs=<digest>"},
		{"missing module", func(t *testing.T, e *env) { e.cfg.Modules = append(e.cfg.Modules, "overlay.ko") }, "kernel module overlay.ko is missing from the initramfs"},
		{"no root partition", func(t *testing.T, e *env) {
			e.cfg.RootLabel = "nosuch"
			e.cmdline += " cfs.rootwait=1"
		}, `no root partition: no partition named "nosuch" and no partition of type 4f68bce3-e8cd-4db1-96e7-fbcaf984b709 after 1s`},
		{"bad signature", func(t *testing.T, e *env) { e.sign(t, other) }, "signature composefs/images/" /* ... does not verify */},
		{"missing signature", func(t *testing.T, e *env) {
			e.sign(t, e.digest)
			os.Remove(filepath.Join(e.part, bootlayout.ImagesDir, e.digest+".sig"))
		}, "signed composefs: no digest signature"},
		{"verity unsupported", func(t *testing.T, e *env) { e.cfg.Verity = "enable"; e.sys.noFSV = true }, "enabling fs-verity on object"},
		{"no plain tree", func(t *testing.T, e *env) {
			e.cfg.Composefs = false
			os.RemoveAll(filepath.Join(e.part, bootlayout.Plain.Root()))
		}, "no plain deployment tree state/deploy/plain/root"},
		{"no init", func(t *testing.T, e *env) { os.Remove(filepath.Join(e.image, "sbin", "init")) }, "no init to execute in the new root (tried /sbin/init, /usr/lib/systemd/systemd)"},
		{"bad config", func(t *testing.T, e *env) { e.cfg.Verity = "" }, "verity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tt.setup(t, e)
			var err error
			if tt.name == "bad config" {
				write(t, filepath.Join(e.root, initconfig.Path), []byte(`{"version":1,"verity":"","root_label":"root"}`), 0o644)
				write(t, filepath.Join(e.root, "proc/cmdline"), []byte(e.cmdline), 0o444)
				err = newBooter(e.sys, e.root, &e.out).boot(nil)
			} else {
				err = e.run(t)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			for _, c := range e.sys.calls {
				if strings.Contains(tt.name, "mismatch") && strings.HasPrefix(c, "enable-verity") {
					t.Errorf("changed the disk before verifying the image: %s", c)
				}
				if strings.HasPrefix(c, "switch-root") || strings.HasPrefix(c, "exec") || strings.Contains(c, " /sysroot overlay") && tt.name != "no init" {
					t.Errorf("went on after the failure: %s", c)
				}
			}
		})
	}
}

// TestBootNoSysroot: an image without /sysroot keeps the root partition at
// /run/cfs/sysroot, read-only too.
func TestBootNoSysroot(t *testing.T) {
	e := newEnv(t)
	if err := os.Remove(filepath.Join(e.image, "sysroot")); err != nil {
		t.Fatal(err)
	}
	if err := e.run(t); err != nil {
		t.Fatalf("boot: %v\n%s", err, e.out.String())
	}
	if c := e.calls(); strings.Contains(c, "move") || !strings.Contains(c, "mount  /run/cfs/sysroot  bind,remount,ro \nswitch-root /sysroot") {
		t.Errorf("calls:\n%s", c)
	}
	if !strings.Contains(e.out.String(), "the image has no /sysroot directory") {
		t.Errorf("output lacks the note:\n%s", e.out.String())
	}
}
