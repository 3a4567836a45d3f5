package uki

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/initramfs"
	"github.com/cfs-compose/cfs-compose/internal/testdeb"
	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/vmtest"
)

// TestBootUKI boots UKIs built by Build under UEFI firmware with QEMU
// (TCG) and `-kernel uki.efi`: x86_64 on trixie OVMF, aarch64 on AAVMF.
// The systemd stub must find .linux, .initrd and .cmdline; the busybox
// /init reports the command line and kernel release it got.
func TestBootUKI(t *testing.T) {
	for _, tc := range []struct {
		arch, guest, cpu string
	}{
		{"amd64", "x86_64", ""},
		{"arm64", "aarch64", "cortex-a57"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			vmtest.Require(t, "qemu-system-"+tc.guest)
			busybox := busyboxFor(t, tc.arch)
			in := fetchInputs(t, tc.arch)
			dir := t.TempDir()
			code, varsTemplate := firmware(t, tc.arch)

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
			cmd := testbed.DefaultConsole(tc.guest) + " panic=-1 quiet composefs=" + testDigest
			path := buildFile(t, dir, in, rd.Bytes(), cmd)

			res := vmtest.Boot(t, testbed.Machine{Arch: tc.guest, CPU: tc.cpu, MemoryMiB: 512,
				Firmware: &testbed.Firmware{Code: code, VarsTemplate: varsTemplate},
				Kernel:   path, Timeout: 4 * time.Minute})
			l, ok := res.Find("UKI-BOOT-OK")
			if !ok {
				vmtest.Fail(t, res, "the UKI did not boot to /init")
				return
			}
			if !strings.Contains(l.Text, "cmdline=["+cmd) || !strings.Contains(l.Text, "release="+in.uname) {
				vmtest.Fail(t, res, "unexpected /init report: %s", l.Text)
			}
			if res.Outcome != testbed.OutcomePoweredOff {
				vmtest.Fail(t, res, "the guest did not power off")
			}
			t.Logf("%s UKI under UEFI: /init at %.2fs, powered off at %.2fs (TCG)", tc.arch, l.At.Seconds(), res.Duration.Seconds())
		})
	}
}

// firmware returns the UEFI code and variable-template files: trixie OVMF
// for x86_64 (reaches the boot manager sooner than bookworm's), the host's
// AAVMF (qemu-efi-aarch64) for aarch64.
func firmware(t *testing.T, arch string) (code, vars string) {
	t.Helper()
	if arch == "amd64" {
		d := filepath.Join(testdeb.Package(t, "ovmf", "all"), "usr/share/OVMF")
		return filepath.Join(d, "OVMF_CODE_4M.fd"), filepath.Join(d, "OVMF_VARS_4M.fd")
	}
	code, vars = "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"
	if _, err := os.Stat(code); err != nil {
		t.Skipf("SKIP: AAVMF is not installed (Makefile DEB_PACKAGES has qemu-efi-aarch64): %v", err)
	}
	return code, vars
}

// busyboxFor returns a static busybox for arch: the host's (busybox-static)
// for the host architecture, trixie's busybox-static otherwise.
func busyboxFor(t *testing.T, arch string) []byte {
	t.Helper()
	p := "/bin/busybox"
	if arch != runtime.GOARCH {
		dir := testdeb.Package(t, "busybox-static", arch)
		if p = filepath.Join(dir, "usr/bin/busybox"); !exists(p) {
			p = filepath.Join(dir, "bin/busybox")
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("SKIP: no static busybox for %s (busybox-static): %v", arch, err)
	}
	return b
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
