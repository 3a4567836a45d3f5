// Command agent is the in-guest test agent of the cfs-compose testbed. The
// busybox fixture image installs it as /usr/sbin/init, so it runs as PID 1
// once the builtin initramfs has switched root; the testbed's direct-kernel
// boot tests also run it as /init of a small initramfs. Into a real
// operating system (systemd as PID 1) the boot test delivers it at boot
// instead, on a read-only extra disk started by a systemd unit passed as a
// credential (testbed.AgentDelivery), and runs it with -systemd -console
// -poweroff: the image under test carries no agent.
//
// It mounts /proc, /sys, /dev and /run when they are not mounted yet, runs
// its table of checks (see checks.go), reports facts and one result per
// check on the console in the line protocol of package
// testbed/protocol, and powers the machine off. Checks depend on the boot
// mode: with composefs=<digest> on the kernel command line it expects a
// composefs root, without it a plain root (the composefs checks invert).
//
// Kernel command line parameters read by the agent:
//
//	composefs=<hex digest>    composefs mode; the digest the image must have
//	cfs.agent.checks=a,b,…    run only these checks
//	cfs.agent.poweroff=0      do not power off at the end (debugging)
//
// Run by hand (not as PID 1) it prints the report on stdout and does not
// power off; -root DIR evaluates the checks against a fake tree.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

func main() {
	pid1 := os.Getpid() == 1
	root := ""
	powerOff := pid1
	toConsole := pid1
	systemd := false
	extraDirs := ""
	tampered := map[tamperKind]*string{tamperChanged: new(string), tamperRemoved: new(string), tamperUnverified: new(string)}
	ostree, imageInitramfs := false, false
	if !pid1 {
		fs := flag.NewFlagSet("agent", flag.ContinueOnError)
		fs.StringVar(&root, "root", "", "evaluate checks against this tree instead of /")
		fs.BoolVar(&powerOff, "poweroff", false, "power the machine off when done")
		fs.BoolVar(&toConsole, "console", false, "write the report to /dev/console instead of stdout")
		fs.BoolVar(&systemd, "systemd", false, "delivered at boot into a systemd system: run its checks too")
		fs.StringVar(&extraDirs, "extra-dirs", "", "comma-separated root-level directories that must exist (rootfs.extra_dirs)")
		fs.StringVar(tampered[tamperChanged], "tampered", "", "comma-separated files whose object the harness changed on disk: reading them must fail with EIO (object-tamper)")
		fs.StringVar(tampered[tamperRemoved], "removed", "", "comma-separated files whose object the harness removed from the disk: opening them must fail with ENOENT (object-tamper)")
		fs.StringVar(tampered[tamperUnverified], "unverified", "", "comma-separated files whose object the harness replaced by a copy without fs-verity: with overlayfs verity=on or require opening them must fail with EIO (object-tamper)")
		fs.BoolVar(&ostree, "ostree", false, "the disk is an ostree sysroot: run the ostree checks")
		fs.BoolVar(&imageInitramfs, "image-initramfs", false, "the disk boots the image's own initramfs: check that it ran")
		if err := fs.Parse(os.Args[1:]); err != nil {
			os.Exit(2)
		}
	}

	var setup []string
	if root == "" {
		setup = prepare()
	}
	out := console(root == "" && toConsole)
	e := loadEnv(root)
	e.systemd = systemd
	e.ostree, e.imageInitramfs = ostree, imageInitramfs
	for _, d := range strings.Split(extraDirs, ",") {
		if d = strings.TrimSpace(d); d != "" {
			e.extraDirs = append(e.extraDirs, d)
		}
	}
	for _, k := range []tamperKind{tamperChanged, tamperRemoved, tamperUnverified} {
		for _, p := range strings.Split(*tampered[k], ",") {
			if p = strings.TrimSpace(p); p != "" {
				e.tampered = append(e.tampered, tamper{path: p, kind: k})
			}
		}
	}
	if v, ok := e.cmdline.get("cfs.agent.poweroff"); ok && v == "0" {
		powerOff = false
	}
	err := report(out, e, setup)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cfs-agent: %v\n", err)
	}
	if powerOff {
		unix.Sync()
		// Give the serial console a moment to drain before the VM stops.
		time.Sleep(100 * time.Millisecond)
		if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
			fmt.Fprintf(os.Stderr, "cfs-agent: power off: %v\n", err)
		}
		// PID 1 must not exit; wait for the power to go.
		select {}
	}
	if err != nil {
		os.Exit(1)
	}
}

