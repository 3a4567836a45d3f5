package main

import (
	"path"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/bootlayout"
)

// Where things are mounted inside the initramfs. Just before switch_root
// the root partition's mount moves to the new root's /sysroot (sysrootDir)
// and becomes read-only; /run moves into the new root too, with the EROFS
// image's mount.
const (
	partMount  = "/run/cfs/sysroot" // the root partition (ext4, rw) until switch_root
	sysrootDir = "/sysroot"         // where the booted system sees the root partition, read-only
	erofsMount = "/run/cfs/erofs"   // the composefs EROFS image
	newRoot    = "/sysroot"         // the assembled root filesystem

	// Records for the booted system (composefs): the digest verified and
	// mounted, and the mounted image's path.
	recordedDigest = "/run/cfs/composefs-digest"
	recordedImage  = "/run/cfs/image-path"
)

// opKind is what a step does.
type opKind int

const (
	opMkdir      opKind = iota // create target (and parents), mode 0755
	opMount                    // mount(2)
	opMountImage               // mount an image file read-only (directly or through a loop device)
)

// step is one mount-plan action, plain data so plans are unit-tested.
type step struct {
	what   string // for progress and error messages
	op     opKind
	source string
	target string
	fstype string
	flags  uintptr
	data   string
	loop   bool // opMountImage: always through a loop device
}

func mkdir(p string) step { return step{what: "creating " + p, op: opMkdir, target: p} }

// overlayVerity returns the overlayfs verity= option for a mode.
func overlayVerity(mode string) string {
	switch mode {
	case "enable":
		return ",verity=on"
	case "require":
		return ",verity=require"
	}
	return ""
}

// composefsPlan mounts the EROFS image file and the composefs overlay at /sysroot with the object store
// as a data-only lower layer, gives /etc an overlay whose upper layer is the
// deployment's state/deploy/<hex>/etc (the EROFS /etc as lower, so the
// overlays are not stacked), and binds the shared state/os/default/var on
// /var.
func composefsPlan(image, hex, verity string, loop bool) []step {
	objects := path.Join(partMount, bootlayout.ObjectsDir)
	deploy := path.Join(partMount, bootlayout.Composefs.Deployment(hex))
	v := overlayVerity(verity)
	return []step{
		mkdir(erofsMount),
		{what: "mounting the composefs image", op: opMountImage, source: image, target: erofsMount, fstype: "erofs", loop: loop},
		mkdir(newRoot),
		{what: "mounting the composefs root", op: opMount, source: "composefs", target: newRoot, fstype: "overlay", flags: unix.MS_RDONLY,
			data: "lowerdir=" + erofsMount + "::" + objects + ",metacopy=on,redirect_dir=on" + v},
		mkdir(path.Join(deploy, "etc")),
		mkdir(path.Join(deploy, "etc.work")),
		{what: "mounting the writable /etc overlay", op: opMount, source: "overlay", target: path.Join(newRoot, "etc"), fstype: "overlay",
			data: "lowerdir=" + path.Join(erofsMount, "etc") + "::" + objects + ",upperdir=" + path.Join(deploy, "etc") +
				",workdir=" + path.Join(deploy, "etc.work") + ",metacopy=on,redirect_dir=on" + v},
		mkdir(path.Join(partMount, bootlayout.VarDir)),
		{what: "binding /var", op: opMount, source: path.Join(partMount, bootlayout.VarDir), target: path.Join(newRoot, "var"), flags: unix.MS_BIND},
	}
}

// plainPlan mounts the plain deployment tree (composefs disabled): the
// tree read-only at /sysroot, its /etc writable on top, and the shared
// var on /var.
func plainPlan() []step {
	tree := path.Join(partMount, bootlayout.Plain.Root())
	return []step{
		mkdir(newRoot),
		{what: "binding the plain root", op: opMount, source: tree, target: newRoot, flags: unix.MS_BIND},
		{what: "making the plain root read-only", op: opMount, target: newRoot, flags: unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY},
		{what: "binding the writable /etc", op: opMount, source: path.Join(tree, "etc"), target: path.Join(newRoot, "etc"), flags: unix.MS_BIND},
		mkdir(path.Join(partMount, bootlayout.VarDir)),
		{what: "binding /var", op: opMount, source: path.Join(partMount, bootlayout.VarDir), target: path.Join(newRoot, "var"), flags: unix.MS_BIND},
	}
}
