package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/internal/ostree"
)

// The ostree mode (initconfig.Config.Ostree): cfs-init does what
// ostree-prepare-root does for the deployment ostree= names, and in
// composefs mode checks the deployment's .ostree.cfs against the commit
// and the command line before mounting it. docs/boot-layout.md compares
// the two.

// Paths and names of an ostree sysroot, relative to the root partition.
const (
	ostreeRepoDir     = "ostree/repo"
	ostreeObjectsDir  = "ostree/repo/objects"
	ostreeComposefs   = ".ostree.cfs"
	ostreeBootedPath  = "/run/ostree-booted" // libostree's OTCORE_RUN_BOOTED
	maxSymlinkFollows = 40                   // as the kernel's path walk (ELOOP)
)

// Keys of /run/ostree-booted (libotcore/otcore.h OTCORE_RUN_BOOTED_KEY_*)
// as ostree-prepare-root writes them.
const (
	bootedKeyBacking         = "backing-root-device-inode" // (tt): the deployment directory's st_dev, st_ino
	bootedKeyComposefs       = "composefs"                 // b: the root is the deployment's composefs image
	bootedKeyComposefsVerity = "composefs.verity"          // b: mounted with verity required
	bootedKeyRootTransient   = "root.transient"            // b
	bootedKeySysrootRO       = "sysroot-ro"                // b: /sysroot is mounted read-only
)

// errNoOstreeDigest means the commit carries no composefs digest.
var errNoOstreeDigest = errors.New("the commit has no composefs digest (" + ostree.MetaComposefsDigest + ")")

// parseDeployName splits a deployment directory name, COMMIT.SERIAL
// (64 lower-case hex digits, a dot, a decimal serial).
func parseDeployName(name string) (ostree.Checksum, int, bool) {
	sum, serial, ok := strings.Cut(name, ".")
	if !ok || len(sum) != 64 || strings.ToLower(sum) != sum || serial == "" || strings.TrimLeft(serial, "0123456789") != "" {
		return ostree.Checksum{}, 0, false
	}
	c, err := ostree.ParseChecksum(sum)
	if err != nil {
		return ostree.Checksum{}, 0, false
	}
	n, err := strconv.Atoi(serial)
	if err != nil {
		return ostree.Checksum{}, 0, false
	}
	return c, n, true
}

// ostreeDeployment is the deployment ostree= resolves to on the root
// partition.
type ostreeDeployment struct {
	dir       string          // partition-relative: ostree/deploy/STATEROOT/deploy/COMMIT.SERIAL
	stateroot string          // STATEROOT
	commit    ostree.Checksum // COMMIT
	serial    int
}

// varDir is the stateroot's shared /var, partition-relative.
func (d ostreeDeployment) varDir() string { return path.Join("ostree/deploy", d.stateroot, "var") }

// String names the deployment as `ostree admin status` does.
func (d ostreeDeployment) String() string {
	return fmt.Sprintf("%s %s.%d", d.stateroot, d.commit, d.serial)
}

// resolveOstree resolves the ostree= argument (/ostree/boot.N/STATEROOT/
// BOOTCSUM/SERIAL, a chain of symbolic links) inside the root partition
// whose file-access path is part, and checks that it ends at a deployment
// directory ostree/deploy/STATEROOT/deploy/COMMIT.SERIAL.
func resolveOstree(part, arg string) (ostreeDeployment, error) {
	rel, err := resolveInside(part, arg)
	if err != nil {
		return ostreeDeployment{}, fmt.Errorf("%s=%s: %w", argOstree, arg, err)
	}
	fi, err := os.Stat(path.Join(part, rel))
	if err != nil {
		return ostreeDeployment{}, fmt.Errorf("%s=%s: %w", argOstree, arg, err)
	}
	if !fi.IsDir() {
		return ostreeDeployment{}, fmt.Errorf("%s=%s resolves to /%s, which is not a directory", argOstree, arg, rel)
	}
	c := strings.Split(rel, "/")
	if len(c) != 5 || c[0] != "ostree" || c[1] != "deploy" || c[3] != "deploy" || c[2] == "" {
		return ostreeDeployment{}, fmt.Errorf("%s=%s resolves to /%s, not a deployment directory ostree/deploy/STATEROOT/deploy/COMMIT.SERIAL", argOstree, arg, rel)
	}
	sum, serial, ok := parseDeployName(c[4])
	if !ok {
		return ostreeDeployment{}, fmt.Errorf("%s=%s resolves to /%s, whose name is not COMMIT.SERIAL", argOstree, arg, rel)
	}
	return ostreeDeployment{dir: rel, stateroot: c[2], commit: sum, serial: serial}, nil
}

