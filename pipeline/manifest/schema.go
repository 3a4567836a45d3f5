package manifest

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
)

// This file is the manifest schema: every block and attribute a variant,
// the defaults block or an arch block may hold, mapped 1:1 onto the fields
// of [Config]. The loader, the resolver (defaults, provenance), explain,
// `set` address checking and the documentation test all walk these tables,
// so a setting exists in exactly one place.

// kind is the type of a setting as the manifest author writes it.
type kind int

const (
	kindString   kind = iota // string
	kindBool                 // bool
	kindInt                  // whole number
	kindStrings              // list(string)
	kindSize                 // "512MiB" or a number of bytes
	kindDuration             // "5m"
	kindPath                 // local path; relative to the manifest file
	kindStub                 // "image" or a local path
	kindImage                // containers-image reference
)

func (k kind) String() string {
	switch k {
	case kindString:
		return "string"
	case kindBool:
		return "bool"
	case kindInt:
		return "number"
	case kindStrings:
		return "list of strings"
	case kindSize:
		return "size"
	case kindDuration:
		return "duration"
	case kindPath:
		return "path"
	case kindStub:
		return `"image" or path`
	case kindImage:
		return "image reference"
	}
	return "unknown"
}

// attrSpec describes one attribute.
type attrSpec struct {
	name string
	kind kind
	// enum lists the allowed values (of the string, of each list element,
	// or the decimal spelling of a number).
	enum []string
	// unique forbids duplicate elements in a list.
	unique bool
	// required means there is no built-in default: some layer must set it.
	required bool
	// field returns a pointer to the Config (or Partition) field:
	// *string, *bool, *int, *int64, *[]string or *time.Duration.
	field func(c *Config, p *Partition) any
	// dflt is the built-in default; derive computes it from the settings
	// already resolved (schema order) and says how.
	dflt   any
	derive func(c *Config, p *Partition) (any, string)
	doc    string
}

// blockSpec describes one block type.
type blockSpec struct {
	name    string
	labeled bool // partition "NAME"
	attrs   []*attrSpec
	blocks  []*blockSpec
	doc     string
}

func (b *blockSpec) attr(name string) *attrSpec {
	for _, a := range b.attrs {
		if a.name == name {
			return a
		}
	}
	return nil
}

