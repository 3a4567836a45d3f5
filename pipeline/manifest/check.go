package manifest

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/hashicorp/hcl/v2"

	"github.com/cfs-compose/cfs-compose/internal/fat"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
)

// References cited by the semantic checks.
const (
	refChange     = "https://fedoraproject.org/wiki/Changes/ComposefsAtomicDesktops"
	refOstreeGrub = "https://github.com/ostreedev/ostree/issues/3198"
	refKdump      = "https://bugzilla.redhat.com/show_bug.cgi?id=2284097"
	refComposefs  = "https://github.com/composefs/composefs"
	refSBAT       = "https://github.com/rhboot/shim/blob/main/SBAT.md"
	refUKI        = "https://uapi-group.org/specifications/specs/unified_kernel_image/"
	refDocs       = "docs/manifest-language.md#semantic-checks"
	refBootLayout = "docs/boot-layout.md"
)

const mib = 1 << 20

// gptOverhead is what a GPT disk needs besides its partitions: the first
// partition starts at 1 MiB, and the last MiB holds the backup GPT (the
// pipeline keeps partitions 1 MiB-aligned).
const gptOverhead = 2 * mib

// finding is one semantic problem on one variant and arch; identical
// findings from several variants or arches become one diagnostic.
type finding struct {
	sev     hcl.DiagnosticSeverity
	summary string
	detail  string
	ref     string
	subject *hcl.Range
	where   string // "coreos/x86_64"
}

// checker runs the semantic checks on one resolved variant and arch.
type checker struct {
	r     *resolved
	c     *Config
	opts  *Options
	found []finding
}

func (k *checker) add(sev hcl.DiagnosticSeverity, subject *hcl.Range, summary, ref, format string, args ...any) {
	k.found = append(k.found, finding{sev: sev, summary: summary, detail: fmt.Sprintf(format, args...), ref: ref, subject: subject, where: k.c.Variant + "/" + k.c.Arch})
}

func (k *checker) errorAt(path, summary, ref, format string, args ...any) {
	k.add(hcl.DiagError, k.r.rangeOf(path), summary, ref, format, args...)
}

func (k *checker) warnAt(path, summary, ref, format string, args ...any) {
	k.add(hcl.DiagWarning, k.r.rangeOf(path), summary, ref, format, args...)
}

// check runs every semantic check on a resolved variant and arch.
func check(r *resolved, opts *Options) []finding {
	k := &checker{r: r, c: r.cfg, opts: opts}
	k.required()
	if len(r.missing) > 0 {
		return k.found
	}
	k.composefs()
	k.rootfs()
	k.kernel()
	k.deploy()
	k.boot()
	k.keys()
	k.archPaths()
	k.disk()
	k.names()
	k.source()
	return k.found
}

func (k *checker) required() {
	for _, path := range k.r.missing {
		switch path {
		case "source.image":
			k.errorAt(path, "Missing source image", "",
				"Variant %q has no source image on %s: set source { image = \"docker://...\" } in the variant (or in defaults).", k.c.Variant, k.c.Arch)
		case "disk.size":
			k.errorAt(path, "Missing disk size", "",
				"Variant %q has no disk size on %s: set disk { size = \"10GiB\" } in the variant or in defaults.", k.c.Variant, k.c.Arch)
		default:
			k.errorAt(path, "Missing setting", "", "Variant %q does not set %s on %s, and it has no default.", k.c.Variant, path, k.c.Arch)
		}
	}
}