// report writes the whole protocol exchange for one boot.
func report(out io.Writer, e *env, setup []string) error {
	w := protocol.NewWriter(out)
	w.Begin()
	for _, f := range facts(e, setup) {
		w.Fact(f[0], f[1])
	}
	var only map[string]bool
	if v, ok := e.cmdline.get("cfs.agent.checks"); ok && v != "" {
		only = map[string]bool{}
		for _, n := range strings.Split(v, ",") {
			only[strings.TrimSpace(n)] = true
		}
	}
	if err := runChecks(e, w, only); err != nil {
		return err
	}
	return w.End()
}

// facts returns the key/value facts reported before the checks.
func facts(e *env, setup []string) [][2]string {
	var fs [][2]string
	add := func(k, v string) { fs = append(fs, [2]string{k, v}) }
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		add("arch", unix.ByteSliceToString(u.Machine[:]))
		add("kernel", unix.ByteSliceToString(u.Release[:]))
	}
	add("pid", fmt.Sprint(os.Getpid()))
	if b, err := os.ReadFile(e.path("/proc/uptime")); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			add("uptime", f[0])
		}
	}
	add("mode", detectMode(e).String())
	if d, ok := e.composefsDigest(); ok {
		add("composefs", d)
	} else {
		add("composefs", "none")
	}
	if m, ok := mountAt(e.mounts, "/"); ok {
		add("root-fstype", m.FSType)
		add("root-source", m.Source)
		add("root-options", m.SuperOptions)
	}
	state, setupMode, err := secureBootState(e)
	if err != nil {
		state = "error: " + err.Error()
	}
	add("secureboot", state)
	if setupMode != "" {
		add("setupmode", setupMode)
	}
	if b, err := os.ReadFile(e.path("/sys/kernel/security/lockdown")); err == nil {
		add("lockdown", lockdownMode(string(b)))
	}
	add("cmdline", e.cmdline.raw)
	if len(setup) > 0 {
		add("agent-setup", strings.Join(setup, "; "))
	}
	if e.systemd {
		add("agent-delivery", "systemd")
		if e.ostree && e.root == "" {
			if d, err := e.ostreeBooted(); err == nil {
				add("ostree-booted", d)
			}
		}
		if e.root == "" {
			fs = append(fs, persistFacts(e)...)
		}
	} else {
		add("agent-delivery", "pid1")
	}
	return fs
}

// lockdownMode returns the selected mode from /sys/kernel/security/lockdown
// ("none [integrity] confidentiality" → "integrity").
func lockdownMode(s string) string {
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "[") && strings.HasSuffix(f, "]") {
			return strings.Trim(f, "[]")
		}
	}
	return strings.TrimSpace(s)
}

// console returns where the report goes: /dev/console when running as the
// guest's init, stdout otherwise.
func console(guest bool) io.Writer {
	if guest {
		if f, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
			return f
		}
	}
	return os.Stdout
}

// prepare mounts the API filesystems the checks need when the initramfs
// did not hand them over, and returns notes on what it did or could not do.
func prepare() []string {
	var notes []string
	note := func(format string, a ...any) { notes = append(notes, fmt.Sprintf(format, a...)) }
	type apiFS struct {
		fstype, target, probe string
		flags                 uintptr
		data                  string
	}
	for _, m := range []apiFS{
		{"proc", "/proc", "/proc/self", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "/sys/kernel", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "/dev/null", unix.MS_NOSUID, "mode=0755"},
	} {
		if _, err := os.Stat(m.probe); err == nil {
			continue
		}
		os.MkdirAll(m.target, 0o755)
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil {
			note("mount %s on %s: %v", m.fstype, m.target, err)
		} else {
			note("mounted %s", m.target)
		}
	}
	ms := loadEnv("").mounts
	if _, ok := mountAt(ms, "/run"); !ok {
		if _, err := os.Stat(recordedDigestPath); errors.Is(err, os.ErrNotExist) {
			if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
				note("mount tmpfs on /run: %v", err)
			} else {
				note("mounted /run")
			}
		}
	}
	if _, err := os.Stat("/sys/firmware/efi"); err == nil {
		if _, ok := mountAt(ms, "/sys/firmware/efi/efivars"); !ok {
			err := unix.Mount("efivarfs", "/sys/firmware/efi/efivars", "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
			if errors.Is(err, unix.ENODEV) {
				if lerr := loadModule("efivarfs"); lerr != nil {
					note("loading efivarfs: %v", lerr)
				}
				err = unix.Mount("efivarfs", "/sys/firmware/efi/efivars", "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
			}
			if err != nil {
				note("mount efivarfs: %v", err)
			} else {
				note("mounted efivarfs")
			}
		}
	}
	if _, ok := mountAt(ms, "/sys/kernel/security"); !ok {
		if err := unix.Mount("securityfs", "/sys/kernel/security", "securityfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err == nil {
			note("mounted securityfs")
		}
	}
	return notes
}
