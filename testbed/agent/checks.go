package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

// mode is the boot flavour the agent detected: composefs when the kernel
// command line carries composefs=<digest>, plain otherwise.
type mode int

const (
	modeComposefs mode = 1 << iota
	modePlain
	modeAny = modeComposefs | modePlain
)

func (m mode) String() string {
	if m == modeComposefs {
		return "composefs"
	}
	return "plain"
}

// outcome is what one check reports.
type outcome struct {
	status protocol.Status
	detail string
}

func pass(format string, a ...any) outcome { return outcome{protocol.Pass, fmt.Sprintf(format, a...)} }
func fail(format string, a ...any) outcome { return outcome{protocol.Fail, fmt.Sprintf(format, a...)} }
func skip(format string, a ...any) outcome { return outcome{protocol.Skip, fmt.Sprintf(format, a...)} }

// check is one row of the check table. A check whose modes do not include
// the detected mode is reported as SKIP with a reason, so the host sees
// every check name in every boot.
type check struct {
	name  string
	desc  string
	modes mode
	run   func(e *env, m mode) outcome
}

// checks is the table of guest checks, in report order. Add a row to add
// a check; names must be unique and valid protocol names.
var checks = []check{
	// First: the checks after it see a system whose start-up has finished.
	{"systemd-running", "PID 1 is systemd and systemctl is-system-running --wait says running", modeAny, checkSystemdRunning},
	{"composefs-root", "/ is an overlay whose lower layer is an EROFS image", modeComposefs, checkComposefsRoot},
	{"plain-root", "/ is not a composefs (overlay over EROFS) mount", modePlain, checkPlainRoot},
	{"usr-readonly", "writing under /usr fails with EROFS", modeAny, checkUsrReadonly},
	{"etc-writable", "a file can be created, written and removed in /etc", modeAny, writableCheck("/etc")},
	{"var-writable", "a file can be created, written and removed in /var", modeAny, writableCheck("/var")},
	{"composefs-digest", "the mounted image's fs-verity digest equals composefs= on the command line", modeComposefs, checkComposefsDigest},
	{"root-full", "statfs of / reports the EROFS image: 100 % used and small", modeComposefs, checkRootFull},
	{"root-immutable", "mkdir at / fails with EROFS or EPERM, writes under /usr fail, rootfs.extra_dirs exist", modeAny, checkRootImmutable},
	{"sysroot", "the physical root partition is mounted read-only at /sysroot", modeAny, checkSysroot},
	{"ostree-booted", "the image's own `ostree admin status` shows a booted deployment (the host compares it with the compose's)", modeAny, checkOstreeBooted},
	{"image-initramfs", "the initramfs that ran is the image's own dracut one, not the builtin cfs-init", modeAny, checkImageInitramfs},
	{"object-tamper", "reading a file whose composefs object was changed (EIO, fs-verity), removed (ENOENT, overlayfs) or replaced by a copy without fs-verity (EIO, overlayfs verity=on/require) on the disk is refused", modeComposefs, checkObjectTamper},
	{"secureboot", "the SecureBoot EFI variable can be read (state in the detail and the secureboot fact)", modeAny, checkSecureBoot},
}

// detectMode returns the boot mode from the command line.
func detectMode(e *env) mode {
	if _, ok := e.composefsDigest(); ok {
		return modeComposefs
	}
	return modePlain
}

func checkComposefsRoot(e *env, _ mode) outcome {
	ev, err := e.rootEvidence()
	if err != nil {
		return fail("%v", err)
	}
	if !ev.overlay {
		return fail("/ is %s (%s), not an overlay", ev.root.FSType, ev.root.Source)
	}
	if ev.erofs == "" {
		return fail("/ is an overlay (lower %v) but no lower layer is an EROFS image", ev.lowers)
	}
	return pass("/ is an overlay (lower %v, data %v); %s", ev.lowers, ev.dataLower, ev.erofs)
}

func checkPlainRoot(e *env, _ mode) outcome {
	ev, err := e.rootEvidence()
	if err != nil {
		return fail("%v", err)
	}
	if ev.overlay && ev.erofs != "" {
		return fail("/ is a composefs mount although composefs= is absent: %s", ev.erofs)
	}
	if d, err := e.readRecorded(recordedDigestPath); err == nil {
		return fail("the initramfs recorded composefs digest %s although composefs= is absent", d)
	}
	return pass("/ is %s from %s", ev.root.FSType, ev.root.Source)
}

func checkUsrReadonly(e *env, m mode) outcome {
	err := probeWrite(e.path("/usr"))
	switch {
	case errors.Is(err, syscall.EROFS):
		return pass("write under /usr: %v", err)
	case err == nil && m == modePlain:
		return skip("/usr is writable on this plain (composefs disabled) root")
	case err == nil:
		return fail("writing under /usr succeeded")
	}
	return fail("write under /usr failed with %v, want EROFS", err)
}

func writableCheck(dir string) func(*env, mode) outcome {
	return func(e *env, _ mode) outcome {
		if err := probeWrite(e.path(dir)); err != nil {
			return fail("%v", err)
		}
		return pass("created, wrote, synced and removed a file in %s", dir)
	}
}