func (b *blockSpec) block(name string) *blockSpec {
	for _, s := range b.blocks {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (b *blockSpec) names() (attrs, blocks []string) {
	for _, a := range b.attrs {
		attrs = append(attrs, a.name)
	}
	for _, s := range b.blocks {
		blocks = append(blocks, s.name)
	}
	return attrs, blocks
}

// Enumerations accepted by the schema.
var (
	arches          = arch.Names()
	verityModes     = []string{initconfig.VerityNone, initconfig.VerityEnable, initconfig.VerityRequire}
	sourceKinds     = []string{SourceContainer, SourceOstree}
	initramfsKinds  = []string{InitramfsBuiltin, InitramfsImage}
	bootloaderTypes = []string{BootloaderUKI, BootloaderSystemdBoot, BootloaderOstreeGrub2}
	diskFormats     = []string{"raw", "qcow2"}
	partitionTypes  = []string{PartitionESP, PartitionRoot, PartitionLinux}
	filesystems     = []string{FilesystemVFAT, FilesystemExt4}
	composeTypes    = []string{"production", "nightly", "test", "ci"}
	backends        = []string{BackendComposefs, BackendOstree}
)

// Partition types (partition "NAME" { type = ... }).
const (
	PartitionESP   = "esp"   // EFI system partition
	PartitionRoot  = "root"  // the root filesystem (GPT root type for the arch)
	PartitionLinux = "linux" // any other Linux data partition
)

// Partition filesystems (partition "NAME" { fs = ... }).
const (
	FilesystemVFAT = "vfat"
	FilesystemExt4 = "ext4"
)

// StubFromImage is the uki.stub value meaning "the systemd EFI stub shipped
// in the image" (/usr/lib/systemd/boot/efi/linux{x64,aa64}.efi.stub).
const StubFromImage = "image"

// StandardRootDirs are the root-level directories of a Fedora bootable
// container image. Any other root-level directory must be declared in
// `rootfs { extra_dirs }`: a composefs root is read-only, so it cannot be
// created at runtime.
var StandardRootDirs = []string{
	"afs", "bin", "boot", "dev", "efi", "etc", "home", "lib", "lib64", "media", "mnt",
	"opt", "ostree", "proc", "root", "run", "sbin", "srv", "sys", "sysroot", "tmp", "usr", "var",
}

func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// settingBlocks are the blocks allowed in defaults, variant and arch bodies.
var settingBlocks = []*blockSpec{
	{name: "source", doc: "where the bootable container image comes from", attrs: []*attrSpec{
		{name: "image", kind: kindImage, required: true, field: func(c *Config, _ *Partition) any { return &c.Source.Image },
			doc: `containers-image reference: "docker://REF", "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]", "docker-archive:FILE" or "dir:DIR"`},
		{name: "policy", kind: kindPath, dflt: "", field: func(c *Config, _ *Partition) any { return &c.Source.Policy },
			doc: "containers-policy.json file; empty means the user's default policy"},
		{name: "signed_by", kind: kindPath, dflt: "", field: func(c *Config, _ *Partition) any { return &c.Source.SignedBy },
			doc: "cosign public key the image must be signed with"},
		{name: "kind", kind: kindString, enum: sourceKinds, dflt: SourceContainer, field: func(c *Config, _ *Partition) any { return &c.Source.Kind },
			doc: "container (bootable container image) or ostree (classic ostree commit)"},
		{name: "kernel", kind: kindString, dflt: "", field: func(c *Config, _ *Partition) any { return &c.Source.Kernel },
			doc: "kernel version under /usr/lib/modules when the image has several"},
	}},
	{name: "composefs", doc: "composefs settings; enabled is the contingency switch", attrs: []*attrSpec{
		{name: "enabled", kind: kindBool, dflt: true, field: func(c *Config, _ *Partition) any { return &c.Composefs.Enabled },
			doc: "mount the root as composefs (false: plain deployment tree)"},
		{name: "verity", kind: kindString, enum: verityModes, dflt: initconfig.VerityNone, field: func(c *Config, _ *Partition) any { return &c.Composefs.Verity },
			doc: "none, enable or require (overlayfs verity= mode)"},
		{name: "signed", kind: kindBool, dflt: false, field: func(c *Config, _ *Partition) any { return &c.Composefs.Signed },
			doc: "bind the composefs digest with a signature checked by the initramfs"},
		{name: "format_version", kind: kindInt, enum: []string{"0", "1"}, dflt: int64(0), field: func(c *Config, _ *Partition) any { return &c.Composefs.FormatVersion },
			doc: "minimum composefs image format version (0 or 1)"},
	}},
	{name: "deploy", doc: "deployment backend: how the root partition is laid out and booted", attrs: []*attrSpec{
		{name: "backend", kind: kindString, enum: backends, dflt: BackendComposefs, field: func(c *Config, _ *Partition) any { return &c.Deploy.Backend },
			doc: "composefs (cfs-compose's layout, builtin initramfs) or ostree (an ostree sysroot, the image's initramfs or cfs-init in ostree mode)"},
		{name: "stateroot", kind: kindString, dflt: "default", field: func(c *Config, _ *Partition) any { return &c.Deploy.Stateroot },
			doc: "ostree stateroot of the deployment (ostree backend)"},
	}},
	{name: "kernel", doc: "kernel settings", attrs: []*attrSpec{
		{name: "cmdline", kind: kindStrings, dflt: []string{}, field: func(c *Config, _ *Partition) any { return &c.Kernel.Cmdline },
			doc: "extra kernel arguments, in order"},
		{name: "kdump", kind: kindBool, dflt: false, field: func(c *Config, _ *Partition) any { return &c.Kernel.Kdump },
			doc: "enable kdump"},
	}},
	{name: "initramfs", doc: "how the initramfs is made", attrs: []*attrSpec{
		{name: "source", kind: kindString, enum: initramfsKinds, dflt: InitramfsBuiltin, field: func(c *Config, _ *Partition) any { return &c.Initramfs.Source },
			doc: "builtin (cfs-compose's own /init) or image (the image's initramfs.img)"},
		{name: "modules", kind: kindStrings, unique: true, dflt: []string{}, field: func(c *Config, _ *Partition) any { return &c.Initramfs.Modules },
			doc: "extra kernel modules for the builtin initramfs"},
	}},
	{name: "bootloader", doc: "boot path", attrs: []*attrSpec{
		{name: "type", kind: kindString, enum: bootloaderTypes, dflt: BootloaderUKI, field: func(c *Config, _ *Partition) any { return &c.Bootloader.Type },
			doc: "uki, systemd-boot or ostree-grub2"},
	}},
	{name: "uki", doc: "Unified Kernel Image", attrs: []*attrSpec{
		{name: "enabled", kind: kindBool, dflt: true, field: func(c *Config, _ *Partition) any { return &c.UKI.Enabled },
			doc: "build a UKI"},
		{name: "stub", kind: kindStub, dflt: StubFromImage, field: func(c *Config, _ *Partition) any { return &c.UKI.Stub },
			doc: `"image" (the stub in the image) or a path to an EFI stub`},
		{name: "sbat", kind: kindString, dflt: "", field: func(c *Config, _ *Partition) any { return &c.UKI.SBAT },
			doc: "extra SBAT CSV lines for the .sbat section"},
		{name: "name", kind: kindString, field: func(c *Config, _ *Partition) any { return &c.UKI.Name },
			derive: func(c *Config, _ *Partition) (any, string) { return c.Variant, "the variant label" },
			doc:    "UKI file base name under EFI/Linux"},
	}},
	{name: "secureboot", doc: "Secure Boot (Authenticode) signing key", attrs: []*attrSpec{
		{name: "key", kind: kindPath, dflt: "", field: func(c *Config, _ *Partition) any { return &c.SecureBoot.Key },
			doc: "db private key (PEM)"},
		{name: "cert", kind: kindPath, dflt: "", field: func(c *Config, _ *Partition) any { return &c.SecureBoot.Cert },
			doc: "db certificate (PEM)"},
	}},
	{name: "signing", doc: "artifact (cosign-compatible) signing key", attrs: []*attrSpec{
		{name: "key", kind: kindPath, dflt: "", field: func(c *Config, _ *Partition) any { return &c.Signing.Key },
			doc: "cosign.key (encrypted; passphrase from CFS_SIGNING_PASSWORD)"},
		{name: "pub", kind: kindPath, field: func(c *Config, _ *Partition) any { return &c.Signing.Pub },
			derive: func(c *Config, _ *Partition) (any, string) {
				if c.Signing.Key == "" {
					return "", "no signing key"
				}
				if strings.HasSuffix(c.Signing.Key, ".key") {
					return strings.TrimSuffix(c.Signing.Key, ".key") + ".pub", "signing.key with .key replaced by .pub"
				}
				return c.Signing.Key + ".pub", "signing.key with .pub appended"
			},
			doc: "cosign.pub (default: key with .key replaced by .pub)"},
		{name: "ostree_key", kind: kindPath, dflt: "", field: func(c *Config, _ *Partition) any { return &c.Signing.OstreeKey },
			doc: "ed25519 key signing ostree commits with composefs.signed and deploy.backend = \"ostree\" (PKCS#8 PEM or ostree's base64 secret key)"},
	}},
	{name: "rootfs", doc: "root filesystem layout", attrs: []*attrSpec{
		{name: "extra_dirs", kind: kindStrings, unique: true, dflt: []string{}, field: func(c *Config, _ *Partition) any { return &c.Rootfs.ExtraDirs },
			doc: `non-standard root-level directories ("/data")`},
	}},
	{name: "lints", doc: "image lints", attrs: []*attrSpec{
		{name: "skip", kind: kindStrings, unique: true, dflt: []string{}, field: func(c *Config, _ *Partition) any { return &c.Lints.Skip },
			doc: "lint names to skip"},
	}},
	{name: "disk", doc: "disk images", attrs: []*attrSpec{
		{name: "size", kind: kindSize, required: true, field: func(c *Config, _ *Partition) any { return &c.Disk.Size },
			doc: "disk image size"},
		{name: "formats", kind: kindStrings, enum: diskFormats, unique: true, dflt: []string{"raw"}, field: func(c *Config, _ *Partition) any { return &c.Disk.Formats },
			doc: `"raw" and/or "qcow2"`},
	}, blocks: []*blockSpec{partitionSpec}},
	{name: "test", doc: "boot test", attrs: []*attrSpec{
		{name: "boot", kind: kindBool, dflt: false, field: func(c *Config, _ *Partition) any { return &c.Test.Boot },
			doc: "boot-test the disk image as the last stage"},
		{name: "timeout", kind: kindDuration, dflt: 5 * time.Minute, field: func(c *Config, _ *Partition) any { return &c.Test.Timeout },
			doc: "time allowed per boot"},
		{name: "checks", kind: kindStrings, unique: true, dflt: []string{}, field: func(c *Config, _ *Partition) any { return &c.Test.Checks },
			doc: "check names; empty means every check that applies"},
		{name: "memory", kind: kindSize, dflt: int64(1 << 30), field: func(c *Config, _ *Partition) any { return &c.Test.Memory },
			doc: "guest RAM"},
		{name: "firmware", kind: kindPath, dflt: "", field: func(c *Config, _ *Partition) any { return &c.Test.Firmware },
			doc: "UEFI code file; empty means the testbed's default for the arch"},
		{name: "firmware_vars", kind: kindPath, dflt: "", field: func(c *Config, _ *Partition) any { return &c.Test.FirmwareVars },
			doc: "UEFI variable template file"},
		{name: "secureboot", kind: kindBool, dflt: false, field: func(c *Config, _ *Partition) any { return &c.Test.SecureBoot },
			doc: "boot with Secure Boot enforced"},
		{name: "reboot", kind: kindBool, dflt: false, field: func(c *Config, _ *Partition) any { return &c.Test.Reboot },
			doc: "boot the disk a second time through the same overlay (persist-reboot)"},
	}},
}

var partitionSpec = &blockSpec{name: "partition", labeled: true, doc: "one GPT partition, merged by label", attrs: []*attrSpec{
	{name: "type", kind: kindString, enum: partitionTypes, field: func(_ *Config, p *Partition) any { return &p.Type },
		derive: func(_ *Config, p *Partition) (any, string) {
			switch p.Name {
			case PartitionESP, PartitionRoot:
				return p.Name, "the partition label"
			}
			return PartitionLinux, `"linux" for labels other than esp and root`
		},
		doc: "esp, root or linux (default: esp for \"esp\", root for \"root\", else linux)"},
	{name: "size", kind: kindSize, dflt: int64(0), field: func(_ *Config, p *Partition) any { return &p.Size },
		doc: "partition size; 0 means the rest of the disk"},
	{name: "fs", kind: kindString, enum: filesystems, field: func(_ *Config, p *Partition) any { return &p.FS },
		derive: func(_ *Config, p *Partition) (any, string) {
			if p.Type == PartitionESP {
				return FilesystemVFAT, "vfat for the ESP"
			}
			return FilesystemExt4, "ext4 for partitions other than the ESP"
		},
		doc: "vfat or ext4 (default: vfat for the ESP, else ext4)"},
	{name: "label", kind: kindString, field: func(_ *Config, p *Partition) any { return &p.Label },
		derive: func(_ *Config, p *Partition) (any, string) { return p.Name, "the partition label" },
		doc:    "GPT partition name and filesystem label (default: the block label)"},
	{name: "verity", kind: kindBool, dflt: false, field: func(_ *Config, p *Partition) any { return &p.Verity },
		doc: "ext4 only: create the filesystem with the verity feature"},
}}

// variantAttrs are the attributes of a variant body itself.
var variantAttrs = []*attrSpec{
	{name: "name", kind: kindString, field: func(c *Config, _ *Partition) any { return &c.Name },
		derive: func(c *Config, _ *Partition) (any, string) {
			return upperFirst(c.Variant), "the variant label with its first letter upper-cased"
		},
		doc: "productmd variant uid and output directory name"},
	{name: "description", kind: kindString, dflt: "", field: func(c *Config, _ *Partition) any { return &c.Description },
		doc: "free text"},
	archesAttr,
}

// archesAttr is the variant's architecture list; it has no Config field
// (a Config is for one arch).
var archesAttr = &attrSpec{name: "arches", kind: kindStrings, enum: arches, unique: true, dflt: []string{ArchX86_64},
	doc: `architectures to build: "x86_64" and/or "aarch64"`}

// archSpec is the `arch "NAME" { }` override block.
var archSpec = &blockSpec{name: "arch", labeled: true, blocks: settingBlocks,
	doc: "settings for one architecture, overriding the enclosing block"}

// Body specifications for the three kinds of setting bodies.
var (
	variantSpec  = &blockSpec{name: "variant", labeled: true, attrs: variantAttrs, blocks: append(append([]*blockSpec{}, settingBlocks...), archSpec)}
	defaultsSpec = &blockSpec{name: "defaults", attrs: []*attrSpec{archesAttr}, blocks: append(append([]*blockSpec{}, settingBlocks...), archSpec)}
)

// composeSpec is the top-level compose block.
var composeSpec = &blockSpec{name: "compose", doc: "compose-level settings", attrs: []*attrSpec{
	{name: "product", kind: kindString, dflt: "Fedora", doc: "product name"},
	{name: "release", kind: kindString, required: true, doc: `release, e.g. "41" or "rawhide"`},
	{name: "type", kind: kindString, enum: composeTypes, dflt: "nightly", doc: "productmd compose type"},
}}

// leaf is one attribute in schema order with its address path.
type leaf struct {
	path  string // "composefs.enabled"; partitions use "disk.partition.*.size"
	block string // enclosing block path ("composefs"), "" for variant attributes
	spec  *attrSpec
}

// leaves lists every setting in schema order, with a "disk.partition"
// entry (nil spec) where the partitions go; partitionLeaves lists the
// attributes of one partition (path with "*" for the label).
var leaves, partitionLeaves = func() ([]leaf, []leaf) {
	var ls, ps []leaf
	for _, a := range variantAttrs {
		ls = append(ls, leaf{path: a.name, spec: a})
	}
	for _, b := range settingBlocks {
		for _, a := range b.attrs {
			ls = append(ls, leaf{path: b.name + "." + a.name, block: b.name, spec: a})
		}
		if b.name == "disk" {
			// The partitions come right after the disk attributes.
			ls = append(ls, leaf{path: "disk.partition", block: "disk"})
		}
	}
	for _, a := range partitionSpec.attrs {
		ps = append(ps, leaf{path: "disk.partition.*." + a.name, block: "disk.partition", spec: a})
	}
	return ls, ps
}()
