package diskimage

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// bootMarker is what the test EFI application prints.
const bootMarker = "cfs-compose-disk-ok"

// efiApp returns a minimal x86-64 EFI application (PE32+, subsystem 10)
// that prints bootMarker on ConOut and powers the machine off with
// ResetSystem(EfiResetShutdown). Its code is position independent and has
// no relocations.
func efiApp() []byte {
	code := []byte{
		0x48, 0x83, 0xEC, 0x28, // sub rsp, 0x28 (shadow space, 16-byte alignment)
		0x48, 0x89, 0xD3, // mov rbx, rdx (SystemTable)
		0x48, 0x8B, 0x4B, 0x40, // mov rcx, [rbx+0x40] (ConOut)
		0x48, 0x8D, 0x15, 30, 0, 0, 0, // lea rdx, [rip+30] (message at offset 48)
		0xFF, 0x51, 0x08, // call [rcx+0x08] (OutputString)
		0x48, 0x8B, 0x43, 0x58, // mov rax, [rbx+0x58] (RuntimeServices)
		0xB9, 0x02, 0x00, 0x00, 0x00, // mov ecx, 2 (EfiResetShutdown)
		0x31, 0xD2, // xor edx, edx
		0x45, 0x31, 0xC0, // xor r8d, r8d
		0x45, 0x31, 0xC9, // xor r9d, r9d
		0xFF, 0x50, 0x68, // call [rax+0x68] (ResetSystem)
		0xEB, 0xFE, // jmp $
	}
	text := make([]byte, 0x200)
	copy(text, code)
	for i, u := range utf16.Encode([]rune("\r\n" + bootMarker + "\r\n")) {
		binary.LittleEndian.PutUint16(text[48+2*i:], u)
	}
	img := make([]byte, 0x400)
	le := binary.LittleEndian
	copy(img, "MZ")
	le.PutUint32(img[0x3C:], 0x40)
	copy(img[0x40:], "PE\x00\x00")
	coff := img[0x44:]
	le.PutUint16(coff[0:], pe.IMAGE_FILE_MACHINE_AMD64)
	le.PutUint16(coff[2:], 1)    // sections
	le.PutUint16(coff[16:], 240) // optional header size
	le.PutUint16(coff[18:], pe.IMAGE_FILE_EXECUTABLE_IMAGE|pe.IMAGE_FILE_LARGE_ADDRESS_AWARE)
	opt := img[0x58:]
	le.PutUint16(opt[0:], 0x20B) // PE32+
	le.PutUint32(opt[4:], 0x200) // SizeOfCode
	le.PutUint32(opt[16:], 0x1000)
	le.PutUint32(opt[20:], 0x1000)
	le.PutUint64(opt[24:], 0x10000000) // ImageBase
	le.PutUint32(opt[32:], 0x1000)     // SectionAlignment
	le.PutUint32(opt[36:], 0x200)      // FileAlignment
	le.PutUint32(opt[56:], 0x2000)     // SizeOfImage
	le.PutUint32(opt[60:], 0x200)      // SizeOfHeaders
	le.PutUint16(opt[68:], pe.IMAGE_SUBSYSTEM_EFI_APPLICATION)
	le.PutUint32(opt[108:], 16) // data directories (all empty)
	sec := img[0x58+240:]
	copy(sec[0:8], ".text")
	le.PutUint32(sec[8:], 0x200)   // VirtualSize
	le.PutUint32(sec[12:], 0x1000) // VirtualAddress
	le.PutUint32(sec[16:], 0x200)  // SizeOfRawData
	le.PutUint32(sec[20:], 0x200)  // PointerToRawData
	le.PutUint32(sec[36:], pe.IMAGE_SCN_CNT_CODE|pe.IMAGE_SCN_MEM_EXECUTE|pe.IMAGE_SCN_MEM_READ)
	copy(img[0x200:], text)
	return img
}

// TestOVMFBootsESP boots a written disk in QEMU with OVMF: the firmware
// must find the ESP through the GPT, read EFI/BOOT/BOOTX64.EFI from the
// FAT32 file system and run it.
func TestOVMFBootsESP(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the QEMU boot")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (qemu-system-x86): cannot boot the image")
	}
	code, vars := "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
	for _, p := range []string{code, vars} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s is missing (ovmf): cannot boot the image", p)
		}
	}
	app := efiApp()
	if f, err := pe.NewFile(bytes.NewReader(app)); err != nil {
		t.Fatalf("test EFI application does not parse: %v", err)
	} else if oh := f.OptionalHeader.(*pe.OptionalHeader64); oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
		t.Fatalf("subsystem %d", oh.Subsystem)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	s := &Spec{Size: 100 << 20, Arch: ArchX86_64, Seed: "ovmf", Epoch: testEpoch, Partitions: []Partition{
		{Name: "esp", Type: TypeESP, Size: 40 << 20, FS: FSVfat, Label: "ESP", Files: []File{
			BytesFile("EFI/BOOT/BOOTX64.EFI", app), BytesFile("EFI/Linux/test.efi", app)}},
		{Name: "root", Type: TypeRoot, FS: FSExt4, Label: "root"},
	}}
	if _, err := Write(context.Background(), s, img); err != nil {
		t.Fatal(err)
	}
	varsCopy := filepath.Join(dir, "vars.fd")
	b, err := os.ReadFile(vars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(varsCopy, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	serial := filepath.Join(dir, "serial.log")
	start := time.Now()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-machine", "q35", "-m", "256", "-smp", "1",
		"-nodefaults", "-display", "none", "-no-reboot", "-serial", "file:"+serial,
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
		"-drive", "if=pflash,format=raw,unit=1,file="+varsCopy,
		"-drive", "file="+img+",format=raw,if=virtio,readonly=on")
	out, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(serial)
	if err != nil {
		t.Fatalf("qemu: %v (after %s)\n%s\nserial:\n%s", err, time.Since(start), out, lastLines(log, 20))
	}
	if !bytes.Contains(log, []byte(bootMarker)) {
		t.Fatalf("the EFI application did not run; serial:\n%s", lastLines(log, 20))
	}
	t.Logf("OVMF booted EFI/BOOT/BOOTX64.EFI from the image and powered off in %s", time.Since(start).Round(time.Millisecond))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
