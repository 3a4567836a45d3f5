package sysroot

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/ostree"
)

// RepoDir is the system repository, relative to the sysroot.
const RepoDir = "ostree/repo"

// ComposefsFile is the composefs image in a deployment directory
// (libostree's OSTREE_COMPOSEFS_NAME).
const ComposefsFile = ".ostree.cfs"

// KargComposefsOff is the kernel argument [Deploy] adds when composefs is
// off: ostree-prepare-root then mounts the deployment directory itself.
const KargComposefsOff = "ostree.prepare-root.composefs=0"

// ErrUnsupported marks a tree or sysroot state [Deploy] does not
// reproduce (see the package documentation).
var ErrUnsupported = errors.New("sysroot: unsupported")

// The modes below are what ostree 2025.2 creates under umask 022; the
// writer sets them explicitly, independent of the process umask.
const (
	dirMode     = 0o755
	privateMode = 0o700
	fileMode    = 0o644
	lockMode    = 0o640 // the repository's .lock (0660 under umask 022)
)

// InitOptions control [Init]. A nil *InitOptions means the zero value.
type InitOptions struct {
	// Modern creates only boot and ostree, like `ostree admin init-fs
	// --modern` (epoch 1); otherwise Init also creates the traditional
	// top-level directories dev, home, proc, run, sys, root and tmp.
	Modern bool
}

