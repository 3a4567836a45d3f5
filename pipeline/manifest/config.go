package manifest

import "time"

// This file is the contract between the manifest loader and everything
// downstream (planner, stages, explain). A [Config] is the effective,
// fully resolved configuration of one variant for one architecture: defaults,
// then the variant, then the variant's `arch "A" { }` override, with
// variables and locals evaluated, sizes and durations parsed, relative paths
// made absolute against the directory of the manifest file that set them,
// and every optional value made explicit (no zero value means "unset" unless
// documented). Stages read only this; they never see HCL.
//
// Values are plain data and JSON-serializable; the json tags are the
// canonical field names used by `explain --format=json` and by stage plans.

// Arch names as Fedora spells them: the names of [arch.X86_64] and
// [arch.Aarch64] (internal/arch), as constants.
const (
	ArchX86_64  = "x86_64"
	ArchAarch64 = "aarch64"
)

// Source kinds (source { kind = ... }).
const (
	SourceContainer = "container" // a bootable container image (bootc)
	SourceOstree    = "ostree"    // a classic ostree commit encapsulated in a container
)

// Initramfs sources (initramfs { source = ... }).
const (
	InitramfsBuiltin = "builtin" // cfs-compose's own static Go /init plus modules from the image
	InitramfsImage   = "image"   // the image's own /usr/lib/modules/<kver>/initramfs.img, unchanged
)

// Bootloaders (bootloader { type = ... }).
const (
	BootloaderUKI         = "uki"          // firmware boots the UKI directly (EFI/BOOT/BOOT*.EFI)
	BootloaderSystemdBoot = "systemd-boot" // systemd-boot picks UKIs from EFI/Linux
	BootloaderOstreeGrub2 = "ostree-grub2" // ostree's grub2 integration; incompatible with composefs
)

// Deployment backends (deploy { backend = ... }).
const (
	// BackendComposefs is cfs-compose's own layout: the composefs
	// repository (or the plain tree) on the root partition, booted by the
	// builtin initramfs (cfs-init); docs/boot-layout.md.
	BackendComposefs = "composefs"
	// BackendOstree is an ostree sysroot (bare repository, stateroot and
	// one deployment, as bootc installs it), booted by the image's own
	// initramfs (ostree-prepare-root).
	BackendOstree = "ostree"
)

// Config is the resolved configuration of one variant on one arch.
type Config struct {
	Variant     string `json:"variant"`     // the variant block label, e.g. "coreos"
	Name        string `json:"name"`        // productmd variant uid and output directory name, e.g. "CoreOS" (default: label with first letter upper-cased)
	Description string `json:"description"` // free text
	Arch        string `json:"arch"`        // "x86_64" or "aarch64"

	Source     Source     `json:"source"`
	Composefs  Composefs  `json:"composefs"`
	Deploy     Deploy     `json:"deploy"`
	Kernel     Kernel     `json:"kernel"`
	Initramfs  Initramfs  `json:"initramfs"`
	Bootloader Bootloader `json:"bootloader"`
	UKI        UKI        `json:"uki"`
	SecureBoot SecureBoot `json:"secureboot"`
	Signing    Signing    `json:"signing"`
	Rootfs     Rootfs     `json:"rootfs"`
	Lints      Lints      `json:"lints"`
	Disk       Disk       `json:"disk"`
	Test       Test       `json:"test"`
}

// Source says where the bootable container image comes from.
type Source struct {
	// Image is a containers-image reference with its transport:
	// "docker://REF", "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]", "dir:DIR".
	// Local paths (oci:, oci-archive:, dir:) are absolute after resolution.
	Image string `json:"image"`
	// Policy is the absolute path of a containers-policy.json file; empty
	// means the user's default policy ($HOME/.config/containers/policy.json,
	// then /etc/containers/policy.json; accept-anything when neither exists
	// for local transports only).
	Policy string `json:"policy,omitempty"`
	// SignedBy is the absolute path of a cosign/sigstore public key. When set,
	// the image must carry a sigstore signature by that key (a shortcut that
	// generates a sigstoreSigned policy requirement).
	SignedBy string `json:"signed_by,omitempty"`
	// Kind is SourceContainer (default) or SourceOstree.
	Kind string `json:"kind"`
	// Kernel selects the kernel version (directory under /usr/lib/modules)
	// when the image ships several; empty means "the only one".
	Kernel string `json:"kernel,omitempty"`
}

// Composefs holds the composefs settings. Enabled is the contingency switch.
type Composefs struct {
	Enabled bool   `json:"enabled"` // default true
	Verity  string `json:"verity"`  // initconfig.VerityNone (default), VerityEnable or VerityRequire: the one set of verity modes, the boot contract's
	Signed  bool   `json:"signed"`  // bind the digest with a signature checked by the initramfs
	// FormatVersion is the minimum composefs image format version (0 or 1,
	// default 0; mkcomposefs --min-version). The maximum is always 1.
	FormatVersion int `json:"format_version"`
}