func (k *checker) composefs() {
	c := k.c
	if !c.Composefs.Enabled {
		return
	}
	if c.Source.Kind == SourceOstree {
		k.errorAt("source.kind", "composefs on a classic ostree source", refChange,
			"composefs is enabled, but source.kind = \"ostree\". Fedora enables composefs only for bootable container images, not for classic ostree commits. Build from the bootable container image (kind = \"container\") or set composefs { enabled = false }.")
	}
	if c.Bootloader.Type == BootloaderOstreeGrub2 {
		k.errorAt("bootloader.type", "composefs with the ostree-grub2 bootloader", refOstreeGrub,
			"composefs is enabled, but bootloader.type = \"ostree-grub2\": ostree's grub2 integration breaks dual boot on composefs systems (ostree issue 3198). Use type = \"uki\" or \"systemd-boot\", or set composefs { enabled = false }.")
	}
	if c.Kernel.Kdump {
		k.warnAt("kernel.kdump", "kdump with composefs", refKdump,
			"kdump is enabled on a composefs root, which is known not to produce crash dumps (Red Hat bug 2284097). Verify crash dumps on this variant or set kernel { kdump = false }.")
	}
	root := k.partitionOfType(PartitionRoot)
	switch c.Composefs.Verity {
	case initconfig.VerityRequire:
		if root != nil && (root.FS != FilesystemExt4 || !root.Verity) {
			k.errorAt("composefs.verity", "verity = \"require\" without an fs-verity root filesystem", refChange,
				"composefs.verity = \"require\" makes overlayfs refuse every object without a matching fs-verity digest, so the root filesystem must support fs-verity: partition %q must have fs = \"ext4\" and verity = true (it has fs = %q, verity = %t).", root.Name, root.FS, root.Verity)
		}
	case initconfig.VerityEnable:
		if root != nil && (root.FS != FilesystemExt4 || !root.Verity) {
			k.warnAt("composefs.verity", "verity = \"enable\" has no effect", refComposefs,
				"composefs.verity = \"enable\" checks objects that carry fs-verity, but partition %q is not created with fs-verity (fs = %q, verity = %t), so no object will be checked. Set verity = true on it (fs = \"ext4\").", root.Name, root.FS, root.Verity)
		}
	}
	if c.Composefs.Signed {
		var missing []string
		if c.Signing.Key == "" {
			missing = append(missing, "signing { key }")
		}
		if c.SecureBoot.Key == "" {
			missing = append(missing, "secureboot { key }")
		}
		if c.SecureBoot.Cert == "" {
			missing = append(missing, "secureboot { cert }")
		}
		if len(missing) > 0 {
			k.errorAt("composefs.signed", "Signed composefs without keys", refChange,
				"composefs.signed = true binds the composefs digest to the boot chain: it needs an artifact signing key and Secure Boot keys, but %s %s not set.", strings.Join(missing, ", "), plural(len(missing), "is", "are"))
		}
		if !c.UKI.Enabled {
			k.errorAt("composefs.signed", "Signed composefs without a UKI", refUKI,
				"composefs.signed = true puts the composefs digest on the UKI command line so the Secure Boot signature covers it; it needs uki { enabled = true }.")
		}
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func (k *checker) partitionOfType(t string) *Partition {
	for i := range k.c.Disk.Partitions {
		if k.c.Disk.Partitions[i].Type == t {
			return &k.c.Disk.Partitions[i]
		}
	}
	return nil
}

// rootfs checks the declared root-level directories and anything else in
// the manifest that would create a root-level directory at runtime.
func (k *checker) rootfs() {
	for _, d := range k.c.Rootfs.ExtraDirs {
		name := strings.TrimPrefix(d, "/")
		if !strings.HasPrefix(d, "/") || name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
			k.errorAt("rootfs.extra_dirs", "Invalid root-level directory", refChange,
				"rootfs.extra_dirs lists root-level directories such as \"/data\"; %q is not one (a single path component after '/').", d)
			continue
		}
		if slices.Contains(StandardRootDirs, name) {
			k.warnAt("rootfs.extra_dirs", "Standard root-level directory declared", refChange,
				"%q is already part of the standard root of a bootable container image; it need not be listed in rootfs.extra_dirs.", d)
		}
	}
	for _, arg := range k.c.Kernel.Cmdline {
		key, val, ok := strings.Cut(arg, "=")
		if !ok || (key != "systemd.mount-extra" && key != "rd.systemd.mount-extra") {
			continue
		}
		parts := strings.Split(val, ":")
		if len(parts) < 2 {
			continue
		}
		top := rootComponent(parts[1])
		if top == "" || slices.Contains(StandardRootDirs, top) || slices.Contains(k.c.Rootfs.ExtraDirs, "/"+top) {
			continue
		}
		k.errorAt("kernel.cmdline", "Undeclared root-level directory", refChange,
			"The kernel argument %q mounts on %q, but /%s is not a standard root-level directory and is not declared. The root of a composefs system is read-only, so root-level directories cannot be created at runtime: add \"/%s\" to rootfs { extra_dirs }.", arg, parts[1], top, top)
	}
}

// rootComponent returns the first component of an absolute path.
func rootComponent(p string) string {
	if !strings.HasPrefix(p, "/") {
		return ""
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(filepath.Clean(p), "/"), "/")
	return first
}

func (k *checker) kernel() {
	for _, arg := range k.c.Kernel.Cmdline {
		key, _, _ := strings.Cut(arg, "=")
		switch {
		case strings.TrimSpace(arg) == "" || strings.ContainsAny(arg, "\n\r\x00"):
			k.errorAt("kernel.cmdline", "Invalid kernel argument", "",
				"Kernel argument %q is empty or holds a newline or NUL byte.", arg)
		case key == "root" || key == "composefs" || key == "ostree":
			k.errorAt("kernel.cmdline", "Kernel argument set by the pipeline", refDocs,
				"The kernel argument %q is set by the pipeline itself (the root partition and the composefs digest of each build); remove it from kernel.cmdline.", arg)
		}
	}
	if k.c.Initramfs.Source == InitramfsImage && len(k.c.Initramfs.Modules) > 0 {
		k.warnAt("initramfs.modules", "initramfs.modules ignored", refDocs,
			"initramfs.modules lists modules for the builtin initramfs, but initramfs.source = \"image\" uses the image's own initramfs unchanged; the list is ignored.")
	}
}

// deploy checks that the deployment backend can boot with the initramfs
// and boot loader chosen.
func (k *checker) deploy() {
	c := k.c
	if c.Deploy.Backend != BackendOstree {
		if c.Initramfs.Source == InitramfsImage {
			k.errorAt("initramfs.source", "The image's initramfs cannot boot the composefs backend", refBootLayout,
				"initramfs.source = \"image\" boots with the image's own initramfs, which cannot mount cfs-compose's root layout (composefs/images/<digest> or state/deploy/plain on the root partition) of deploy.backend = %q. Use source = \"builtin\", or deploy { backend = \"ostree\" }, whose ostree sysroot the image's initramfs (ostree-prepare-root) boots.", c.Deploy.Backend)
		}
		return
	}
	// Both initramfs sources boot the ostree sysroot: the image's own
	// (ostree-prepare-root) and cfs-init, which does prepare-root's work
	// itself, with composefs (the commit's digest pinned by composefs= on
	// the UKI's command line) or without (the deployment directory bound).
	switch c.Bootloader.Type {
	case BootloaderSystemdBoot:
		k.errorAt("bootloader.type", "systemd-boot with the ostree backend", refBootLayout,
			"bootloader.type = \"systemd-boot\" is not supported with deploy.backend = \"ostree\" for now: ostree writes its boot entries to /boot on the ext4 root partition, which systemd-boot cannot read without an EFI file system driver. Use type = \"uki\" (the firmware boots a UKI carrying the deployment's command line).")
	case BootloaderOstreeGrub2:
		k.errorAt("bootloader.type", "ostree-grub2 with the ostree backend", refBootLayout,
			"bootloader.type = \"ostree-grub2\" is not supported yet: the ostree backend writes BLS entries only (ostree's boot loader \"none\", as bootc sets it). Use type = \"uki\".")
	}
	if c.Composefs.Enabled && c.Composefs.Signed && c.Initramfs.Source != InitramfsImage {
		k.errorAt("composefs.signed", "Signed ostree commits with the builtin initramfs", refBootLayout,
			"composefs.signed = true with deploy.backend = \"ostree\" signs the commit for ostree-prepare-root in the image's own initramfs; cfs-init does not verify ostree commit signatures (it boots only the composefs digest the UKI's command line pins). Use initramfs { source = \"image\" } or signed = false.")
	} else if c.Composefs.Enabled && c.Composefs.Signed && c.Signing.OstreeKey == "" {
		k.errorAt("composefs.signed", "Signed composefs without an ostree signing key", refBootLayout,
			"composefs.signed = true with deploy.backend = \"ostree\" signs the commit, which carries the composefs digest, with ed25519 (ostree.sign.ed25519) and puts the public key into the initramfs for ostree-prepare-root: set signing { ostree_key = \"…\" } (openssl genpkey -algorithm ed25519 -out ostree.pem).")
	}
	if c.Composefs.Enabled && c.Composefs.Verity == initconfig.VerityRequire && c.Initramfs.Source == InitramfsImage {
		k.errorAt("composefs.verity", "verity = \"require\" with the ostree backend", refBootLayout,
			"composefs.verity = \"require\" is enforced by cfs-init; with deploy.backend = \"ostree\" the image's /usr/lib/ostree/prepare-root.conf decides, and the disk's ostree objects carry no fs-verity when it is written. Use verity = \"enable\" or \"none\".")
	}
	if !validStateroot(c.Deploy.Stateroot) {
		k.errorAt("deploy.stateroot", "Invalid stateroot", refBootLayout,
			"deploy.stateroot %q is not a valid ostree stateroot name: it must be 1 to 255 letters, digits, '_', '-' or '.', not starting with '.' or '-'.", c.Deploy.Stateroot)
	}
	for _, arg := range c.Kernel.Cmdline {
		if arg == "--" || strings.ContainsAny(arg, " \t") {
			k.errorAt("kernel.cmdline", "Kernel argument ostree cannot keep", refBootLayout,
				"Kernel argument %q cannot be used with deploy.backend = \"ostree\": ostree stores kernel arguments as single words in its boot entry and appends ostree= at the end, so arguments with white space and init arguments after \"--\" are not possible.", arg)
		}
	}
}

// validStateroot reports whether s is a stateroot name ostree accepts and
// a safe directory name (ostree/deploy/NAME).
func validStateroot(s string) bool {
	if s == "" || len(s) > 255 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

func (k *checker) boot() {
	c := k.c
	if !c.UKI.Enabled && c.Bootloader.Type != BootloaderOstreeGrub2 {
		k.errorAt("uki.enabled", "Bootloader needs a UKI", refUKI,
			"bootloader.type = %q boots a Unified Kernel Image, but uki.enabled = false.", c.Bootloader.Type)
	}
	if n := c.UKI.Name; n == "" || strings.ContainsAny(n, "/\\") || n == "." || n == ".." {
		k.errorAt("uki.name", "Invalid UKI name", refDocs,
			"uki.name %q must be a file base name (no '/'); the UKI is written as EFI/Linux/<name>.efi.", n)
	} else if strings.HasSuffix(strings.ToLower(n), ".efi") {
		k.errorAt("uki.name", "Invalid UKI name", refDocs,
			"uki.name %q must not end in .efi; the UKI is written as EFI/Linux/<name>.efi.", n)
	}
	for i, line := range strings.Split(c.UKI.SBAT, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		fields := strings.Split(line, ",")
		if len(fields) != 6 {
			k.errorAt("uki.sbat", "Invalid SBAT line", refSBAT,
				"SBAT line %d %q has %d fields; each line is component_name,component_generation,vendor_name,vendor_package_name,vendor_version,vendor_url.", i+1, line, len(fields))
			continue
		}
		if _, err := strconv.ParseUint(fields[1], 10, 32); err != nil {
			k.errorAt("uki.sbat", "Invalid SBAT line", refSBAT,
				"SBAT line %d %q has the generation %q; it must be a whole number.", i+1, line, fields[1])
		}
	}
	if c.Test.SecureBoot {
		if c.SecureBoot.Key == "" || c.SecureBoot.Cert == "" {
			k.errorAt("test.secureboot", "Secure Boot test without keys", refDocs,
				"test.secureboot = true boots with Secure Boot enforced, which needs the UKI signed: set secureboot { key, cert }.")
		}
		if !c.UKI.Enabled {
			k.errorAt("test.secureboot", "Secure Boot test without a UKI", refUKI,
				"test.secureboot = true boots the signed UKI; it needs uki { enabled = true }.")
		}
	}
}

func (k *checker) keys() {
	c := k.c
	if (c.SecureBoot.Key == "") != (c.SecureBoot.Cert == "") {
		path := "secureboot.key"
		if c.SecureBoot.Key == "" {
			path = "secureboot.cert"
		}
		k.errorAt(path, "Incomplete Secure Boot key pair", refDocs,
			"secureboot needs both key and cert (the db key and its certificate), or neither.")
	}
	if c.Signing.Key == "" && k.r.explicit("signing.pub") && c.Signing.Pub != "" {
		k.errorAt("signing.pub", "Signing public key without a private key", refDocs,
			"signing.pub is set but signing.key is not; the public key is only used to verify what signing.key signs.")
	}
}

// archHints are file-name fragments that give away the architecture of an
// EFI stub or a firmware file.
var archHints = map[string][]string{
	ArchX86_64:  {"x64", "x86", "ovmf", "amd64"},
	ArchAarch64: {"aa64", "aarch64", "arm64", "aavmf"},
}

// archPaths checks the per-arch files: an EFI stub and firmware are built
// for one architecture, so a multi-arch variant must set them per arch.
func (k *checker) archPaths() {
	c := k.c
	paths := map[string]string{"test.firmware": c.Test.Firmware, "test.firmware_vars": c.Test.FirmwareVars}
	if c.UKI.Stub != StubFromImage {
		paths["uki.stub"] = c.UKI.Stub
	}
	for _, path := range []string{"uki.stub", "test.firmware", "test.firmware_vars"} {
		p := paths[path]
		if p == "" {
			continue
		}
		if len(k.r.variant.arches) > 1 && !k.r.fromArchBlock(path) {
			k.errorAt(path, "Architecture-specific file set for every arch", refDocs,
				"%s is set for every architecture of this variant (%s), but %s is built for one architecture. Set it inside arch \"x86_64\" { } and arch \"aarch64\" { } blocks, or leave it to the default.", path, strings.Join(k.r.variant.arches, ", "), p)
			continue
		}
		base := strings.ToLower(filepath.Base(p))
		for arch, hints := range archHints {
			if arch == c.Arch {
				continue
			}
			for _, h := range hints {
				if strings.Contains(base, h) {
					k.errorAt(path, "File for the wrong architecture", refDocs,
						"%s = %q looks like a file for %s (%q in its name), but it is used for the %s build. Set the %s file inside arch %q { }.", path, p, arch, h, c.Arch, c.Arch, c.Arch)
					return
				}
			}
		}
	}
}

func (k *checker) disk() {
	c := k.c
	d := c.Disk
	if d.Size%mib != 0 {
		k.errorAt("disk.size", "Disk size not MiB-aligned", refDocs,
			"disk.size %s is not a whole number of MiB; partitions are 1 MiB-aligned.", FormatSize(d.Size))
	}
	if len(d.Formats) == 0 {
		k.errorAt("disk.formats", "No disk format", refDocs, "disk.formats is empty; list \"raw\" and/or \"qcow2\".")
	}
	var fixed int64
	var rest []string
	var labels []string
	for _, p := range d.Partitions {
		sizePath := "disk.partition." + p.Name + ".size"
		if p.Size%mib != 0 {
			k.errorAt(sizePath, "Partition size not MiB-aligned", refDocs,
				"partition %q has size %s, which is not a whole number of MiB; partitions are 1 MiB-aligned.", p.Name, FormatSize(p.Size))
		}
		if p.FS == FilesystemVFAT && p.Size > 0 && p.Size%mib == 0 && fat.CheckSize(p.Size) != nil {
			k.add(hcl.DiagError, k.rangeOfPart(p.Name, "size"), "Partition too small for FAT32", refDocs,
				"partition %q has fs = \"vfat\" and size %s; the disk stage formats it as FAT32, which needs at least %s.", p.Name, FormatSize(p.Size), FormatSize(minFATSize()))
		}
		if p.Size == 0 {
			rest = append(rest, p.Name)
			if len(rest) == 2 {
				k.add(hcl.DiagError, k.rangeOfPart(p.Name, "size"), "More than one partition fills the rest of the disk", refDocs,
					"Partitions %q and %q both have size 0 (the rest of the disk); at most one partition may. Give one of them a size.", rest[0], rest[1])
			}
		}
		fixed += p.Size
		if p.Verity && p.FS != FilesystemExt4 {
			k.add(hcl.DiagError, k.rangeOfPart(p.Name, "verity"), "fs-verity needs ext4", refDocs,
				"partition %q has verity = true but fs = %q; only ext4 partitions can be created with the verity feature.", p.Name, p.FS)
		}
		switch {
		case p.Type == PartitionESP && p.FS != FilesystemVFAT:
			k.add(hcl.DiagError, k.rangeOfPart(p.Name, "fs"), "EFI system partition must be vfat", refDocs,
				"partition %q is the ESP (type = \"esp\"), which UEFI firmware reads only as FAT: it needs fs = \"vfat\", not %q.", p.Name, p.FS)
		case p.Type == PartitionRoot && p.FS != FilesystemExt4:
			k.add(hcl.DiagError, k.rangeOfPart(p.Name, "fs"), "Root partition must be ext4", refDocs,
				"partition %q is the root partition (type = \"root\"); it holds the composefs object store and deployment and needs fs = \"ext4\", not %q.", p.Name, p.FS)
		}
		limit, what := 16, "an ext4 label holds at most 16 bytes"
		if p.FS == FilesystemVFAT {
			limit, what = 11, "a FAT volume label holds at most 11 bytes"
		}
		if len(p.Label) > limit {
			k.add(hcl.DiagError, k.rangeOfPart(p.Name, "label"), "Partition label too long", refDocs,
				"partition %q has label %q (%d bytes): %s.", p.Name, p.Label, len(p.Label), what)
		} else if len(utf16.Encode([]rune(p.Label))) > 36 {
			k.add(hcl.DiagError, k.rangeOfPart(p.Name, "label"), "Partition label too long", refDocs,
				"partition %q has label %q: a GPT partition name holds at most 36 UTF-16 code units.", p.Name, p.Label)
		} else if p.Label == "" {
			k.add(hcl.DiagError, k.rangeOfPart(p.Name, "label"), "Empty partition label", refDocs,
				"partition %q has an empty label; the initramfs finds partitions by label.", p.Name)
		}
		if slices.Contains(labels, p.Label) {
			k.add(hcl.DiagError, k.rangeOfPart(p.Name, "label"), "Duplicate partition label", refDocs,
				"Two partitions have the label %q; labels must be unique.", p.Label)
		}
		labels = append(labels, p.Label)
	}
	for _, t := range []string{PartitionESP, PartitionRoot} {
		var names []string
		for _, p := range d.Partitions {
			if p.Type == t {
				names = append(names, p.Name)
			}
		}
		switch {
		case len(names) == 0:
			k.errorAt("disk.size", fmt.Sprintf("No %s partition", t), refDocs,
				"The disk of variant %q has no partition with type = %q; it needs exactly one (declare partition %q { } in disk, usually in defaults).", c.Variant, t, t)
		case len(names) > 1:
			k.add(hcl.DiagError, k.rangeOfPart(names[1], "type"), fmt.Sprintf("More than one %s partition", t), refDocs,
				"Partitions %s all have type = %q; the disk needs exactly one.", quoteList(names), t)
		}
	}
	need := fixed + gptOverhead
	switch {
	case need > d.Size:
		k.errorAt("disk.size", "Partitions do not fit the disk", refDocs,
			"The partitions need %s (%s, plus %s for the GPT and alignment), but disk.size is %s.", FormatSize(need), partSizes(d.Partitions), FormatSize(gptOverhead), FormatSize(d.Size))
	case len(rest) > 0 && d.Size-need < mib:
		k.errorAt("disk.size", "No room for the rest partition", refDocs,
			"Partition %q has size 0 (the rest of the disk), but the other partitions (%s, plus %s for the GPT) leave less than 1MiB of the %s disk.", rest[0], partSizes(d.Partitions), FormatSize(gptOverhead), FormatSize(d.Size))
	case len(rest) == 1:
		if p := partNamed(d.Partitions, rest[0]); p != nil && p.FS == FilesystemVFAT && fat.CheckSize(d.Size-need) != nil {
			k.errorAt("disk.size", "Partition too small for FAT32", refDocs,
				"Partition %q has fs = \"vfat\" and size 0 (the rest of the disk), which leaves it %s (%s disk, minus %s, minus %s for the GPT); the disk stage formats it as FAT32, which needs at least %s.",
				p.Name, FormatSize(d.Size-need), FormatSize(d.Size), partSizes(d.Partitions), FormatSize(gptOverhead), FormatSize(minFATSize()))
		}
	}
}

func partNamed(ps []Partition, name string) *Partition {
	for i := range ps {
		if ps[i].Name == name {
			return &ps[i]
		}
	}
	return nil
}

// minFATSize is the smallest whole-MiB partition internal/fat can format
// as FAT32 (the disk stage's writer).
func minFATSize() int64 {
	size := int64(mib)
	for fat.CheckSize(size) != nil && size < 1<<30 {
		size += mib
	}
	return size
}

func partSizes(ps []Partition) string {
	var s []string
	for _, p := range ps {
		if p.Size > 0 {
			s = append(s, fmt.Sprintf("%s %s", p.Name, FormatSize(p.Size)))
		}
	}
	if len(s) == 0 {
		return "no fixed sizes"
	}
	return strings.Join(s, " + ")
}

// rangeOfPart is where a partition attribute was set, else the partition
// block header.
func (k *checker) rangeOfPart(label, attr string) *hcl.Range {
	path := "disk.partition." + label + "." + attr
	if k.r.explicit(path) {
		return k.r.rangeOf(path)
	}
	return k.r.partRange(label)
}

// names checks test.checks and lints.skip against the registries.
func (k *checker) names() {
	if k.opts.KnownChecks != nil {
		for _, n := range k.c.Test.Checks {
			if !knownCheck(n, k.opts.KnownChecks) {
				k.errorAt("test.checks", "Unknown check", refDocs,
					"test.checks names %q, which is not a known boot-test check (`cfs-compose test --list` lists them).%s", n, didYouMean(n, k.opts.KnownChecks))
			}
		}
	}
	if k.opts.KnownLints != nil {
		for _, n := range k.c.Lints.Skip {
			if !slices.Contains(k.opts.KnownLints, n) {
				k.errorAt("lints.skip", "Unknown lint", refDocs,
					"lints.skip names %q, which is not a known image lint.%s", n, didYouMean(n, k.opts.KnownLints))
			}
		}
	}
}

// knownCheck reports whether a test.checks entry names a known check: an
// exact name, a glob pattern (path.Match) matching at least one, or a
// "tag:NAME" selector (tags are checked when the boot test is planned).
func knownCheck(n string, known []string) bool {
	if slices.Contains(known, n) || strings.HasPrefix(n, "tag:") {
		return true
	}
	if strings.ContainsAny(n, "*?[") {
		for _, c := range known {
			if ok, err := path.Match(n, c); err == nil && ok {
				return true
			}
		}
	}
	return false
}

func (k *checker) source() {
	img := k.c.Source.Image
	if ref, ok := strings.CutPrefix(img, "docker://"); ok {
		last := ref[strings.LastIndex(ref, "/")+1:]
		if !strings.Contains(last, ":") && !strings.Contains(ref, "@") {
			k.warnAt("source.image", "Image reference without a tag", refDocs,
				"source.image %q has no tag or digest, so \"latest\" is pulled; name the tag (\":stable\", \":41\") or pin a digest (\"@sha256:...\").", img)
		}
	}
}

// groupFindings turns findings into diagnostics, merging identical ones
// from several variants and arches into one that lists them.
func groupFindings(fs []finding) hcl.Diagnostics {
	type key struct {
		sev             hcl.DiagnosticSeverity
		summary, detail string
		subject         string
	}
	var order []key
	where := make(map[key][]string)
	first := make(map[key]finding)
	for _, f := range fs {
		kk := key{f.sev, f.summary, f.detail + f.ref, ""}
		if f.subject != nil {
			kk.subject = f.subject.String()
		}
		if _, ok := where[kk]; !ok {
			order = append(order, kk)
			first[kk] = f
		}
		where[kk] = appendNew(where[kk], f.where)
	}
	// Report in source order, so problems read top to bottom.
	slices.SortStableFunc(order, func(a, b key) int {
		ra, rb := first[a].subject, first[b].subject
		switch {
		case ra == nil || rb == nil:
			return 0
		case ra.Filename != rb.Filename:
			return strings.Compare(ra.Filename, rb.Filename)
		}
		return ra.Start.Byte - rb.Start.Byte
	})
	var diags hcl.Diagnostics
	for _, kk := range order {
		f := first[kk]
		detail := f.detail + "\n\nApplies to: " + strings.Join(where[kk], ", ") + "."
		if f.ref != "" {
			detail += "\nReference: " + f.ref
		}
		diags = append(diags, &hcl.Diagnostic{Severity: f.sev, Summary: f.summary, Detail: detail, Subject: f.subject})
	}
	return diags
}
