package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Checks of a real operating system (systemd as PID 1), for the agent
// delivered at boot (-systemd). In a busybox image the agent is PID 1 and
// these checks report SKIP.

// systemdWait bounds `systemctl is-system-running --wait`.
const systemdWait = 4 * time.Minute

// persistName is the file persist-reboot writes to /etc and /var on the
// first boot and finds again on the second.
const persistName = "cfs-agent-persist"

// maxRootBytes is the most a composefs root's statfs may report: the EROFS
// image holds only metadata, a few MiB even for a full OS.
const maxRootBytes = 256 << 20

func checkSystemdRunning(e *env, _ mode) outcome {
	if !e.systemd {
		return skip("the agent is PID 1 (no systemd in this image)")
	}
	comm, err := os.ReadFile(e.path("/proc/1/comm"))
	if err != nil {
		return fail("reading /proc/1/comm: %v", err)
	}
	if c := strings.TrimSpace(string(comm)); c != "systemd" {
		return fail("PID 1 is %q, not systemd", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), systemdWait)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "systemctl", "is-system-running", "--wait").Output()
	state := strings.TrimSpace(string(out))
	if state == "running" {
		return pass("PID 1 is systemd; systemctl is-system-running: running")
	}
	failed, _ := exec.Command("systemctl", "list-units", "--failed", "--no-legend", "--plain", "--full").Output()
	var units []string
	for _, l := range strings.Split(strings.TrimSpace(string(failed)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			units = append(units, f[0])
		}
	}
	if state == "" && ctx.Err() != nil {
		state = "no answer within " + systemdWait.String()
	}
	return fail("systemctl is-system-running: %s; failed units: %s", state, orNone(units))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, " ")
}

// checkRootFull: statfs of a composefs root reports the EROFS image, which
// is all used and small.
func checkRootFull(e *env, _ mode) outcome {
	var st unix.Statfs_t
	if err := unix.Statfs(e.path("/"), &st); err != nil {
		return fail("statfs /: %v", err)
	}
	size := uint64(st.Blocks) * uint64(st.Bsize)
	switch {
	case st.Bfree != 0 || st.Bavail != 0:
		return fail("statfs /: %d of %d blocks free (%d available), want 100%% used", st.Bfree, st.Blocks, st.Bavail)
	case size > maxRootBytes:
		return fail("statfs /: %d bytes, want at most %d (the EROFS image)", size, maxRootBytes)
	}
	return pass("statfs /: %d blocks of %d bytes (%d KiB), 100%% used", st.Blocks, st.Bsize, size>>10)
}

// checkRootImmutable: no directory can be created at /, and writes under
// /usr fail.
func checkRootImmutable(e *env, m mode) outcome {
	p := e.path("/cfs-agent-probe")
	err := os.Mkdir(p, 0o755)
	if err == nil {
		os.Remove(p)
		if m == modePlain {
			return skip("mkdir at / succeeded on this plain (composefs disabled) root")
		}
		return fail("mkdir /cfs-agent-probe succeeded")
	}
	if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EPERM) {
		return fail("mkdir at /: %v, want EROFS or EPERM", err)
	}
	uerr := probeWrite(e.path("/usr"))
	if uerr == nil {
		return fail("mkdir at / failed (%v) but writing under /usr succeeded", err)
	}
	var missing []string
	for _, d := range e.extraDirs {
		if fi, err := os.Stat(e.path(d)); err != nil || !fi.IsDir() {
			missing = append(missing, d)
		}
	}
	if len(missing) > 0 {
		return fail("rootfs.extra_dirs missing: %s", strings.Join(missing, " "))
	}
	return pass("mkdir at /: %v; write under /usr: %v; rootfs.extra_dirs present: %s", err, uerr, orNone(e.extraDirs))
}

// checkSysroot: the physical root partition is mounted read-only at
// /sysroot, as on Fedora.
func checkSysroot(e *env, _ mode) outcome {
	if e.mountErr != nil {
		return fail("reading mountinfo: %v", e.mountErr)
	}
	m, ok := mountAt(e.mounts, "/sysroot")
	if !ok {
		return fail("nothing is mounted at /sysroot")
	}
	if !hasOption(m.Options, "ro") {
		return fail("/sysroot (%s %s) is mounted %s, want ro", m.FSType, m.Source, m.Options)
	}
	marker := "/sysroot/state"
	if e.ostree {
		marker = "/sysroot/ostree/repo/config"
	}
	if _, err := os.Stat(e.path(marker)); err != nil {
		return fail("/sysroot (%s %s) is not the root partition: %v", m.FSType, m.Source, err)
	}
	if err := probeWrite(e.path("/sysroot")); !errors.Is(err, syscall.EROFS) {
		return fail("writing to /sysroot: %v, want EROFS", err)
	}
	return pass("/sysroot is %s from %s, mounted %s", m.FSType, m.Source, m.Options)
}

func hasOption(opts, o string) bool {
	for _, x := range strings.Split(opts, ",") {
		if x == o {
			return true
		}
	}
	return false
}

// tamperKind is what the harness did to a file's composefs object on the
// disk between two boots.
type tamperKind string

// The kinds of tampering and what reading the file then gives.
const (
	tamperChanged    tamperKind = "changed"    // one byte changed after fs-verity was enabled
	tamperRemoved    tamperKind = "removed"    // the object file deleted
	tamperUnverified tamperKind = "unverified" // replaced by an identical copy without fs-verity
)

