package manifest

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// TestSemanticChecks runs each semantic check on a variant that violates
// it (and only it).
func TestSemanticChecks(t *testing.T) {
	type want struct {
		sev     hcl.DiagnosticSeverity
		summary string
		detail  string
	}
	E, W := hcl.DiagError, hcl.DiagWarning
	verityRoot := "  disk {\n    partition \"root\" {\n      verity = true\n    }\n  }\n"
	tests := []struct {
		name  string
		body  string
		opts  Options
		diags []want
	}{
		{"composefs on ostree", "  arch \"x86_64\" {\n    source {\n      kind = \"ostree\"\n    }\n  }", Options{}, []want{
			{E, "composefs on a classic ostree source", "ComposefsAtomicDesktops"}}},
		{"ostree source without composefs is fine", "  arch \"x86_64\" {\n    source {\n      kind = \"ostree\"\n    }\n  }\n  composefs {\n    enabled = false\n  }", Options{}, nil},
		{"ostree-grub2 with composefs", "  bootloader {\n    type = \"ostree-grub2\"\n  }\n  uki {\n    enabled = false\n  }", Options{}, []want{
			{E, "composefs with the ostree-grub2 bootloader", "ostree/issues/3198"}}},
		{"kdump with composefs", "  kernel {\n    kdump = true\n  }", Options{}, []want{
			{W, "kdump with composefs", "2284097"}}},
		{"verity require without verity root", "  composefs {\n    verity = \"require\"\n  }", Options{}, []want{
			{E, "verity = \"require\" without an fs-verity root filesystem", `partition "root" must have fs = "ext4" and verity = true`}}},
		{"verity require with verity root", "  composefs {\n    verity = \"require\"\n  }\n" + verityRoot, Options{}, nil},
		{"verity enable without verity root", "  composefs {\n    verity = \"enable\"\n  }", Options{}, []want{
			{W, "verity = \"enable\" has no effect", "no object will be checked"}}},
		{"signed without keys", "  composefs {\n    signed = true\n  }", Options{}, []want{
			{E, "Signed composefs without keys", "signing { key }, secureboot { key }, secureboot { cert } are not set"}}},
		{"signed with keys", "  composefs {\n    signed = true\n  }\n  signing {\n    key = \"/k/cosign.key\"\n  }\n  secureboot {\n    key  = \"/k/db.key\"\n    cert = \"/k/db.crt\"\n  }", Options{}, nil},
		{"half a Secure Boot key pair", "  secureboot {\n    key = \"/k/db.key\"\n  }", Options{}, []want{
			{E, "Incomplete Secure Boot key pair", "both key and cert"}}},
		{"signing pub without key", "  signing {\n    pub = \"/k/cosign.pub\"\n  }", Options{}, []want{
			{E, "Signing public key without a private key", "signing.key is not"}}},
		{"secure boot test without keys", "  test {\n    secureboot = true\n  }", Options{}, []want{
			{E, "Secure Boot test without keys", "secureboot { key, cert }"}}},
		{"undeclared root-level directory", "  kernel {\n    cmdline = [\"systemd.mount-extra=/dev/vdb:/data:ext4\"]\n  }", Options{}, []want{
			{E, "Undeclared root-level directory", `add "/data" to rootfs { extra_dirs }`}}},
		{"declared root-level directory", "  kernel {\n    cmdline = [\"systemd.mount-extra=/dev/vdb:/data/x:ext4\"]\n  }\n  rootfs {\n    extra_dirs = [\"/data\"]\n  }", Options{}, nil},
		{"bad extra dir", "  rootfs {\n    extra_dirs = [\"data/x\"]\n  }", Options{}, []want{
			{E, "Invalid root-level directory", `"data/x" is not one`}}},
		{"standard extra dir", "  rootfs {\n    extra_dirs = [\"/opt\"]\n  }", Options{}, []want{
			{W, "Standard root-level directory declared", `"/opt" is already part`}}},
		{"image initramfs with the composefs backend", "  initramfs {\n    source = \"image\"\n  }", Options{}, []want{
			{E, "The image's initramfs cannot boot the composefs backend", `deploy { backend = "ostree" }`}}},
		{"ostree backend with the image initramfs", "  deploy {\n    backend = \"ostree\"\n    stateroot = \"fedora\"\n  }\n  initramfs {\n    source = \"image\"\n  }", Options{}, nil},
		{"ostree backend with the builtin initramfs and composefs", "  deploy {\n    backend = \"ostree\"\n  }", Options{}, nil},
		{"ostree backend with the builtin initramfs without composefs", "  deploy {\n    backend = \"ostree\"\n  }\n  composefs {\n    enabled = false\n  }", Options{}, nil},
		{"ostree backend with the builtin initramfs and verity require", "  deploy {\n    backend = \"ostree\"\n  }\n  composefs {\n    verity = \"require\"\n  }\n" + verityRoot, Options{}, nil},
		{"ostree backend with the image initramfs and verity require", "  deploy {\n    backend = \"ostree\"\n  }\n  initramfs {\n    source = \"image\"\n  }\n  composefs {\n    verity = \"require\"\n  }\n" + verityRoot, Options{}, []want{
			{E, "verity = \"require\" with the ostree backend", "prepare-root.conf decides"}}},
		{"ostree backend with the builtin initramfs and signed composefs", "  deploy {\n    backend = \"ostree\"\n  }\n  composefs {\n    signed = true\n  }\n  signing {\n    key = \"/k/cosign.key\"\n  }\n  secureboot {\n    key  = \"/k/db.key\"\n    cert = \"/k/db.crt\"\n  }", Options{}, []want{
			{E, "Signed ostree commits with the builtin initramfs", "cfs-init does not verify ostree commit signatures"}}},
		{"ostree backend with systemd-boot", "  deploy {\n    backend = \"ostree\"\n  }\n  initramfs {\n    source = \"image\"\n  }\n  bootloader {\n    type = \"systemd-boot\"\n  }", Options{}, []want{
			{E, "systemd-boot with the ostree backend", "without an EFI file system driver"}}},
		{"ostree backend with a bad stateroot", "  deploy {\n    backend = \"ostree\"\n    stateroot = \"a/b\"\n  }\n  initramfs {\n    source = \"image\"\n  }", Options{}, []want{
			{E, "Invalid stateroot", `"a/b"`}}},
		{"ostree backend with signed composefs", "  deploy {\n    backend = \"ostree\"\n  }\n  initramfs {\n    source = \"image\"\n  }\n  composefs {\n    signed = true\n  }\n  signing {\n    key = \"/k/cosign.key\"\n  }\n  secureboot {\n    key  = \"/k/db.key\"\n    cert = \"/k/db.crt\"\n  }", Options{}, []want{
			{E, "Signed composefs without an ostree signing key", "set signing { ostree_key"}}},
		{"ostree backend with signed composefs and a commit key", "  deploy {\n    backend = \"ostree\"\n  }\n  initramfs {\n    source = \"image\"\n  }\n  composefs {\n    signed = true\n  }\n  signing {\n    key = \"/k/cosign.key\"\n    ostree_key = \"/k/ostree.pem\"\n  }\n  secureboot {\n    key  = \"/k/db.key\"\n    cert = \"/k/db.crt\"\n  }", Options{}, nil},
		{"ostree backend with init arguments", "  deploy {\n    backend = \"ostree\"\n  }\n  initramfs {\n    source = \"image\"\n  }\n  kernel {\n    cmdline = [\"quiet\", \"--\", \"single\"]\n  }", Options{}, []want{
			{E, "Kernel argument ostree cannot keep", `"--"`}}},
		{"pipeline kernel argument", "  kernel {\n    cmdline = [\"quiet\", \"root=/dev/sda2\"]\n  }", Options{}, []want{
			{E, "Kernel argument set by the pipeline", `"root=/dev/sda2"`}}},
		{"stub for every arch", "  arches = [\"x86_64\", \"aarch64\"]\n  uki {\n    stub = \"/stubs/linuxx64.efi.stub\"\n  }", Options{}, []want{
			{E, "Architecture-specific file set for every arch", "Applies to: v/x86_64, v/aarch64."}}},
		{"x86 stub in the aarch64 block", "  arches = [\"x86_64\", \"aarch64\"]\n  arch \"aarch64\" {\n    uki {\n      stub = \"/stubs/linuxx64.efi.stub\"\n    }\n  }", Options{}, []want{
			{E, "File for the wrong architecture", "looks like a file for x86_64"}}},
		{"per-arch stubs and firmware", "  arches = [\"x86_64\", \"aarch64\"]\n  arch \"x86_64\" {\n    uki {\n      stub = \"/s/linuxx64.efi.stub\"\n    }\n    test {\n      firmware = \"/usr/share/OVMF/OVMF_CODE_4M.fd\"\n    }\n  }\n  arch \"aarch64\" {\n    uki {\n      stub = \"/s/linuxaa64.efi.stub\"\n    }\n    test {\n      firmware = \"/usr/share/AAVMF/AAVMF_CODE.fd\"\n    }\n  }", Options{}, nil},
		{"aarch64 firmware on x86_64", "  test {\n    firmware = \"/usr/share/AAVMF/AAVMF_CODE.fd\"\n  }", Options{}, []want{
			{E, "File for the wrong architecture", "looks like a file for aarch64"}}},
		{"two rest partitions", "  disk {\n    partition \"data\" {}\n  }", Options{}, []want{
			{E, "More than one partition fills the rest of the disk", `"root" and "data" both have size 0`}}},
		{"partitions do not fit", "  disk {\n    size = \"1GiB\"\n    partition \"root\" {\n      size = \"1GiB\"\n    }\n  }", Options{}, []want{
			{E, "Partitions do not fit the disk", "need 1090MiB (esp 64MiB + root 1GiB, plus 2MiB"}}},
		{"no room for the rest", "  disk {\n    size = \"66MiB\"\n  }", Options{}, []want{
			{E, "No room for the rest partition", `Partition "root" has size 0`}}},
		{"unaligned size", "  disk {\n    partition \"esp\" {\n      size = \"1000KiB\"\n    }\n  }", Options{}, []want{
			{E, "Partition size not MiB-aligned", "1000KiB"}}},
		{"no esp", "  disk {\n    partition \"esp\" {\n      type = \"linux\"\n      fs = \"vfat\"\n    }\n  }", Options{}, []want{
			{E, "No esp partition", "exactly one"}}},
		{"two root partitions", "  disk {\n    partition \"data\" {\n      type = \"root\"\n      size = \"1MiB\"\n    }\n  }", Options{}, []want{
			{E, "More than one root partition", `"root" or "data"`}}},
		{"esp not vfat", "  disk {\n    partition \"esp\" {\n      fs = \"ext4\"\n    }\n  }", Options{}, []want{
			{E, "EFI system partition must be vfat", "fs = \"vfat\""}}},
		{"verity on vfat", "  disk {\n    partition \"esp\" {\n      verity = true\n    }\n  }", Options{}, []want{
			{E, "fs-verity needs ext4", `fs = "vfat"`}}},
		{"label too long", "  disk {\n    partition \"esp\" {\n      label = \"EFI-SYSTEM-PART\"\n    }\n  }", Options{}, []want{
			{E, "Partition label too long", "at most 11 bytes"}}},
		{"duplicate labels", "  disk {\n    partition \"data\" {\n      label = \"root\"\n      size = \"1MiB\"\n    }\n  }", Options{}, []want{
			{E, "Duplicate partition label", `"root"`}}},
		{"unknown check", "  test {\n    checks = [\"composefs-root\", \"usr-readonlly\"]\n  }", Options{KnownChecks: []string{"composefs-root", "usr-readonly"}}, []want{
			{E, "Unknown check", `Did you mean "usr-readonly"?`}}},
		{"checks not checked without a registry", "  test {\n    checks = [\"anything\"]\n  }", Options{}, nil},
		{"unknown lint", "  lints {\n    skip = [\"var-contnet\"]\n  }", Options{KnownLints: []string{"var-content"}}, []want{
			{E, "Unknown lint", `Did you mean "var-content"?`}}},
		{"uki disabled with the uki bootloader", "  uki {\n    enabled = false\n  }", Options{}, []want{
			{E, "Bootloader needs a UKI", `bootloader.type = "uki"`}}},
		{"uki name", "  uki {\n    name = \"fedora.efi\"\n  }", Options{}, []want{
			{E, "Invalid UKI name", "must not end in .efi"}}},
		{"sbat", "  uki {\n    sbat = \"cfs,1,Fedora\\n\"\n  }", Options{}, []want{
			{E, "Invalid SBAT line", "has 3 fields"}}},
		{"modules ignored", "  deploy {\n    backend = \"ostree\"\n  }\n  initramfs {\n    source = \"image\"\n    modules = [\"virtio_blk\"]\n  }", Options{}, []want{
			{W, "initramfs.modules ignored", "uses the image's own initramfs"}}},
		{"empty formats", "  disk {\n    formats = []\n  }", Options{}, []want{
			{E, "No disk format", "raw"}}},
		{"duplicate variant names", "  name = \"W\"\n}\nvariant \"w\" {\n  source {\n    image = \"docker://quay.io/fedora/fedora-iot:43\"\n  }", Options{}, []want{
			{E, "Duplicate variant name", `both have the name "W"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := parse(t, map[string]string{"m.hcl": base + variant(tt.body)}, &tt.opts)
			if len(diags) != len(tt.diags) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(diags), len(tt.diags), diagText(diags))
			}
			for i, w := range tt.diags {
				d := diags[i]
				if d.Severity != w.sev || d.Summary != w.summary || !strings.Contains(d.Detail, w.detail) || d.Subject == nil {
					t.Errorf("diagnostic %d:\n got %s\nwant %v %q %q", i, diagText(diags[i:i+1]), w.sev, w.summary, w.detail)
				}
			}
		})
	}
}

// TestFindingsGrouped checks that one problem written in defaults is one
// diagnostic listing every variant and arch it affects.
func TestFindingsGrouped(t *testing.T) {
	src := strings.Replace(base, "defaults {", "defaults {\n  kernel {\n    kdump = true\n  }", 1) +
		variant("  arches = [\"x86_64\", \"aarch64\"]") + strings.Replace(variant(""), `"v"`, `"w"`, 1)
	_, diags := parse(t, map[string]string{"m.hcl": src}, nil)
	if len(diags) != 1 || !strings.Contains(diags[0].Detail, "Applies to: v/x86_64, v/aarch64, w/x86_64.") || diags[0].Subject.Start.Line != 8 {
		t.Fatalf("want one grouped kdump warning at line 8:\n%s", diagText(diags))
	}
}

// TestChecksSkippedAfterErrors checks that a variant with an error gets no
// semantic diagnostics (they would only repeat the root cause).
func TestChecksSkippedAfterErrors(t *testing.T) {
	src := base + variant("  composefs {\n    verity = \"require\"\n  }\n  disk {\n    partition \"root\" {\n      verty = true\n    }\n  }")
	_, diags := parse(t, map[string]string{"m.hcl": src}, nil)
	if len(diags) != 1 || diags[0].Summary != "Unsupported argument" {
		t.Fatalf("want only the typo:\n%s", diagText(diags))
	}
}

// TestFATPartitionSize pins the FAT32 minimum for vfat partitions, checked
// in validate at the partition's size attribute instead of failing in the
// disk stage (issue 13 item 24).
func TestFATPartitionSize(t *testing.T) {
	disk := func(esp, diskSize string) string {
		return "compose {\n  release = \"43\"\n}\ndefaults {\n  disk {\n    size = \"" + diskSize + "\"\n" +
			"    partition \"esp\" {\n" + esp + "    }\n    partition \"root\" {\n      size = \"512MiB\"\n    }\n  }\n}\n"
	}
	tests := []struct {
		name      string
		file      string
		line, col int // of the diagnostic; 0: no error
		detail    string
	}{
		{"1 MiB ESP", disk("      size = \"1MiB\"\n", "1GiB"), 8, 7, `partition "esp" has fs = "vfat" and size 1MiB; the disk stage formats it as FAT32, which needs at least 33MiB`},
		{"32 MiB ESP", disk("      size = \"32MiB\"\n", "1GiB"), 8, 7, "needs at least 33MiB"},
		{"33 MiB ESP", disk("      size = \"33MiB\"\n", "1GiB"), 0, 0, ""},
		{"rest-of-disk ESP too small", disk("      size = 0\n", "530MiB"), 6, 5, `Partition "esp" has fs = "vfat" and size 0 (the rest of the disk), which leaves it 16MiB`},
		{"rest-of-disk ESP large enough", disk("      size = 0\n", "1GiB"), 0, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := parse(t, map[string]string{"m.hcl": tc.file + simpleVariant}, nil)
			var got *hcl.Diagnostic
			for _, d := range diags {
				if d.Summary == "Partition too small for FAT32" {
					got = d
				}
			}
			if tc.line == 0 {
				if got != nil || diags.HasErrors() {
					t.Fatalf("unexpected: %v", diags)
				}
				return
			}
			if got == nil {
				t.Fatalf("no FAT32 size error: %v", diags)
			}
			if got.Subject == nil || got.Subject.Filename != "m.hcl" || got.Subject.Start.Line != tc.line || got.Subject.Start.Column != tc.col || !strings.Contains(got.Detail, tc.detail) {
				t.Errorf("got %s: %s\nwant m.hcl:%d:%d: %s", got.Subject, got.Detail, tc.line, tc.col, tc.detail)
			}
		})
	}
}
