package uki

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/initramfs"
	"github.com/cfs-compose/cfs-compose/internal/testdeb"
	"github.com/cfs-compose/cfs-compose/internal/testvm"
)

// TestBootUKI boots a UKI built by Build on OVMF (x86_64, TCG) with
// `-kernel uki.efi`: the systemd stub must find .linux, .initrd and
// .cmdline, and the busybox /init reports the command line it got.
func TestBootUKI(t *testing.T) {
	testvm.Require(t, "qemu-system-x86_64")
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("SKIP: busybox-static is not installed (Makefile DEB_PACKAGES has it): %v", err)
	}
	in := fetchInputs(t, "amd64")
	ovmf := filepath.Join(testdeb.Package(t, "ovmf", "all"), "usr/share/OVMF")
	dir := t.TempDir()

	var rd bytes.Buffer
	w := initramfs.NewWriter(&rd, initramfs.Gzip)
	w.AddFile("bin/busybox", busybox, 0o755)
	w.AddFile("init", []byte(`#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "UKI-BOOT-OK cmdline=[$(/bin/busybox cat /proc/cmdline)] release=$(/bin/busybox uname -r)"
/bin/busybox poweroff -f
`), 0o755)
	w.AddDir("proc", 0o755)
	w.AddCharDev("dev/console", 0o600, 5, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := "console=ttyS0 panic=-1 quiet composefs=" + testDigest
	path := buildFile(t, dir, in, rd.Bytes(), cmd)

	vars := filepath.Join(dir, "vars.fd")
	data, err := os.ReadFile(filepath.Join(ovmf, "OVMF_VARS_4M.fd"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(vars, data, 0o644)
	res := testvm.Run(t, dir, 3*time.Minute, nil, "qemu-system-x86_64",
		"-accel", "tcg", "-machine", "q35", "-m", "512", "-smp", "1", "-nodefaults", "-display", "none",
		"-serial", "stdio", "-no-reboot",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+filepath.Join(ovmf, "OVMF_CODE_4M.fd"),
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-kernel", path)
	l, ok := res.Find("UKI-BOOT-OK")
	if !ok {
		res.Fail(t, "the UKI did not boot to /init")
		return
	}
	if !strings.Contains(l.Text, "cmdline=["+cmd) || !strings.Contains(l.Text, "release="+in.uname) {
		res.Fail(t, "unexpected /init report: %s", l.Text)
	}
	if res.TimedOut {
		res.Fail(t, "the guest did not power off")
	}
	t.Logf("UKI on OVMF: /init at %.2fs, powered off at %.2fs (TCG)", l.At.Seconds(), res.Elapsed.Seconds())
}
