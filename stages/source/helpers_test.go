package source

import (
	"encoding/binary"
	"testing"
	"testing/fstest"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"

	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// fakePE returns a minimal PE/EFI header for a machine, padded to n bytes.
func fakePE(machine uint16, n int) []byte {
	b := make([]byte, max(n, 0x100))
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[0x84:], machine)
	return b
}

// fakeArm64Image returns an arm64 Image header without a PE part.
func fakeArm64Image(n int) []byte {
	b := make([]byte, max(n, 0x100))
	binary.LittleEndian.PutUint32(b[0x38:], arm64Magic)
	return b
}

// fakeELF returns a minimal 64-bit little-endian ELF header.
func fakeELF(machine uint16, n int) []byte {
	b := make([]byte, max(n, 0x100))
	copy(b, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(b[18:], machine)
	return b
}

// bootableEntries is the content of a small bootable container for arch
// (x86_64 or aarch64), as one layer.
func bootableEntries(arch string) []ti.Entry {
	pe, elf, stub := uint16(peMachineAMD64), uint16(elfMachineX86), "linuxx64.efi.stub"
	if arch == "aarch64" {
		pe, elf, stub = peMachineARM64, elfMachineARM, "linuxaa64.efi.stub"
	}
	return []ti.Entry{
		ti.Dir("etc", 0o755), ti.Dir("usr", 0o755), ti.Dir("usr/bin", 0o755), ti.Dir("usr/lib", 0o755),
		ti.Symlink("bin", "usr/bin"),
		ti.File("usr/bin/busybox", string(fakeELF(elf, 300)), 0o755),
		ti.Symlink("usr/bin/sh", "busybox"),
		ti.File("usr/lib/os-release", "NAME=\"Fedora Linux\"\nID=fedora\nVERSION_ID=41\nPRETTY_NAME=\"Fedora Linux 41 (\\\"Test\\\")\"\n", 0o644),
		ti.Dir("usr/lib/modules", 0o755), ti.Dir("usr/lib/modules/6.12.0", 0o755),
		ti.File("usr/lib/modules/6.12.0/vmlinuz", string(fakePE(pe, 8192)), 0o644),
		ti.File("usr/lib/modules/6.12.0/initramfs.img", "initramfs but long enough to be stored as an object, not inline content", 0o644),
		ti.File("usr/lib/modules/6.12.0/modules.dep", "kernel/drivers/virtio.ko:\n", 0o644),
		ti.Dir("usr/lib/modules/6.12.0/kernel", 0o755), ti.Dir("usr/lib/modules/6.12.0/kernel/drivers", 0o755),
		ti.File("usr/lib/modules/6.12.0/kernel/drivers/virtio.ko", "module", 0o644),
		ti.File("usr/lib/modules/6.12.0/kernel/drivers/erofs.ko.xz", "module", 0o644),
		ti.Dir("usr/lib/systemd", 0o755), ti.Dir("usr/lib/systemd/boot", 0o755), ti.Dir("usr/lib/systemd/boot/efi", 0o755),
		ti.File("usr/lib/systemd/boot/efi/"+stub, string(fakePE(pe, 4096)), 0o644),
		ti.Dir("var", 0o755),
	}
}

// bootableFS is bootableEntries as an fstest.MapFS.
func bootableFS(arch string) fstest.MapFS {
	m := fstest.MapFS{}
	for _, e := range bootableEntries(arch) {
		h := e.Header
		name := h.Name
		for len(name) > 0 && name[len(name)-1] == '/' {
			name = name[:len(name)-1]
		}
		f := &fstest.MapFile{Data: e.Data, Mode: h.FileInfo().Mode()}
		if h.Linkname != "" {
			f.Data = []byte(h.Linkname)
		}
		m[name] = f
	}
	return m
}

// facts decides the facts of mc's target as the pipeline does.
func facts(t testing.TB, mc *manifest.Config) *pipeline.Facts {
	t.Helper()
	f, err := pipeline.FactsOf(pipeline.Target{Variant: mc.Variant, Name: mc.Name, Arch: mc.Arch}, mc)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
