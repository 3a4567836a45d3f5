package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/composefs"
	"github.com/cfs-compose/cfs-compose/stages/disk"
	"github.com/cfs-compose/cfs-compose/stages/sign"
	"github.com/cfs-compose/cfs-compose/stages/source"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// bootableImage is a small x86_64 bootable container: a kernel and an EFI
// stub with PE headers, a shell, modules and an os-release.
func bootableImage(t *testing.T) string {
	t.Helper()
	pe := func(n int) string {
		b := make([]byte, n)
		copy(b, "MZ")
		binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
		copy(b[0x80:], "PE\x00\x00")
		binary.LittleEndian.PutUint16(b[0x84:], 0x8664)
		return string(b)
	}
	elf := make([]byte, 300)
	copy(elf, "\x7fELF\x02\x01\x01")
	binary.LittleEndian.PutUint16(elf[18:], 62)
	entries := []ti.Entry{
		ti.Dir("etc", 0o755), ti.Dir("usr", 0o755), ti.Dir("usr/bin", 0o755), ti.Dir("usr/lib", 0o755),
		ti.Symlink("bin", "usr/bin"),
		ti.File("usr/bin/busybox", string(elf), 0o755),
		ti.Symlink("usr/bin/sh", "busybox"),
		ti.File("usr/lib/os-release", "NAME=\"Fedora Linux\"\nID=fedora\nVERSION_ID=41\n", 0o644),
		ti.Dir("usr/lib/modules", 0o755), ti.Dir("usr/lib/modules/6.12.0", 0o755),
		ti.File("usr/lib/modules/6.12.0/vmlinuz", pe(8192), 0o644),
		ti.File("usr/lib/modules/6.12.0/modules.dep", "kernel/drivers/virtio.ko:\n", 0o644),
		ti.Dir("usr/lib/modules/6.12.0/kernel", 0o755), ti.Dir("usr/lib/modules/6.12.0/kernel/drivers", 0o755),
		ti.File("usr/lib/modules/6.12.0/kernel/drivers/virtio.ko", "module bytes long enough to be an object, not inline content", 0o644),
		ti.Dir("usr/lib/systemd", 0o755), ti.Dir("usr/lib/systemd/boot", 0o755), ti.Dir("usr/lib/systemd/boot/efi", 0o755),
		ti.File("usr/lib/systemd/boot/efi/linuxx64.efi.stub", pe(4096), 0o644),
		ti.Dir("var", 0o755),
	}
	img := ti.Image{Architecture: "amd64", Layers: []ti.Layer{{Compression: ti.Gzip, Entries: entries}}}
	img.Config.Labels = map[string]string{"containers.bootc": "1"}
	return "oci:" + ti.Build(t, img) + ":" + ti.Tag
}

// TestVerifyRealStages builds a compose with the real source, composefs,
// disk and sign stages (the UKI is the fixture's, with the real composefs
// digest on its command line) and verifies it, then removes an object from
// the disk the disk stage wrote.
func TestVerifyRealStages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: the disk stage needs root (device nodes and owners in the root partition); CI runs as root")
	}
	keys := testKeys(t)
	c := variantConfig("testbed", keys, true, true)
	c.Source = manifest.Source{Image: bootableImage(t), Kind: manifest.SourceContainer}
	c.UKI = manifest.UKI{Enabled: true, Stub: "image", Name: "testbed"}
	c.Initramfs = manifest.Initramfs{Source: manifest.InitramfsBuiltin}
	c.Rootfs = manifest.Rootfs{ExtraDirs: []string{}}
	c.Lints = manifest.Lints{Skip: []string{"root-dirs"}}
	c.Disk = manifest.Disk{Size: 256 << 20, Formats: []string{"raw"}, Partitions: []manifest.Partition{
		{Name: "esp", Type: "esp", Size: 64 << 20, FS: "vfat", Label: "esp"},
		{Name: "root", Type: "root", Size: 0, FS: "ext4", Label: "root", Verity: true},
	}}
	base := t.TempDir()
	stages := []pipeline.Stage{source.New(), composefs.New(), fakeUKI{}.stage(), disk.New(), sign.New()}
	rec := buildFixtureWith(t, testManifests{"testbed": {"x86_64": c}}, stages, filepath.Join(base, "cache"), filepath.Join(base, "out"))
	cp, err := openCompose(rec.Dir)
	if err != nil {
		t.Fatal(err)
	}
	tg := cp.Targets[0]
	if tg.Composefs == "" || tg.UKI == "" || tg.Raw == "" {
		t.Fatalf("target %+v", tg)
	}
	code, out, errOut := runCLI("verify", rec.Dir)
	if code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	for _, check := range []string{"disk-uki", "disk-image", "disk-objects"} {
		if !hasRow(out, tg.Raw, check, "ok", "") {
			t.Errorf("no ok %s row:\n%s", check, out)
		}
	}
	d := copyTree(t, rec.Dir)
	removeObject(t, filepath.Join(d, tg.Raw))
	code, out, _ = runCLI("verify", d)
	if code != 1 || !hasRow(out, tg.Raw, "disk-objects", "FAIL", "(missing)") {
		t.Fatalf("verify after removing an object: exit %d\n%s", code, out)
	}
}