func checkComposefsDigest(e *env, _ mode) outcome {
	want, _ := e.composefsDigest()
	recorded, err := e.readRecorded(recordedDigestPath)
	if err != nil {
		return fail("the initramfs recorded no digest: %v", err)
	}
	if !strings.EqualFold(recorded, want) {
		return fail("initramfs recorded digest %s, command line says %s", recorded, want)
	}
	img, err := e.readRecorded(recordedImagePath)
	if err != nil {
		return fail("the initramfs recorded no image path: %v", err)
	}
	got, how, err := fileVerityDigest(e.path(img))
	if err != nil {
		return fail("measuring %s: %v", img, err)
	}
	if got != want {
		return fail("image %s has fs-verity digest %s (%s), command line says %s", img, got, how, want)
	}
	detail := fmt.Sprintf("image %s digest %s (%s) matches composefs= and the initramfs record", img, got, how)
	// Also measure the file actually mounted, when it can be found and is
	// not the recorded one.
	if ev, err := e.rootEvidence(); err == nil {
		if mounted := e.mountedImage(ev); mounted != "" && mounted != img {
			md, mhow, err := fileVerityDigest(e.path(mounted))
			if err != nil {
				return fail("measuring the mounted image %s: %v", mounted, err)
			}
			if md != want {
				return fail("the mounted image %s has digest %s (%s), command line says %s", mounted, md, mhow, want)
			}
			detail += fmt.Sprintf("; mounted image %s matches too", mounted)
		} else if mounted == img {
			detail += "; it is the mounted image"
		}
	}
	return pass("%s", detail)
}

// secureBootState reads SecureBoot and SetupMode from efivarfs. state is
// "enabled", "disabled" or "unsupported" (not booted through UEFI).
// setupMode is "0", "1", or "" when the firmware defines no SetupMode
// variable: firmware built without Secure Boot support defines neither
// variable (Debian's OVMF_CODE_4M.fd since edk2 2023.11-7, so trixie's;
// bookworm's still had it), and Secure Boot is then disabled.
func secureBootState(e *env) (state string, setupMode string, err error) {
	if _, err := os.Stat(e.path("/sys/firmware/efi")); err != nil {
		return "unsupported", "", nil
	}
	read := func(name string) (bool, error) {
		p := e.path("/sys/firmware/efi/efivars/" + name + "-" + efiGlobalVariable)
		b, err := os.ReadFile(p)
		if err != nil {
			return false, err
		}
		v, err := parseEFIVariable(b)
		if err != nil {
			return false, fmt.Errorf("%s: %w", p, err)
		}
		return v.boolValue()
	}
	sb, err := read("SecureBoot")
	if errors.Is(err, os.ErrNotExist) {
		// Firmware without Secure Boot support does not define the
		// variable; but an empty directory means efivarfs is not mounted.
		ents, derr := os.ReadDir(e.path("/sys/firmware/efi/efivars"))
		if derr != nil || len(ents) == 0 {
			return "", "", fmt.Errorf("no EFI variables visible (efivarfs not mounted?): %v", errors.Join(err, derr))
		}
		sb, err = false, nil
	}
	if err != nil {
		return "", "", err
	}
	state = "disabled"
	if sb {
		state = "enabled"
	}
	sm, err := read("SetupMode")
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return "", "", fmt.Errorf("SetupMode: %w", err)
	case sm:
		setupMode = "1"
	default:
		setupMode = "0"
	}
	return state, setupMode, nil
}

func checkSecureBoot(e *env, _ mode) outcome {
	state, setup, err := secureBootState(e)
	if err != nil {
		return fail("reading the SecureBoot variable: %v", err)
	}
	if state == "unsupported" {
		return skip("not booted through UEFI (no /sys/firmware/efi)")
	}
	if setup == "" {
		// Printing "SetupMode=" with nothing after it hid this case.
		return pass("Secure Boot %s (the firmware has no SetupMode variable: built without Secure Boot support)", state)
	}
	return pass("Secure Boot %s (SetupMode=%s)", state, setup)
}

// runChecks runs the selected checks and writes one line per check. only,
// when non-empty, restricts the run to those names (cfs.agent.checks=).
func runChecks(e *env, w *protocol.Writer, only map[string]bool) error {
	m := detectMode(e)
	for _, c := range checks {
		if len(only) > 0 && !only[c.name] {
			continue
		}
		var o outcome
		if c.modes&m == 0 {
			o = skip("not applicable with %s boot", m)
		} else {
			o = safeRun(c, e, m)
		}
		if err := w.Check(c.name, o.status, o.detail); err != nil {
			return err
		}
	}
	return nil
}

// safeRun turns a panicking check into a FAIL instead of killing PID 1.
func safeRun(c check, e *env, m mode) (o outcome) {
	defer func() {
		if r := recover(); r != nil {
			o = fail("check panicked: %v", r)
		}
	}()
	return c.run(e, m)
}