// tamperKinds is the documented refusal (docs/testbed.md) of each kind:
// the errno reading the file fails with. The file itself stays visible
// (stat works: its metadata is in the EROFS image); only its data is
// refused, by the kernel, when the file is opened or read:
//   - changed: fs-verity fails the read of the changed block with EIO
//     ("FILE CORRUPTED!" in the kernel log);
//   - removed: overlayfs' lazy lookup of the data-only layer fails the
//     open with ENOENT ("overlayfs: lazy lowerdata lookup failed");
//   - unverified: overlayfs' verity check (verity=on or require: the
//     metacopy names a digest) fails the open with EIO
//     ("overlayfs: lower file '…' has no fs-verity digest").
var tamperKinds = map[tamperKind]syscall.Errno{
	tamperChanged:    syscall.EIO,
	tamperRemoved:    syscall.ENOENT,
	tamperUnverified: syscall.EIO,
}

// tamper is one file whose object the harness tampered with.
type tamper struct {
	path string
	kind tamperKind
}

// checkObjectTamper: every file the harness named (-tampered, -removed,
// -unverified) is still in the tree, and reading it fails with its kind's
// refusal; the detail names each file, the error and the kernel's
// messages logged meanwhile (overlayfs and fs-verity name the file or
// its object).
func checkObjectTamper(e *env, _ mode) outcome {
	if len(e.tampered) == 0 {
		return skip("no tampered object named (-tampered, -removed, -unverified)")
	}
	klog, kerr := openKernelLog(e.path("/dev/kmsg"))
	if kerr == nil {
		defer klog.close()
	}
	var details []string
	for _, tp := range e.tampered {
		want := tamperKinds[tp.kind]
		if _, err := os.Stat(e.path(tp.path)); err != nil {
			return fail("stat %s (object %s): %v: the file must stay in the tree, only its data refused", tp.path, tp.kind, err)
		}
		_, err := os.ReadFile(e.path(tp.path))
		switch {
		case err == nil:
			return fail("reading %s (object %s) succeeded, want %v", tp.path, tp.kind, want)
		case !errors.Is(err, want):
			return fail("reading %s (object %s): %v, want %v", tp.path, tp.kind, err, want)
		}
		d := fmt.Sprintf("reading %s (object %s): %v", tp.path, tp.kind, err)
		if kerr != nil {
			d += "; kernel log unreadable: " + kerr.Error()
		} else if msgs := klog.since(); len(msgs) > 0 {
			d += "; kernel: " + strings.Join(msgs, " | ")
		}
		details = append(details, d)
	}
	return pass("%s", strings.Join(details, "; "))
}

// kernelLog reads the kernel's log (/dev/kmsg) from where it was opened.
type kernelLog struct{ fd int }

// openKernelLog opens /dev/kmsg (non-blocking) at its end.
func openKernelLog(path string) (*kernelLog, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("seeking to the end of %s: %w", path, err)
	}
	return &kernelLog{fd: fd}, nil
}

// since returns the overlayfs and fs-verity messages logged since the
// last call (or the open), at most 4.
func (k *kernelLog) since() []string {
	var msgs []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(k.fd, buf)
		if errors.Is(err, unix.EPIPE) {
			continue // records overwritten meanwhile: read on
		}
		if err != nil || n <= 0 {
			return msgs
		}
		if m, ok := kmsgText(string(buf[:n])); ok && len(msgs) < 4 {
			msgs = append(msgs, m)
		}
	}
}

// kmsgText returns the message of a /dev/kmsg record
// ("prio,seq,usec,flags;text\n …") when it is from overlayfs or
// fs-verity.
func kmsgText(rec string) (string, bool) {
	_, text, ok := strings.Cut(rec, ";")
	if !ok {
		return "", false
	}
	text, _, _ = strings.Cut(text, "\n")
	if !strings.Contains(text, "overlayfs") && !strings.Contains(text, "fs-verity") {
		return "", false
	}
	return text, true
}

func (k *kernelLog) close() { unix.Close(k.fd) }

// persistFacts reports the machine id and the tokens persist-reboot
// compares across two boots of the same disk: a token file in /etc and in
// /var/lib is written when missing (fact "new:<token>") and reported as
// found otherwise.
func persistFacts(e *env) [][2]string {
	var fs [][2]string
	mid, err := os.ReadFile(e.path("/etc/machine-id"))
	if err == nil {
		fs = append(fs, [2]string{"machine-id", strings.TrimSpace(string(mid))})
	}
	for _, d := range []string{"/etc", "/var/lib"} {
		p := e.path(d + "/" + persistName)
		b, err := os.ReadFile(p)
		key := "persist" + strings.ReplaceAll(d, "/", "-")
		switch {
		case err == nil:
			fs = append(fs, [2]string{key, strings.TrimSpace(string(b))})
		case errors.Is(err, os.ErrNotExist):
			tok := fmt.Sprintf("written-at-%d", time.Now().UnixNano())
			if werr := os.WriteFile(p, []byte(tok+"\n"), 0o644); werr != nil {
				fs = append(fs, [2]string{key, "error: " + werr.Error()})
			} else {
				fs = append(fs, [2]string{key, "new:" + tok})
			}
		default:
			fs = append(fs, [2]string{key, "error: " + err.Error()})
		}
	}
	unix.Sync()
	return fs
}