// Init lays out an empty sysroot in dir (created if missing) as `ostree
// admin init-fs dir` does: boot, and unless [InitOptions.Modern] dev, home,
// proc, run, sys (0755), root (0700) and tmp (01777); then ostree/deploy
// and the bare repository ostree/repo ([ostree.Init]). Existing
// directories are kept.
func Init(dir string, opts *InitOptions) error {
	if opts == nil {
		opts = &InitOptions{}
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	dirs := []struct {
		name string
		mode uint32
	}{{"boot", dirMode}}
	if !opts.Modern {
		dirs = append(dirs, []struct {
			name string
			mode uint32
		}{{"dev", dirMode}, {"home", dirMode}, {"proc", dirMode}, {"run", dirMode}, {"sys", dirMode}, {"root", privateMode}, {"tmp", 0o1777}}...)
	}
	dirs = append(dirs, []struct {
		name string
		mode uint32
	}{{"ostree", dirMode}, {RepoDir, dirMode}, {"ostree/deploy", dirMode}}...)
	for _, d := range dirs {
		if err := mkdir(filepath.Join(dir, d.name), d.mode); err != nil {
			return err
		}
	}
	if err := ostree.Init(filepath.Join(dir, RepoDir)); err != nil {
		return err
	}
	return nil
}

// stateroot names: ostree takes any directory name; we keep to the
// characters of a ref component.
var staterootRE = regexp.MustCompile(`^[A-Za-z0-9_][-._A-Za-z0-9]*$`)

// InitStateroot creates the stateroot name in the sysroot dir as `ostree
// admin os-init name` does: ostree/deploy/name and its shared var
// directory (both 0755, empty). It fails if the stateroot exists.
func InitStateroot(dir, name string) error {
	if !staterootRE.MatchString(name) {
		return fmt.Errorf("sysroot: invalid stateroot name %q", name)
	}
	p := filepath.Join(dir, "ostree/deploy", name)
	if err := os.Mkdir(p, dirMode); err != nil {
		return fmt.Errorf("sysroot: creating stateroot: %w", err)
	}
	if err := os.Chmod(p, dirMode); err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	return mkdir(filepath.Join(p, "var"), dirMode)
}

// Options configure [Deploy].
type Options struct {
	// Stateroot is the stateroot ("--os") to deploy into; [InitStateroot]
	// must have created it.
	Stateroot string
	// Kargs are the kernel arguments, in order (`--karg-append`); they
	// must not contain white space, and "ostree=" is added by Deploy.
	Kargs []string
	// Origin is the content of the deployment's .origin file, e.g. from
	// [ContainerOrigin] or [RefspecOrigin]; it must not be empty.
	Origin string
	// Composefs writes the deployment's composefs image ([ComposefsFile])
	// as libostree does when built with composefs. Without it there is no
	// image and [KargComposefsOff] is appended to the kernel arguments
	// (unless Kargs set ostree.prepare-root.composefs already).
	Composefs bool
	// ComposefsVerity records the fs-verity digests of the content
	// objects in the composefs image, as libostree does when the
	// deployment's prepare-root.conf requires verity or when the objects
	// have fs-verity enabled; the image then has the digest recorded in
	// the commit metadata ([ostree.MetaComposefsDigest]), and Deploy fails
	// if the commit records another one. Without it the image records no
	// digests (libostree's result on a repository without fs-verity).
	ComposefsVerity bool
	// Time is the modification time of everything Deploy, [Init] and
	// [InitStateroot] created whose time ostree takes from the clock
	// (directories outside the checkout, copied files, boot entries, the
	// repository's metadata objects and files). The zero Time means the
	// commit's timestamp. Content objects, the hard links to them and the
	// checkout's directories keep mtime 0, as with ostree.
	Time time.Time
}

// Deployment describes what [Deploy] wrote. Paths are relative to the
// sysroot.
type Deployment struct {
	Stateroot string
	Commit    ostree.Checksum
	// Serial is the deployment serial (0: the first deployment of Commit).
	Serial int
	// Dir is the deployment directory,
	// "ostree/deploy/STATEROOT/deploy/COMMIT.SERIAL".
	Dir string
	// KernelVersion is the usr/lib/modules directory the kernel came from.
	KernelVersion string
	// BootCsum is the SHA-256 (hex) of the kernel, initramfs and device
	// tree, naming boot/ostree/STATEROOT-BOOTCSUM.
	BootCsum string
	// Entry is the boot loader entry ("boot/loader.1/entries/ostree-1.conf").
	Entry string
	// Options is the kernel command line of the entry.
	Options string
	// ComposefsDigest is the fs-verity digest of the composefs image
	// ([Options.Composefs] only).
	ComposefsDigest *[fsverity.Size]byte
}

// Deploy lays out the first deployment of commit in the sysroot dir as
// `ostree admin deploy --os=STATEROOT [--karg-append=…]
// [--origin-file=…] COMMIT` does, with no boot loader configuration
// present (ostree's "none": BLS entries only). The commit and its
// objects must be in the sysroot's repository ([RepoDir]), and dir must
// have been laid out by [Init] and [InitStateroot] (or the ostree
// commands) with no deployment yet.
//
// Deploy writes: the hard-link checkout of the commit
// (ostree/deploy/STATEROOT/deploy/COMMIT.0, immutable), its etc as a
// copy of usr/etc, the stateroot's var (the commit's /var copied when
// the stateroot var is empty, and the legacy var/tmp, lib, log, run and
// lock when the commit has no usr/lib/tmpfiles.d; var/.ostree-selabeled),
// the deployment's backing directory, its .origin file and composefs
// image, the kernel, initramfs and device tree in
// boot/ostree/STATEROOT-BOOTCSUM (hard links when on the same file
// system, else copies), the BLS entry boot/loader.1/entries/ostree-1.conf,
// the links ostree/boot.1 → boot.1.1, ostree/boot.1.1/STATEROOT/BOOTCSUM/0
// → the deployment, boot/loader → loader.1 and boot/boot → ., the
// repository ref ostree/1/1/0 → commit and the repository's .lock file.
// The output is deterministic: see [Options.Time].
func Deploy(dir string, commit ostree.Checksum, opts *Options) (*Deployment, error) {
	if opts == nil || opts.Stateroot == "" || opts.Origin == "" {
		return nil, errors.New("sysroot: Deploy needs a stateroot and an origin")
	}
	for _, k := range opts.Kargs {
		if k == "" || strings.ContainsAny(k, " \t\r\n\"") || kargKey(k) == "ostree" {
			return nil, fmt.Errorf("sysroot: invalid kernel argument %q", k)
		}
	}
	d := &deployer{sysroot: dir, opts: *opts}
	dep, err := d.deploy(commit)
	if err != nil {
		return nil, err
	}
	return dep, nil
}

type deployer struct {
	sysroot string
	opts    Options
	repo    *ostree.Reader
	copied  []string // files the hard-link checkout copied
	config  Config   // the repository's [sysroot] configuration
}

func (d *deployer) path(rel string) string { return filepath.Join(d.sysroot, filepath.FromSlash(rel)) }

func (d *deployer) deploy(commit ostree.Checksum) (*Deployment, error) {
	st := d.opts.Stateroot
	osdir := "ostree/deploy/" + st
	if fi, err := os.Stat(d.path(osdir)); err != nil || !fi.IsDir() || !staterootRE.MatchString(st) {
		return nil, fmt.Errorf("sysroot: no such stateroot: %s", st)
	}
	for _, p := range []string{"ostree/boot.0", "ostree/boot.1", "boot/loader"} {
		if _, err := os.Lstat(d.path(p)); err == nil {
			return nil, fmt.Errorf("sysroot: %w: %s exists: only the first deployment of a sysroot is written", ErrUnsupported, p)
		}
	}
	if ents, _ := os.ReadDir(d.path(osdir + "/deploy")); len(ents) > 0 {
		return nil, fmt.Errorf("sysroot: %w: %s/deploy is not empty: only the first deployment of a sysroot is written", ErrUnsupported, osdir)
	}
	repo, err := ostree.OpenDir(d.path(RepoDir))
	if err != nil {
		return nil, fmt.Errorf("sysroot: %w", err)
	}
	defer repo.Close()
	d.repo = repo
	if d.config, err = readConfig(d.path(RepoDir)); err != nil {
		return nil, err
	}
	cm, err := repo.ReadCommit(commit)
	if err != nil {
		return nil, fmt.Errorf("sysroot: %w", err)
	}
	when := d.opts.Time
	if when.IsZero() {
		when = cm.Timestamp
	}
	root := ostree.Root{Contents: cm.RootContents, Meta: cm.RootMeta}
	dep := &Deployment{Stateroot: st, Commit: commit, Dir: fmt.Sprintf("%s/deploy/%s.0", osdir, commit)}

	// sysroot_initialize_deployment: backing, the checkout, the kernel,
	// etc and var.
	if err := mkdir(d.path(osdir+"/backing"), privateMode); err != nil {
		return nil, err
	}
	if err := mkdir(d.path(osdir+"/deploy"), dirMode); err != nil {
		return nil, err
	}
	if err := d.checkout(root, d.path(dep.Dir), false, false); err != nil {
		return nil, err
	}
	deployRoot, err := os.OpenRoot(d.path(dep.Dir))
	if err != nil {
		return nil, fmt.Errorf("sysroot: %w", err)
	}
	defer deployRoot.Close()
	k, err := findKernel(deployRoot)
	if err != nil {
		return nil, err
	}
	dep.KernelVersion, dep.BootCsum = k.kver, k.bootcsum
	if err := d.prepareEtc(root, dep.Dir); err != nil {
		return nil, err
	}
	if err := d.prepareVar(root, dep.Dir, osdir+"/var"); err != nil {
		return nil, err
	}

	// sysroot_finalize_deployment.
	for _, p := range []string{dep.Dir + "/etc/.updated", osdir + "/var/.updated"} {
		if err := os.Remove(d.path(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("sysroot: %w", err)
		}
	}
	if _, err := os.Lstat(d.path(osdir + "/var/.ostree-selabeled")); errors.Is(err, fs.ErrNotExist) {
		if err := writeFile(d.path(osdir+"/var/.ostree-selabeled"), nil, fileMode); err != nil {
			return nil, err
		}
	}
	rootMeta, err := d.repo.ReadDirMeta(root.Meta)
	if err != nil {
		return nil, fmt.Errorf("sysroot: %w", err)
	}
	backing := fmt.Sprintf("%s/backing/%s.0", osdir, commit)
	for _, b := range []struct {
		p    string
		mode uint32
	}{{backing, privateMode}, {backing + "/root-transient", privateMode}, {backing + "/root-transient/work", privateMode}, {backing + "/root-transient/upper", rootMeta.Mode & 0o1777 &^ 0o022}} {
		if err := mkdir(d.path(b.p), b.mode); err != nil {
			return nil, err
		}
	}
	if err := writeFile(d.path(dep.Dir+".origin"), []byte(d.opts.Origin), fileMode); err != nil {
		return nil, err
	}
	if d.opts.Composefs {
		dg, err := d.writeComposefs(commit, cm, dep.Dir)
		if err != nil {
			return nil, err
		}
		dep.ComposefsDigest = &dg
	}

	// write_deployments_bootswap into boot version 1: the kernel, the BLS
	// entry, the boot links.
	if err := d.installKernel(k, dep); err != nil {
		return nil, err
	}
	title, err := entryTitle(deployRoot, cm)
	if err != nil {
		return nil, err
	}
	dep.Options = d.kernelOptions(k, dep)
	dep.Entry = "boot/loader.1/entries/ostree-1.conf"
	if err := mkdir(d.path("boot/loader.1"), dirMode); err != nil {
		return nil, err
	}
	if err := mkdir(d.path("boot/loader.1/entries"), dirMode); err != nil {
		return nil, err
	}
	if err := writeFile(d.path(dep.Entry), []byte(bootEntry(title, k, dep, len(d.kargs()) > 0, d.config.BootPrefix)), fileMode); err != nil {
		return nil, err
	}
	bootlink := fmt.Sprintf("ostree/boot.1.1/%s/%s", st, k.bootcsum)
	for _, p := range []string{"ostree/boot.1.1", "ostree/boot.1.1/" + st, bootlink} {
		if err := mkdir(d.path(p), dirMode); err != nil {
			return nil, err
		}
	}
	for _, l := range []struct{ target, name string }{
		{fmt.Sprintf("../../../deploy/%s/deploy/%s.0", st, commit), bootlink + "/0"},
		{"boot.1.1", "ostree/boot.1"},
		{".", "boot/boot"},
		{"loader.1", "boot/loader"},
	} {
		if err := os.Symlink(l.target, d.path(l.name)); err != nil {
			return nil, fmt.Errorf("sysroot: %w", err)
		}
	}

	// write_deployments_finish and the cleanup: the deployment ref.
	if err := d.writeRef("ostree/1/1/0", commit); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(d.path(RepoDir + "/.lock")); errors.Is(err, fs.ErrNotExist) {
		if err := writeFile(d.path(RepoDir+"/.lock"), nil, lockMode); err != nil {
			return nil, err
		}
	}
	if err := d.stamp(dep.Dir, when); err != nil {
		return nil, err
	}
	// Seal the deployment (ostree_sysroot_deployment_set_mutable).
	if err := setImmutable(d.path(dep.Dir)); err != nil {
		return nil, err
	}
	return dep, nil
}

// writeRef writes the repository ref refs/heads/name.
func (d *deployer) writeRef(name string, c ostree.Checksum) error {
	p := d.path(RepoDir + "/refs/heads/" + name)
	var missing []string
	for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
		if _, err := os.Lstat(dir); err == nil {
			break
		}
		missing = append(missing, dir)
	}
	for _, m := range slices.Backward(missing) {
		if err := mkdir(m, dirMode); err != nil {
			return err
		}
	}
	return writeFile(p, []byte(c.String()+"\n"), fileMode)
}

// kernelOptions returns the entry's options: the kernel arguments, the
// composefs switch, init= without an initramfs, and ostree=.
func (d *deployer) kernelOptions(k *kernel, dep *Deployment) string {
	kargs := d.kargs()
	bootlink := fmt.Sprintf("/ostree/boot.1/%s/%s/0", dep.Stateroot, k.bootcsum)
	if k.initramfs == "" {
		kargs = replaceKarg(kargs, "init="+bootlink+"/usr/lib/ostree/ostree-prepare-root")
	}
	kargs = replaceKarg(kargs, "ostree="+bootlink)
	return strings.Join(kargs, " ")
}

// kargs returns the kernel arguments the deployment starts with (the
// `--karg-append` arguments): [Options.Kargs] and the composefs switch.
func (d *deployer) kargs() []string {
	kargs := slices.Clone(d.opts.Kargs)
	if !d.opts.Composefs && !slices.ContainsFunc(kargs, func(a string) bool { return kargKey(a) == "ostree.prepare-root.composefs" }) {
		kargs = append(kargs, KargComposefsOff)
	}
	return kargs
}

// kargKey returns the name of a kernel argument (before "=").
func kargKey(a string) string {
	k, _, _ := strings.Cut(a, "=")
	return k
}

// replaceKarg replaces every argument with the key of a by a, at the place
// of the first, or appends a (ostree_kernel_args_replace_take).
func replaceKarg(kargs []string, a string) []string {
	key := kargKey(a)
	var out []string
	done := false
	for _, k := range kargs {
		if kargKey(k) != key {
			out = append(out, k)
		} else if !done {
			out = append(out, a)
			done = true
		}
	}
	if !done {
		out = append(out, a)
	}
	return out
}

// writeComposefs writes the deployment's composefs image.
func (d *deployer) writeComposefs(c ostree.Checksum, cm *ostree.Commit, depDir string) ([fsverity.Size]byte, error) {
	var buf bytes.Buffer
	dg, err := d.repo.WriteComposefs(&buf, c, &ostree.ComposefsOptions{Verity: d.opts.ComposefsVerity})
	if err != nil {
		return dg, fmt.Errorf("sysroot: %w", err)
	}
	if d.opts.ComposefsVerity {
		for _, e := range cm.Metadata {
			if e.Key != ostree.MetaComposefsDigest {
				continue
			}
			if want, ok := e.Value.AsBytes(); !ok || !bytes.Equal(want, dg[:]) {
				return dg, fmt.Errorf("sysroot: composefs image digest %x differs from the commit's %s %x", dg, ostree.MetaComposefsDigest, want)
			}
		}
	}
	if err := writeFile(d.path(depDir+"/"+ComposefsFile), buf.Bytes(), fileMode); err != nil {
		return dg, err
	}
	return dg, nil
}

// mkdir creates a directory with exactly mode (no umask); an existing
// directory is kept as it is.
func mkdir(p string, mode uint32) error {
	if err := unix.Mkdir(p, mode); err != nil {
		if err == unix.EEXIST {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				return nil
			}
		}
		return fmt.Errorf("sysroot: mkdir %s: %w", p, err)
	}
	if err := unix.Chmod(p, mode); err != nil {
		return fmt.Errorf("sysroot: chmod %s: %w", p, err)
	}
	return nil
}

// writeFile creates (or replaces) the file p with data and exactly mode.
func writeFile(p string, data []byte, mode uint32) error {
	if err := os.WriteFile(p, data, os.FileMode(mode)); err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	if err := unix.Chmod(p, mode); err != nil {
		return fmt.Errorf("sysroot: chmod %s: %w", p, err)
	}
	return nil
}

// setImmutable sets the immutable inode flag of the directory p (chattr
// +i); file systems without inode flags are left alone, as ostree does.
func setImmutable(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if err != nil {
		if err == unix.ENOTTY || err == unix.EOPNOTSUPP {
			return nil
		}
		return fmt.Errorf("sysroot: reading inode flags of %s: %w", p, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|fsImmutableFL)); err != nil {
		return fmt.Errorf("sysroot: making %s immutable: %w", p, err)
	}
	return nil
}

// fsImmutableFL is the immutable inode flag (FS_IMMUTABLE_FL, linux/fs.h).
const fsImmutableFL = 0x10