// resolveInside resolves the absolute path p inside the directory root
// (a file-access path) as if root were "/", following symbolic links, and
// returns the resolved path relative to root. Absolute link targets and
// ".." above root are refused rather than followed: nothing on the
// partition may lead the boot outside it.
func resolveInside(root, p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	var done []string
	todo := strings.Split(p, "/")
	follows := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", fmt.Errorf("%q leads above the root partition", p)
			}
			done = done[:len(done)-1]
			continue
		}
		cur := append(done, name)
		full := path.Join(root, strings.Join(cur, "/"))
		fi, err := os.Lstat(full)
		if err != nil {
			return "", fmt.Errorf("/%s: %w", strings.Join(cur, "/"), err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if len(todo) > 0 && !fi.IsDir() {
				return "", fmt.Errorf("/%s is not a directory", strings.Join(cur, "/"))
			}
			done = cur
			continue
		}
		if follows++; follows > maxSymlinkFollows {
			return "", fmt.Errorf("%q: more than %d symbolic links", p, maxSymlinkFollows)
		}
		target, err := os.Readlink(full)
		if err != nil {
			return "", fmt.Errorf("/%s: %w", strings.Join(cur, "/"), err)
		}
		if strings.HasPrefix(target, "/") {
			return "", fmt.Errorf("/%s is a symbolic link to the absolute path %s; the ostree boot links are relative", strings.Join(cur, "/"), target)
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return strings.Join(done, "/"), nil
}

// ostreeCommitDigest reads the deployment's commit object from the
// repository on the root partition (part, a file-access path), checks it
// against its checksum (the deployment directory's name), and returns the
// commit's composefs digest (hex).
func ostreeCommitDigest(part string, d ostreeDeployment) (string, error) {
	r, err := ostree.OpenDir(path.Join(part, ostreeRepoDir))
	if err != nil {
		return "", fmt.Errorf("opening the ostree repository /%s: %w", ostreeRepoDir, err)
	}
	defer r.Close()
	c, err := r.ReadCommit(d.commit)
	if err != nil {
		return "", fmt.Errorf("reading the commit of deployment %s: %w", d, err)
	}
	v, ok := c.Lookup(ostree.MetaComposefsDigest)
	if !ok {
		return "", fmt.Errorf("commit %s: %w", d.commit, errNoOstreeDigest)
	}
	b, ok := v.AsBytes()
	if !ok || len(b) != 32 {
		return "", fmt.Errorf("commit %s: %s is %s of %d bytes, want 32 bytes (ay)", d.commit, ostree.MetaComposefsDigest, v.Type(), len(b))
	}
	return hex.EncodeToString(b), nil
}

// verifyOstreeComposefs checks the deployment's composefs image before it
// is mounted: the commit's composefs digest must be the one the command
// line pins, and the .ostree.cfs fs-verity digest must equal it. With
// verity enable or require it enables fs-verity on the repository's
// content objects lacking it. It returns the image file to mount.
func (b *booter) verifyOstreeComposefs(o options, d ostreeDeployment) (string, error) {
	want := o.digest.Hex
	got, err := ostreeCommitDigest(b.fsPath(partMount), d)
	if err != nil {
		return "", err
	}
	if got != want {
		return "", fmt.Errorf("composefs digest mismatch: commit %s records %s, the command line says %s", d.commit, got, want)
	}
	b.logf("commit %s verified, its composefs digest matches the command line", d.commit)
	image := path.Join(partMount, d.dir, ostreeComposefs)
	if _, err := os.Stat(b.fsPath(image)); err != nil {
		return "", fmt.Errorf("deployment %s has no composefs image %s: %w", d, ostreeComposefs, err)
	}
	objects := path.Join(partMount, ostreeObjectsDir)
	if fi, err := os.Stat(b.fsPath(objects)); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("ostree object store /%s missing on the root partition", ostreeObjectsDir)
	}
	// ostree keeps no record of which objects have fs-verity: measure them
	// on every boot (cheap once enabled).
	return b.verifyImage(o, image, objects, "")
}

