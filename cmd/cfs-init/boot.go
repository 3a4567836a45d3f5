package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/bootlayout"
	"github.com/cfs-compose/cfs-compose/internal/cmdline"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
)

// errNoVerity means a file has no fs-verity (or its filesystem cannot
// measure it).
var errNoVerity = errors.New("no fs-verity on the file")

// system is what cfs-init needs from the kernel; the real one is in
// sys_linux.go, tests use a fake. Paths are paths in the init's mount
// namespace.
type system interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	LoadModule(path string) error
	// MeasureVerity returns the file's fs-verity digest, or errNoVerity.
	MeasureVerity(path string) ([]byte, error)
	EnableVerity(path string) error
	// MountImage mounts a filesystem image file read-only: directly when
	// the kernel can (EROFS_FS_BACKED_BY_FILE) and loop is false, else
	// through a read-only loop device. It returns the loop device, or ""
	// for a direct mount.
	MountImage(file, target, fstype string, loop bool) (loopDev string, err error)
	// SwitchRoot moves the API filesystems into newRoot, makes it the root
	// and changes directory to it.
	SwitchRoot(newRoot string) error
	Exec(path string, argv, env []string) error
}

// booter runs the boot sequence. Files are read through root (the real
// "/", or a test tree); syscalls go through sys.
type booter struct {
	sys   system
	root  string
	out   io.Writer
	now   func() time.Time
	sleep func(time.Duration)
	arch  string // GOARCH of the machine, for the root partition type
	start time.Time
}

func newBooter(sys system, root string, out io.Writer) *booter {
	return &booter{sys: sys, root: root, out: out, now: time.Now, sleep: time.Sleep, arch: runtime.GOARCH}
}

// fsPath maps a namespace path to the file-access path.
func (b *booter) fsPath(p string) string { return filepath.Join(b.root, p) }

func (b *booter) logf(format string, a ...any) {
	fmt.Fprintf(b.out, "cfs-init: "+format+"\n", a...)
}

// boot runs everything up to exec'ing the image's init. It returns only
// on failure; the error is the FATAL reason.
func (b *booter) boot(initArgs []string) error {
	b.start = b.now()
	if err := b.mountAPI(); err != nil {
		return err
	}
	raw, err := os.ReadFile(b.fsPath("/proc/cmdline"))
	if err != nil {
		return fmt.Errorf("reading the kernel command line: %w", err)
	}
	params := cmdline.Parse(string(raw))
	cfgData, err := os.ReadFile(b.fsPath("/" + initconfig.Path))
	if err != nil {
		return fmt.Errorf("reading the init configuration: %w", err)
	}
	cfg, err := initconfig.Parse(cfgData)
	if err != nil {
		return fmt.Errorf("/%s: %w", initconfig.Path, err)
	}
	opts, err := resolveOptions(cfg, params)
	if err != nil {
		return err
	}
	for _, n := range opts.notes {
		b.logf("%s", n)
	}
	mode := "plain root (composefs disabled)"
	if opts.composefs {
		mode = fmt.Sprintf("composefs %s, verity=%s, signed=%v", opts.digest.Hex, opts.verity, opts.signed)
	}
	if opts.ostree != "" {
		mode = "ostree deployment " + opts.ostree + ", " + mode
	}
	b.logf("starting: %s", mode)
	if err := b.loadModules(cfg.Modules); err != nil {
		return err
	}
	dev, err := b.findRoot(opts.rootLabel, opts.rootWait)
	if err != nil {
		return err
	}
	b.logf("root partition %s", dev)
	if err := b.mkdir(partMount); err != nil {
		return err
	}
	if err := b.sys.Mount(dev, partMount, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mounting root partition %s on %s: %w", dev, partMount, err)
	}
	var plan []step
	var image string // the verified EROFS image that is mounted
	var dep ostreeDeployment
	switch {
	case opts.ostree != "":
		if dep, err = resolveOstree(b.fsPath(partMount), opts.ostree); err != nil {
			return err
		}
		b.logf("ostree deployment %s (/%s)", dep, dep.dir)
		if opts.composefs {
			if image, err = b.verifyOstreeComposefs(opts, dep); err != nil {
				return err
			}
		}
		plan = ostreePlan(dep, image, opts.verity, opts.erofsLoop, b.ostreeBootOnRoot(dep))
	case opts.composefs:
		if image, err = b.verifyComposefs(opts, cfg); err != nil {
			return err
		}
		plan = composefsPlan(image, opts.digest.Hex, opts.verity, opts.erofsLoop)
	default:
		if fi, err := os.Stat(b.fsPath(path.Join(partMount, bootlayout.Plain.Root()))); err != nil || !fi.IsDir() {
			return fmt.Errorf("no plain deployment tree %s on the root partition (composefs is disabled)", bootlayout.Plain.Root())
		}
		plan = plainPlan()
	}
	if err := b.execute(plan); err != nil {
		return err
	}
	if opts.ostree != "" {
		if err := b.writeOstreeBooted(dep, opts.composefs, opts.verity); err != nil {
			return err
		}
	}
	sysroot, err := b.placeSysroot()
	if err != nil {
		return err
	}
	if opts.composefs {
		// The image's path as the booted system sees it.
		if rest, ok := strings.CutPrefix(image, partMount+"/"); ok {
			image = path.Join(sysroot, rest)
		}
		if err := b.record(opts.digest.Hex, image); err != nil {
			return err
		}
		b.logf("composefs root mounted (image %s, verity=%s)", opts.digest.Hex, opts.verity)
	} else {
		b.logf("plain root mounted")
	}
	return b.switchRoot(opts.init, initArgs)
}

