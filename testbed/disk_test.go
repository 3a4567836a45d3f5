package testbed_test

// Disk boots: a GPT disk whose ESP holds a UKI (assembled here with
// objcopy from the fixture's systemd stub, kernel and test initramfs, the
// recipe of shared/testbed/FACTS.md; the real UKI stage is elsewhere) is
// booted by OVMF from EFI/BOOT/BOOTX64.EFI through the runner's throwaway
// qcow2 overlay. With Secure Boot keys enrolled, the UKI signed with the db
// key (sbsign) boots and an unsigned one is refused with Access Denied.

import (
	"bytes"
	"crypto/sha256"
	"debug/pe"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
)

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING DISK BOOT TEST: %s is not installed (make deps installs binutils, dosfstools, mtools, gdisk, sbsigntool)", tool)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// buildUKI appends .osrel, .cmdline, .linux and .initrd to the systemd
// stub with objcopy, at page-aligned addresses after the stub's image.
func buildUKI(t *testing.T, dir string, c *fixtures.Content, kernel, initrd, cmdline string) string {
	t.Helper()
	stub := filepath.Join(dir, c.StubName())
	if err := os.WriteFile(stub, c.Stub, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := pe.Open(stub)
	if err != nil {
		t.Fatal(err)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	f.Close()
	if !ok {
		t.Fatalf("stub is not PE32+")
	}
	align := func(v uint64) uint64 { return (v + 0xfff) &^ 0xfff }
	osrel := filepath.Join(dir, "os-release")
	cmd := filepath.Join(dir, "cmdline")
	os.WriteFile(osrel, []byte(fixtures.OSRelease(c.Kernel.Version)), 0o644)
	os.WriteFile(cmd, []byte(cmdline), 0o644)
	args := []string{}
	vma := align(uint64(oh.SizeOfImage))
	for _, s := range [][2]string{{".osrel", osrel}, {".cmdline", cmd}, {".linux", kernel}, {".initrd", initrd}} {
		st, err := os.Stat(s[1])
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--add-section", s[0]+"="+s[1], "--change-section-vma", fmt.Sprintf("%s=%#x", s[0], oh.ImageBase+vma))
		vma = align(vma + uint64(st.Size()))
	}
	uki := filepath.Join(dir, "uki.efi")
	run(t, "objcopy", append(args, stub, uki)...)
	return uki
}

// buildDisk writes a GPT disk with one 64 MiB ESP holding efi as
// EFI/BOOT/BOOTX64.EFI.
func buildDisk(t *testing.T, dir, efi string) string {
	t.Helper()
	esp := filepath.Join(dir, "esp.img")
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(esp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(esp, 64<<20)
	run(t, "mkfs.vfat", "-n", "ESP", esp)
	run(t, "mmd", "-i", esp, "::/EFI", "::/EFI/BOOT")
	run(t, "mcopy", "-i", esp, efi, "::/EFI/BOOT/BOOTX64.EFI")
	os.WriteFile(disk, nil, 0o644)
	os.Truncate(disk, 66<<20)
	run(t, "sgdisk", "-o", "-n", "1:2048:+64M", "-t", "1:ef00", "-c", "1:ESP", disk)
	b, err := os.ReadFile(esp)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 2048*512); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return disk
}

func fileSum(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestBootDiskUKI(t *testing.T) {
	e, ab := requireBootEnv(t, "x86_64")
	requireTools(t, "objcopy", "mkfs.vfat", "mmd", "mcopy", "sgdisk", "sbsign")
	dir := t.TempDir()
	cmdline := "console=ttyS0 panic=-1 quiet composefs=" + ab.digest
	uki := buildUKI(t, dir, ab.content, ab.kernel, ab.initrd, cmdline)
	disk := buildDisk(t, dir, uki)
	before := fileSum(t, disk)

	t.Run("uefi", func(t *testing.T) {
		fw, err := testbed.FindFirmware("x86_64", false, testbed.FirmwareDirs(e.tools.OVMFDir))
		if err != nil {
			t.Skipf("SKIPPING UEFI DISK BOOT: %v", err)
		}
		runTarget(t, testbed.Target{Name: "x86_64-disk-uki", ComposefsDigest: ab.digest,
			Features: []testbed.Feature{testbed.FeatureComposefs, testbed.FeatureUEFI},
			Machine:  testbed.Machine{Arch: "x86_64", Firmware: &fw, Disk: disk, Timeout: bootTimeout}},
			"agent-report", "uefi-boot", "composefs-root", "composefs-digest", "usr-readonly", "etc-writable", "var-writable")
		if fileSum(t, disk) != before {
			t.Error("the disk image changed: the boot did not go through the overlay")
		}
	})

	t.Run("secureboot", func(t *testing.T) {
		fw, err := testbed.FindFirmware("x86_64", true, testbed.FirmwareDirs(e.tools.OVMFDir))
		if err != nil {
			t.Skipf("SKIPPING SECURE BOOT DISK BOOT: %v", err)
		}
		pk, kek, db := writeTestCert(t, dir, "PK"), writeTestCert(t, dir, "KEK"), writeTestCert(t, dir, "db")
		vars, err := testbed.EnrollSecureBoot(t.Context(), fw.VarsTemplate, pk, []string{kek}, []string{db})
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(vars)
		fw.VarsTemplate = vars
		signed := filepath.Join(dir, "uki.signed.efi")
		run(t, "sbsign", "--key", filepath.Join(dir, "db.key"), "--cert", db, "--output", signed, uki)
		if err := os.MkdirAll(filepath.Join(dir, "signed"), 0o755); err != nil {
			t.Fatal(err)
		}
		signedDisk := buildDisk(t, filepath.Join(dir, "signed"), signed)

		t.Run("signed", func(t *testing.T) {
			runTarget(t, testbed.Target{Name: "x86_64-disk-uki-secureboot", ComposefsDigest: ab.digest,
				Features: []testbed.Feature{testbed.FeatureComposefs, testbed.FeatureUEFI, testbed.FeatureSecureBoot},
				Machine:  testbed.Machine{Arch: "x86_64", Firmware: &fw, Disk: signedDisk, Timeout: bootTimeout}},
				"agent-report", "secureboot-enabled", "composefs-root", "composefs-digest")
		})
		t.Run("unsigned-refused", func(t *testing.T) {
			rep := runTarget(t, testbed.Target{Name: "x86_64-disk-uki-unsigned",
				Features: []testbed.Feature{testbed.FeatureUEFI, testbed.FeatureSecureBoot, testbed.FeatureRefusal},
				Machine:  testbed.Machine{Arch: "x86_64", Firmware: &fw, Disk: disk, Timeout: bootTimeout}},
				"firmware-refusal")
			if !strings.Contains(rep.Boot.Reason, "Access Denied") && !strings.Contains(rep.Boot.Reason, "No bootable option") {
				t.Errorf("refusal reason %q", rep.Boot.Reason)
			}
			if !bytes.Contains([]byte(strings.Join(rep.Boot.Tail(20), "\n")), []byte("Access Denied")) {
				t.Errorf("console shows no Access Denied:\n%s", strings.Join(rep.Boot.Tail(20), "\n"))
			}
		})
	})
}