// ostreePlan mounts the deployment d as ostree-prepare-root does. With a
// composefs image: the image (EROFS) and the overlay with the repository's
// objects as data-only lower layer at the new root, read-only. Without:
// the deployment directory bound at the new root with /usr read-only.
// Either way the deployment's etc is bound writable on /etc and the
// stateroot's var on /var, and with bindBoot the partition's boot on
// /boot (ostree's boot directory on the root partition: libostree wants
// /boot/loader when it loads the booted sysroot).
func ostreePlan(d ostreeDeployment, image, verity string, loop, bindBoot bool) []step {
	deploy := path.Join(partMount, d.dir)
	var plan []step
	if image != "" {
		objects := path.Join(partMount, ostreeObjectsDir)
		plan = []step{
			mkdir(erofsMount),
			{what: "mounting the deployment's composefs image", op: opMountImage, source: image, target: erofsMount, fstype: "erofs", loop: loop},
			mkdir(newRoot),
			{what: "mounting the composefs root", op: opMount, source: "composefs", target: newRoot, fstype: "overlay", flags: unix.MS_RDONLY,
				data: "lowerdir=" + erofsMount + "::" + objects + ",metacopy=on,redirect_dir=on" + overlayVerity(verity)},
		}
	} else {
		usr := path.Join(newRoot, "usr")
		plan = []step{
			mkdir(newRoot),
			{what: "binding the deployment", op: opMount, source: deploy, target: newRoot, flags: unix.MS_BIND},
			{what: "binding /usr", op: opMount, source: usr, target: usr, flags: unix.MS_BIND},
			{what: "making /usr read-only", op: opMount, target: usr, flags: unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY},
		}
	}
	if bindBoot {
		plan = append(plan, step{what: "binding /boot", op: opMount, source: path.Join(partMount, "boot"), target: path.Join(newRoot, "boot"), flags: unix.MS_BIND})
	}
	return append(plan,
		step{what: "binding the deployment's /etc", op: opMount, source: path.Join(deploy, "etc"), target: path.Join(newRoot, "etc"), flags: unix.MS_BIND},
		step{what: "binding the stateroot's /var", op: opMount, source: path.Join(partMount, d.varDir()), target: path.Join(newRoot, "var"), flags: unix.MS_BIND},
	)
}

// ostreeBootOnRoot reports whether /boot is to be bound into the
// deployment, as ostree-prepare-root decides: the root partition's
// boot/loader is a symbolic link (ostree's boot directory is on the root
// partition) and the deployment has a boot directory.
func (b *booter) ostreeBootOnRoot(d ostreeDeployment) bool {
	fi, err := os.Lstat(b.fsPath(path.Join(partMount, "boot/loader")))
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return false
	}
	fi, err = os.Lstat(b.fsPath(path.Join(partMount, d.dir, "boot")))
	return err == nil && fi.IsDir()
}

// writeOstreeBooted writes /run/ostree-booted as ostree-prepare-root
// does: an a{sv} GVariant whose backing-root-device-inode is the
// deployment directory's device and inode, by which libostree finds the
// booted deployment under a composefs root (ostree-sysroot.c,
// parse_deployment).
func (b *booter) writeOstreeBooted(d ostreeDeployment, composefs bool, verity string) error {
	fi, err := os.Stat(b.fsPath(path.Join(partMount, d.dir)))
	if err != nil {
		return fmt.Errorf("deployment %s: %w", d, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("deployment %s: no device and inode from stat", d)
	}
	entries := []ostree.MetaEntry{{Key: bootedKeyBacking, Value: ostree.Uint64Pair(uint64(st.Dev), st.Ino)}}
	if composefs {
		entries = append(entries,
			ostree.MetaEntry{Key: bootedKeyComposefs, Value: ostree.Bool(true)},
			ostree.MetaEntry{Key: bootedKeyComposefsVerity, Value: ostree.Bool(verity == initconfig.VerityRequire)})
	}
	entries = append(entries,
		ostree.MetaEntry{Key: bootedKeyRootTransient, Value: ostree.Bool(false)},
		ostree.MetaEntry{Key: bootedKeySysrootRO, Value: ostree.Bool(true)})
	data, err := ostree.MarshalDict(entries)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", ostreeBootedPath, err)
	}
	if err := os.WriteFile(b.fsPath(ostreeBootedPath), data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", ostreeBootedPath, err)
	}
	return nil
}