// record writes what the booted system can check the composefs root
// against (docs/testbed.md): the verified digest and the mounted image's
// path. Both live in /run/cfs, which moves into the new root, so the image
// path is the same there.
func (b *booter) record(hexd, image string) error {
	for _, f := range []struct{ path, value string }{{recordedDigest, hexd}, {recordedImage, image}} {
		if err := os.WriteFile(b.fsPath(f.path), []byte(f.value+"\n"), 0o444); err != nil {
			return fmt.Errorf("recording %s: %w", f.path, err)
		}
	}
	return nil
}

// mountAPI mounts /proc, /sys, /dev and /run.
func (b *booter) mountAPI() error {
	for _, m := range []struct {
		fstype, target string
		flags          uintptr
		data           string
	}{
		{"proc", "/proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", unix.MS_NOSUID, "mode=0755"},
		{"tmpfs", "/run", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	} {
		if err := b.mkdir(m.target); err != nil {
			return err
		}
		if err := b.sys.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

func (b *booter) mkdir(p string) error {
	if err := os.MkdirAll(b.fsPath(p), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", p, err)
	}
	return nil
}

// loadModules loads the configured modules in order.
func (b *booter) loadModules(mods []string) error {
	t := b.now()
	for _, m := range mods {
		p := path.Join("/", initconfig.ModuleDir, m)
		if _, err := os.Stat(b.fsPath(p)); err != nil {
			return fmt.Errorf("kernel module %s is missing from the initramfs: %w", m, err)
		}
		if err := b.sys.LoadModule(p); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("loading kernel module %s: %w", m, err)
		}
	}
	if len(mods) > 0 {
		b.logf("loaded %d modules (%s) in %.2fs", len(mods), strings.Join(mods, " "), b.now().Sub(t).Seconds())
	}
	return nil
}

// findRoot waits for the root partition: the partition named label
// (uevent PARTNAME), else a GPT partition of the root type for this
// architecture.
func (b *booter) findRoot(label string, wait time.Duration) (string, error) {
	deadline := b.now().Add(wait)
	for {
		dev, err := b.scanRoot(label)
		if err != nil || dev != "" {
			return dev, err
		}
		if !b.now().Before(deadline) {
			return "", fmt.Errorf("no root partition: no partition named %q and no partition of type %s after %s (%s=N waits longer)", label, rootType(b.arch), wait, argRootWait)
		}
		b.sleep(50 * time.Millisecond)
	}
}

func (b *booter) scanRoot(label string) (string, error) {
	dir := b.fsPath("/sys/class/block")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("listing block devices: %w", err)
	}
	var disks []string
	for _, e := range ents {
		ue := parseUevent(readFileOrEmpty(filepath.Join(dir, e.Name(), "uevent")))
		if ue["DEVTYPE"] == "partition" {
			// devtmpfs creates the node shortly after the sysfs entry
			// appears: not ready until both exist.
			if ue["PARTNAME"] == label && ue["DEVNAME"] != "" && b.exists("/dev/"+ue["DEVNAME"]) {
				return "/dev/" + ue["DEVNAME"], nil
			}
		} else if ue["DEVTYPE"] == "disk" && ue["DEVNAME"] != "" {
			disks = append(disks, ue["DEVNAME"])
		}
	}
	want := rootType(b.arch)
	for _, d := range disks {
		f, err := os.Open(b.fsPath("/dev/" + d))
		if err != nil {
			continue
		}
		parts, err := readGPT(f)
		f.Close()
		if err != nil {
			continue
		}
		for _, p := range parts {
			if p.Type != want {
				continue
			}
			for _, name := range []string{fmt.Sprintf("%s%d", d, p.Number), fmt.Sprintf("%sp%d", d, p.Number)} {
				if _, err := os.Stat(filepath.Join(dir, name)); err == nil && b.exists("/dev/"+name) {
					return "/dev/" + name, nil
				}
			}
		}
	}
	return "", nil
}

// exists reports whether a namespace path exists.
func (b *booter) exists(p string) bool {
	_, err := os.Stat(b.fsPath(p))
	return err == nil
}

func readFileOrEmpty(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// parseUevent parses a sysfs uevent file (KEY=value lines).
func parseUevent(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m
}

// verifyComposefs checks the image and object store on the mounted root
// partition, the digest signature (signed mode) and the image's fs-verity
// digest, enables fs-verity on first boot when the mode asks for it, and
// returns the image file to mount.
func (b *booter) verifyComposefs(o options, cfg initconfig.Config) (string, error) {
	hexd := o.digest.Hex
	image := path.Join(partMount, bootlayout.Composefs.Image(hexd))
	if _, err := os.Stat(b.fsPath(image)); err != nil {
		return "", fmt.Errorf("composefs image %s not found on the root partition: %w", bootlayout.Composefs.Image(hexd), err)
	}
	objects := path.Join(partMount, bootlayout.ObjectsDir)
	if fi, err := os.Stat(b.fsPath(objects)); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("composefs object store %s missing on the root partition", bootlayout.ObjectsDir)
	}
	if o.signed {
		if err := b.checkSignature(cfg.PublicKey, hexd); err != nil {
			return "", err
		}
	}
	return b.verifyImage(o, image, objects, path.Join(partMount, bootlayout.Composefs.VerityStamp(hexd)))
}

// verifyImage checks the composefs image's fs-verity digest against the
// command line's and, with verity enable or require, enables fs-verity on
// the objects under objects (stamp, when not empty, records that it was
// done once) and on the image. It returns the file to mount: the image,
// or a copy of its verified bytes in /run when nothing pins them.
func (b *booter) verifyImage(o options, image, objects, stamp string) (string, error) {
	hexd := o.digest.Hex
	kernel, data, err := b.measureImage(image, hexd)
	if err != nil {
		return "", err
	}
	// Only a verified image may change the disk: enable fs-verity now.
	if o.verity != initconfig.VerityNone {
		if err := b.enableObjectVerity(objects, stamp); err != nil {
			return "", err
		}
		if !kernel {
			if err := b.sys.EnableVerity(image); err != nil {
				return "", fmt.Errorf("enabling fs-verity on the composefs image: %w", err)
			}
			if got, err := b.sys.MeasureVerity(image); err != nil || hex.EncodeToString(got) != hexd {
				return "", fmt.Errorf("composefs image digest after enabling fs-verity: %x, %v (want %s)", got, err, hexd)
			}
		}
		return image, nil
	}
	if kernel {
		return image, nil
	}
	// Mount the verified bytes (copied to /run) so nothing can change them
	// between the check and the mount.
	cp := "/run/cfs/" + hexd + ".erofs"
	if err := os.WriteFile(b.fsPath(cp), data, 0o400); err != nil {
		return "", fmt.Errorf("copying the verified image to %s: %w", cp, err)
	}
	return cp, nil
}

// measureImage checks the image's fs-verity digest against hexd: measured
// by the kernel when the file has fs-verity (kernel is true), else
// computed in userspace over data, which it returns.
func (b *booter) measureImage(image, hexd string) (kernel bool, data []byte, err error) {
	t := b.now()
	got, err := b.sys.MeasureVerity(image)
	if err == nil {
		if hex.EncodeToString(got) != hexd {
			return false, nil, fmt.Errorf("composefs image digest mismatch: fs-verity measures %x, the command line says %s", got, hexd)
		}
		b.logf("image fs-verity digest verified by the kernel (%.2fs)", b.now().Sub(t).Seconds())
		return true, nil, nil
	}
	if !errors.Is(err, errNoVerity) {
		return false, nil, fmt.Errorf("measuring %s: %w", image, err)
	}
	data, err = os.ReadFile(b.fsPath(image))
	if err != nil {
		return false, nil, fmt.Errorf("reading composefs image: %w", err)
	}
	sum, err := verityDigest(bytes.NewReader(data))
	if err != nil {
		return false, nil, fmt.Errorf("hashing composefs image: %w", err)
	}
	if hex.EncodeToString(sum[:]) != hexd {
		return false, nil, fmt.Errorf("composefs image digest mismatch: the image's fs-verity digest is %x, the command line says %s", sum, hexd)
	}
	b.logf("image fs-verity digest verified in userspace (%d bytes, %.2fs)", len(data), b.now().Sub(t).Seconds())
	return false, data, nil
}

// checkSignature verifies composefs/images/<hex>.sig with the embedded key.
func (b *booter) checkSignature(pubPEM, hexd string) error {
	pub, err := initconfig.ParsePublicKey([]byte(pubPEM))
	if err != nil {
		return err
	}
	sigPath := path.Join(partMount, bootlayout.Composefs.Signature(hexd))
	sig, err := os.ReadFile(b.fsPath(sigPath))
	if err != nil {
		return fmt.Errorf("signed composefs: no digest signature %s: %w", bootlayout.Composefs.Signature(hexd), err)
	}
	if err := initconfig.VerifyDigest(pub, hexd, sig); err != nil {
		return fmt.Errorf("signed composefs: signature %s does not verify with the embedded key", bootlayout.Composefs.Signature(hexd))
	}
	b.logf("composefs digest signature verified")
	return nil
}

// enableObjectVerity enables fs-verity on every object under objects
// lacking it; with a stamp, once per deployment (the stamp file records
// completion).
func (b *booter) enableObjectVerity(objects, stamp string) error {
	if stamp != "" {
		if _, err := os.Stat(b.fsPath(stamp)); err == nil {
			return nil
		}
	}
	t := b.now()
	n, total := 0, 0
	err := filepath.WalkDir(b.fsPath(objects), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(b.fsPath(objects), p)
		ns := path.Join(objects, filepath.ToSlash(rel))
		total++
		if _, err := b.sys.MeasureVerity(ns); err == nil {
			return nil
		} else if !errors.Is(err, errNoVerity) {
			return fmt.Errorf("measuring object %s: %w", rel, err)
		}
		if err := b.sys.EnableVerity(ns); err != nil {
			return fmt.Errorf("enabling fs-verity on object %s: %w", rel, err)
		}
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if stamp != "" {
		if err := b.mkdir(path.Dir(stamp)); err != nil {
			return err
		}
		if err := os.WriteFile(b.fsPath(stamp), nil, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", stamp, err)
		}
	}
	b.logf("enabled fs-verity on %d of %d objects (%.2fs)", n, total, b.now().Sub(t).Seconds())
	return nil
}

// execute runs a mount plan.
func (b *booter) execute(plan []step) error {
	for _, s := range plan {
		switch s.op {
		case opMkdir:
			if err := b.mkdir(s.target); err != nil {
				return err
			}
		case opMount:
			if err := b.sys.Mount(s.source, s.target, s.fstype, s.flags, s.data); err != nil {
				return fmt.Errorf("%s (%s on %s): %w", s.what, s.source, s.target, err)
			}
		case opMountImage:
			dev, err := b.sys.MountImage(s.source, s.target, s.fstype, s.loop)
			if err != nil {
				return fmt.Errorf("%s (%s on %s): %w", s.what, s.source, s.target, err)
			}
			if dev != "" {
				b.logf("%s through %s", s.what, dev)
			}
		}
	}
	return nil
}

// defaultInits are tried in order when init= is not given.
var defaultInits = []string{"/sbin/init", "/usr/lib/systemd/systemd"}

// placeSysroot moves the root partition's mount from partMount to the new
// root's /sysroot, as on Fedora (ostree-prepare-root, bootc), and makes
// that mount read-only. Only the mount is read-only: the filesystem stays
// writable, and so do the /etc overlay (overlayfs keeps a private clone of
// its upper layer's mount, taken before) and the /var bind mount. An image
// without a /sysroot directory (the root is read-only, so none can be
// made) keeps the partition at partMount (/run/cfs/sysroot), read-only too.
// It returns where the booted system sees the partition.
func (b *booter) placeSysroot() (string, error) {
	target, seen := path.Join(newRoot, sysrootDir), sysrootDir
	if fi, err := os.Stat(b.fsPath(target)); err == nil && fi.IsDir() {
		if err := b.sys.Mount(partMount, target, "", unix.MS_MOVE, ""); err != nil {
			return "", fmt.Errorf("moving the root partition from %s to %s: %w", partMount, sysrootDir, err)
		}
		b.logf("root partition moved to %s (read-only)", sysrootDir)
	} else {
		b.logf("the image has no %s directory: the root partition stays at %s (read-only)", sysrootDir, partMount)
		target, seen = partMount, partMount
	}
	if err := b.sys.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return "", fmt.Errorf("making the root partition's mount %s read-only: %w", target, err)
	}
	return seen, nil
}

// switchRoot makes /sysroot the root and executes the image's init.
func (b *booter) switchRoot(initPath string, args []string) error {
	candidates := defaultInits
	if initPath != "" {
		candidates = []string{initPath}
	}
	chosen := ""
	for _, c := range candidates {
		if fi, err := os.Stat(b.fsPath(path.Join(newRoot, c))); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			chosen = c
			break
		}
	}
	if chosen == "" {
		return fmt.Errorf("no init to execute in the new root (tried %s)", strings.Join(candidates, ", "))
	}
	b.logf("switching root, executing %s (%.2fs since start)", chosen, b.now().Sub(b.start).Seconds())
	if err := b.sys.SwitchRoot(newRoot); err != nil {
		return fmt.Errorf("switching root to %s: %w", newRoot, err)
	}
	argv := append([]string{chosen}, args...)
	if err := b.sys.Exec(chosen, argv, os.Environ()); err != nil {
		return fmt.Errorf("executing %s: %w", chosen, err)
	}
	return nil
}