// Deploy selects how the root partition is laid out and booted.
type Deploy struct {
	// Backend is BackendComposefs (default) or BackendOstree.
	Backend string `json:"backend"`
	// Stateroot is the ostree stateroot ("--os") of the ostree backend
	// (default "default", bootc's); the composefs backend ignores it.
	Stateroot string `json:"stateroot"`
}

// Kernel holds kernel settings.
type Kernel struct {
	Cmdline []string `json:"cmdline"` // extra kernel arguments, in order (the pipeline adds root/composefs arguments)
	Kdump   bool     `json:"kdump"`   // kdump enabled (warned about with composefs)
}

// Initramfs says how the initramfs is made.
type Initramfs struct {
	Source  string   `json:"source"`  // InitramfsBuiltin (default) or InitramfsImage
	Modules []string `json:"modules"` // extra module names to include with the builtin initramfs (dependencies are resolved)
}

// Bootloader selects the boot path.
type Bootloader struct {
	Type string `json:"type"` // BootloaderUKI (default), BootloaderSystemdBoot or BootloaderOstreeGrub2
}

// UKI holds Unified Kernel Image settings.
type UKI struct {
	Enabled bool `json:"enabled"` // default true
	// Stub is "image" (default: /usr/lib/systemd/boot/efi/linux{x64,aa64}.efi.stub
	// from the image) or an absolute path to an EFI stub on the build host.
	Stub string `json:"stub"`
	// SBAT is extra SBAT CSV lines appended to the stub's .sbat (may be empty).
	SBAT string `json:"sbat"`
	// Name is the UKI file base name under EFI/Linux (default "<variant>").
	Name string `json:"name"`
}

// SecureBoot holds the Secure Boot (Authenticode) signing key; both empty
// means the UKI is not Authenticode-signed.
type SecureBoot struct {
	Key  string `json:"key,omitempty"`  // absolute path of the db private key (PEM)
	Cert string `json:"cert,omitempty"` // absolute path of the db certificate (PEM)
}

// Signing holds the artifact (cosign-compatible) signing key; empty means
// artifacts are not signed.
type Signing struct {
	Key string `json:"key,omitempty"` // absolute path of cosign.key (encrypted, passphrase from CFS_SIGNING_PASSWORD)
	Pub string `json:"pub,omitempty"` // absolute path of cosign.pub (default: Key with .key replaced by .pub)
	// OstreeKey is the absolute path of the ed25519 key that signs ostree
	// commits (composefs.signed with deploy.backend = "ostree"): PKCS#8
	// PEM ("openssl genpkey -algorithm ed25519") or ostree's base64
	// secret-key text.
	OstreeKey string `json:"ostree_key,omitempty"`
}

// Rootfs holds root filesystem layout rules.
type Rootfs struct {
	// ExtraDirs are root-level directories ("/data") the OS needs beyond the
	// standard set; on a composefs root they cannot be created at runtime.
	ExtraDirs []string `json:"extra_dirs"`
}

// Lints configures image lints.
type Lints struct {
	Skip []string `json:"skip"` // lint names to skip
}

// Disk describes the disk images.
type Disk struct {
	Size       int64       `json:"size"`       // bytes (from "10GiB")
	Formats    []string    `json:"formats"`    // "raw" and/or "qcow2"; default ["raw"]
	Partitions []Partition `json:"partitions"` // in manifest order, merged by label
}

// Partition is one GPT partition.
type Partition struct {
	Name   string `json:"name"`   // block label: "esp", "root", ...
	Type   string `json:"type"`   // "esp", "root", "linux" (default: esp for "esp", root for "root", else linux)
	Size   int64  `json:"size"`   // bytes; 0 means "the rest of the disk" (at most one partition)
	FS     string `json:"fs"`     // "vfat" or "ext4" (default: vfat for esp, ext4 otherwise)
	Label  string `json:"label"`  // GPT partition name / filesystem label (default: Name)
	Verity bool   `json:"verity"` // ext4 only: create with the verity feature
}

// Test describes the boot test.
type Test struct {
	Boot    bool          `json:"boot"`    // boot-test the disk image as the last stage
	Timeout time.Duration `json:"timeout"` // per boot; default 5m
	Checks  []string      `json:"checks"`  // check names; empty means every check that applies
	Memory  int64         `json:"memory"`  // guest RAM in bytes; default 1GiB
	// Firmware and FirmwareVars are absolute paths of the UEFI code and
	// variable-template files; empty means the testbed's per-arch default.
	Firmware     string `json:"firmware,omitempty"`
	FirmwareVars string `json:"firmware_vars,omitempty"`
	SecureBoot   bool   `json:"secureboot"` // boot with Secure Boot enforced (needs secureboot keys)
	// Reboot boots the disk a second time through the same overlay
	// (persist-reboot: /etc, /var and the machine-id survive a reboot).
	Reboot bool `json:"reboot"`
}

// Compose holds compose-level settings from the top-level `compose { }`
// block; they name the compose directory (Fedora-41-20261127.n.0).
type Compose struct {
	Product string `json:"product"` // default "Fedora"
	Release string `json:"release"` // e.g. "41"; required
	// Type is the productmd compose type: "production" (no suffix),
	// "nightly" (.n), "test" (.t) or "ci" (.ci); default "nightly".
	Type string `json:"type"`
}
