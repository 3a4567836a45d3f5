package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Paths of the contract between the builtin initramfs and the agent: the
// initramfs records what it mounted under /run/cfs before switching root.
const (
	recordedDigestPath = "/run/cfs/composefs-digest" // the digest it verified and mounted (hex)
	recordedImagePath  = "/run/cfs/image-path"       // path of the EROFS image as seen from the booted system
)

// erofsMagic is EROFS_SUPER_MAGIC_V1 at byte offset 1024 of an image.
const erofsMagic = 0xE0F5E1E2

// env is what a check sees of the system. root is "" in the guest and a
// fake tree in unit tests; every path a check reads goes through path().
type env struct {
	root     string
	cmdline  cmdline
	mounts   []mount
	mountErr error
	// systemd: the agent was delivered at boot into a system whose PID 1
	// is systemd (-systemd), not run as PID 1 itself.
	systemd bool
	// extraDirs are the root-level directories the manifest declares
	// (rootfs.extra_dirs; -extra-dirs).
	extraDirs []string
	// tampered are files whose composefs object the harness changed,
	// removed or replaced by a copy without fs-verity on the disk
	// (-tampered, -removed, -unverified): object-tamper expects the
	// documented refusal reading each (see tamperKinds).
	tampered []tamper
	// ostree: the disk is an ostree sysroot (-ostree): /sysroot holds
	// ostree/repo and the ostree checks apply.
	ostree bool
	// imageInitramfs: the disk boots the image's own initramfs
	// (-image-initramfs).
	imageInitramfs bool
	// ostreeStatus caches `ostree admin status` (ostreeBooted).
	ostreeStatus *ostreeStatus
}

func (e *env) path(p string) string { return filepath.Join(e.root, p) }

// loadEnv reads /proc/cmdline and /proc/self/mountinfo under root.
func loadEnv(root string) *env {
	e := &env{root: root}
	if b, err := os.ReadFile(e.path("/proc/cmdline")); err == nil {
		e.cmdline = parseCmdline(string(b))
	}
	f, err := os.Open(e.path("/proc/self/mountinfo"))
	if err != nil {
		e.mountErr = err
		return e
	}
	defer f.Close()
	e.mounts, e.mountErr = parseMountinfo(f)
	return e
}

// composefsDigest returns the composefs= digest from the command line.
func (e *env) composefsDigest() (string, bool) {
	d, ok := e.cmdline.get("composefs")
	return strings.ToLower(strings.TrimSpace(d)), ok && d != ""
}

// readRecorded reads a file of the initramfs contract, trimmed.
func (e *env) readRecorded(p string) (string, error) {
	b, err := os.ReadFile(e.path(p))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// rootEvidence describes how / is mounted: whether it is an overlay and
// what shows that its lower layer is an EROFS image.
type rootEvidence struct {
	root      mount
	found     bool
	overlay   bool
	lowers    []string
	dataLower []string
	erofs     string // evidence that a lower layer is EROFS; "" if none
	erofsMnt  *mount // the EROFS mount used as a lower layer, when visible
}

func (e *env) rootEvidence() (rootEvidence, error) {
	if e.mountErr != nil {
		return rootEvidence{}, fmt.Errorf("reading mountinfo: %w", e.mountErr)
	}
	var ev rootEvidence
	ev.root, ev.found = mountAt(e.mounts, "/")
	if !ev.found {
		return ev, fmt.Errorf("no mount at / in mountinfo")
	}
	if ev.root.FSType != "overlay" {
		return ev, nil
	}
	ev.overlay = true
	ev.lowers, ev.dataLower = overlayLowers(ev.root.SuperOptions)
	for _, l := range ev.lowers {
		if m, ok := mountAt(e.mounts, l); ok && m.FSType == "erofs" {
			ev.erofs = fmt.Sprintf("lower %s is an erofs mount of %s", l, m.Source)
			ev.erofsMnt = &m
			return ev, nil
		}
	}
	// The initramfs may have detached the EROFS mount after mounting the
	// overlay (as mount.composefs does); then the recorded image shows it.
	if img, err := e.readRecorded(recordedImagePath); err == nil && img != "" {
		if ok, err := isEROFS(e.path(img)); err == nil && ok {
			ev.erofs = fmt.Sprintf("recorded image %s is EROFS", img)
		}
	}
	return ev, nil
}

// mountedImage returns the file behind the EROFS lower layer of /, as
// seen from the running system: the backing file of its loop device, or
// the source of a file-backed mount. It returns "" when that cannot be
// told (a block device, or a file no longer reachable).
func (e *env) mountedImage(ev rootEvidence) string {
	if ev.erofsMnt == nil {
		return ""
	}
	src := ev.erofsMnt.Source
	if dev, ok := strings.CutPrefix(src, "/dev/"); ok && strings.HasPrefix(dev, "loop") {
		b, err := os.ReadFile(e.path("/sys/block/" + dev + "/loop/backing_file"))
		if err != nil {
			return ""
		}
		src = strings.TrimSpace(string(b))
	}
	if strings.HasSuffix(src, " (deleted)") || !strings.HasPrefix(src, "/") {
		return ""
	}
	if st, err := os.Stat(e.path(src)); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	return src
}

// isEROFS reports whether the file at p starts with an EROFS superblock.
func isEROFS(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], 1024); err != nil {
		return false, fmt.Errorf("reading superblock of %s: %w", p, err)
	}
	return binary.LittleEndian.Uint32(b[:]) == erofsMagic, nil
}

// probeWrite creates, writes, syncs and removes a file in dir.
func probeWrite(dir string) error {
	p := filepath.Join(dir, ".cfs-agent-probe")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(bytes.Repeat([]byte("cfs"), 100))
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(p)
	for _, err := range []error{werr, serr, cerr, rerr} {
		if err != nil {
			return err
		}
	}
	return nil
}
