package artifacts

import (
	"fmt"
	"strings"
)

// This file holds the schemas of the artifacts stages hand to each other,
// so that a stage can read another's output without importing it. Stage
// output names (the name part of "kind/name" inputs) are listed with each
// producing stage in docs/stages.md.

// ImageAnalysisSchema is the schema version of [ImageAnalysis].
const ImageAnalysisSchema = 1

// ImageAnalysis is what the source stage learns about a bootable container
// image; later stages read it (the "analysis" output, JSON).
type ImageAnalysis struct {
	Schema int    `json:"schema"`
	Arch   string `json:"arch"` // the arch being built (Fedora spelling)
	// Kernels lists every kernel version found (directories of
	// /usr/lib/modules holding a vmlinuz), sorted.
	Kernels []string `json:"kernels"`
	// Kernel is the kernel chosen (the only one, or source.kernel); nil
	// when the image has none.
	Kernel *ImageKernel `json:"kernel"`
	// OSRelease holds the os-release fields (/usr/lib/os-release, else
	// /etc/os-release); nil when neither exists.
	OSRelease     map[string]string `json:"os_release"`
	OSReleasePath string            `json:"os_release_path,omitempty"`
	// PrepareRoot describes /usr/lib/ostree/prepare-root.conf.
	PrepareRoot PrepareRoot `json:"prepare_root"`
	// Bootc reports the containers.bootc=1 label.
	Bootc  bool              `json:"bootc"`
	Labels map[string]string `json:"labels,omitempty"`
	// Stub is the systemd EFI stub for the arch; nil when absent.
	Stub *ImageBinary `json:"stub"`
	// Binaries are the /usr/bin programs whose ELF machine was checked.
	Binaries []ImageBinary `json:"binaries"`
}

// ImageKernel is one kernel of the image.
type ImageKernel struct {
	Version string `json:"version"` // directory name under /usr/lib/modules
	Vmlinuz string `json:"vmlinuz"` // absolute path in the image
	// Initramfs is the image's initramfs.img path; empty when absent.
	Initramfs string `json:"initramfs,omitempty"`
	// ModulesDir is /usr/lib/modules/<version>.
	ModulesDir string `json:"modules_dir"`
	// ModulesDep reports whether modules.dep exists (needed to resolve
	// module dependencies for the builtin initramfs).
	ModulesDep bool `json:"modules_dep"`
	// Modules counts the kernel modules (*.ko, *.ko.xz, *.ko.zst, *.ko.gz).
	Modules int `json:"modules"`
	// Format is the file format of vmlinuz: "pe" (an EFI-stub kernel),
	// "arm64-image", "bzimage" or "elf".
	Format  string `json:"format"`
	Machine string `json:"machine"` // "x86_64" or "aarch64"
	Size    int64  `json:"size"`
}

// ImageBinary is one executable whose machine was checked.
type ImageBinary struct {
	Path    string `json:"path"`
	Format  string `json:"format"` // "elf" or "pe"
	Machine string `json:"machine"`
}

// PrepareRoot is the image's ostree prepare-root configuration.
type PrepareRoot struct {
	Path    string `json:"path,omitempty"` // empty when the file is absent
	Present bool   `json:"present"`
	// Composefs is the raw [composefs] enabled value ("yes", "no",
	// "maybe", "signed", "verity"), empty when unset.
	Composefs string `json:"composefs,omitempty"`
	// Sections holds every key, by section.
	Sections map[string]map[string]string `json:"sections,omitempty"`
	// Override is set when the manifest's composefs setting disagrees
	// with the image's and the generated initramfs must carry its own
	// prepare-root.conf.
	Override bool `json:"override"`
}

// DiskLayoutSchema is the schema version of [DiskLayout].
const DiskLayoutSchema = 1

// DiskLayout is the disk stage's "layout" output: where everything is on
// the disk image, for verification and boot tests.
type DiskLayout struct {
	Schema     int             `json:"schema"`
	Size       int64           `json:"size"`
	SectorSize int             `json:"sector_size"`
	DiskGUID   string          `json:"disk_guid"`
	Partitions []DiskPartition `json:"partitions"`
	// ComposefsDigest is the image under composefs/images/ on the root
	// partition; empty when composefs is disabled (plain deployment).
	ComposefsDigest string `json:"composefs_digest,omitempty"`
	ESPBootPath     string `json:"esp_boot_path"` // EFI/BOOT/BOOTX64.EFI or BOOTAA64.EFI
	ESPUKIPath      string `json:"esp_uki_path"`  // EFI/Linux/<name>.efi
}

// DiskPartition is one partition of a [DiskLayout].
type DiskPartition struct {
	Number   int    `json:"number"`
	Name     string `json:"name"`
	Label    string `json:"label"`
	Type     string `json:"type"` // esp, root, linux
	FS       string `json:"fs"`   // vfat, ext4
	TypeGUID string `json:"type_guid"`
	GUID     string `json:"guid"`
	FSID     string `json:"fs_id"`
	Offset   int64  `json:"offset"` // bytes
	Size     int64  `json:"size"`   // bytes
}

// BootTestSchema is the schema version of [BootTestResults].
const BootTestSchema = 1

// BootTestResults is the boottest stage's "results" output (JSON): one
// boot of a disk image and the checks evaluated against it.
type BootTestResults struct {
	Schema int    `json:"schema"`
	Target string `json:"target"` // <Product>-<Name>-<Release>.<arch>
	Arch   string `json:"arch"`
	// Result is the worst check result: PASS, FAIL, WARN, or SKIP when
	// every check was skipped.
	Result string `json:"result"`
	// Outcome is how the boot ended: powered-off, refused, init-fatal,
	// panic, timeout or qemu-error; Reason is the deciding console line or
	// message.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason"`
	Accel   string `json:"accel"` // tcg or kvm
	// VerdictSeconds is the time from QEMU's start to the agent's report
	// end (or the refusal); QEMUSeconds to QEMU's exit.
	VerdictSeconds float64 `json:"verdict_seconds"`
	QEMUSeconds    float64 `json:"qemu_seconds"`
	// Features are the testbed features of the target (composefs or
	// plain, uefi, secureboot, composefs-signed).
	Features []string `json:"features"`
	// ComposefsDigest is the digest the boot had to mount (the composefs
	// stage's), empty without composefs.
	ComposefsDigest string `json:"composefs_digest,omitempty"`
	// Facts are what the guest agent reported (kernel, mode, Secure Boot
	// state, root mount, …).
	Facts map[string]string `json:"facts,omitempty"`
	// FirstBootFacts and FirstBootVerdictSeconds are the first boot's
	// when the disk was booted twice (test.reboot); the fields above are
	// the second boot's.
	FirstBootFacts          map[string]string `json:"first_boot_facts,omitempty"`
	FirstBootVerdictSeconds float64           `json:"first_boot_verdict_seconds,omitempty"`
	// Checks are the host checks, in name order.
	Checks []BootTestCheck `json:"checks"`
	// GuestChecks are the agent's own results, in report order.
	GuestChecks []BootTestCheck `json:"guest_checks,omitempty"`
	// ProtocolErrors lists malformed or out-of-order agent lines.
	ProtocolErrors []string `json:"protocol_errors,omitempty"`
}

// BootTestCheck is one check's result.
type BootTestCheck struct {
	Name        string   `json:"name"`
	Result      string   `json:"result"` // PASS, FAIL, SKIP or WARN
	Description string   `json:"description,omitempty"`
	Seconds     float64  `json:"seconds,omitempty"`
	Output      []string `json:"output,omitempty"`
}

// ComposefsDigest is the composefs stage's "digest" output (JSON): the
// composefs image's fs-verity digest, the value every consumer (the UKI's
// command line, the root partition's image name, the boot test's
// expectation) uses.
type ComposefsDigest struct {
	// Digest is the fs-verity SHA-256 of the image: 64 lower-case hex
	// digits.
	Digest string `json:"digest"`
	// Version is the image format version written (0 or 1).
	Version int `json:"version"`
}

// Validate checks the digest's form.
func (d *ComposefsDigest) Validate() error {
	if !IsHexSHA256(d.Digest) {
		return fmt.Errorf("composefs digest %q is not 64 lower-case hex digits", d.Digest)
	}
	if d.Version < 0 || d.Version > 1 {
		return fmt.Errorf("composefs image format version %d: want 0 or 1", d.Version)
	}
	return nil
}

// OstreeDeploymentSchema is the schema version of [OstreeDeployment].
const OstreeDeploymentSchema = 1

// OstreeDeployment is the ostree stage's "deployment" output (JSON): the
// commit written into the sysroot's repository and the deployment of it,
// for the stages that boot it (the UKI's command line) and for people.
// Paths are relative to the sysroot (the root partition).
type OstreeDeployment struct {
	Schema int `json:"schema"`
	// Commit is the commit checksum (64 lower-case hex digits); Ref the
	// repository ref pointing at it besides ostree's own ostree/1/1/0.
	Commit string `json:"commit"`
	Ref    string `json:"ref"`
	// Stateroot is the deployment's stateroot ("--os").
	Stateroot string `json:"stateroot"`
	// Dir is the deployment directory, ostree/deploy/STATEROOT/deploy/COMMIT.0.
	Dir string `json:"dir"`
	// BootCsum names boot/ostree/STATEROOT-BOOTCSUM (hex SHA-256 of the
	// kernel, initramfs and device tree).
	BootCsum      string `json:"boot_csum"`
	KernelVersion string `json:"kernel_version"`
	// Entry is the BLS entry, boot/loader.1/entries/ostree-1.conf.
	Entry string `json:"entry"`
	// Cmdline is the entry's kernel command line, ostree= included: the
	// UKI boots straight into the deployment with it.
	Cmdline string `json:"cmdline"`
	// ComposefsDigest is the fs-verity digest of the deployment's
	// .ostree.cfs (the commit's ostree.composefs.digest.v0); empty without
	// composefs.
	ComposefsDigest string `json:"composefs_digest,omitempty"`
	// Origin is the deployment's origin file.
	Origin string `json:"origin"`
	// SignedBy is the public key (base64, as ostree writes key IDs) whose
	// ed25519 signature (ostree.sign.ed25519) the commit carries; empty
	// for an unsigned commit.
	SignedBy string `json:"signed_by,omitempty"`
}

// Validate checks the schema version, the checksums and that the command
// line names the deployment.
func (d *OstreeDeployment) Validate() error {
	if d.Schema != OstreeDeploymentSchema {
		return fmt.Errorf("ostree deployment schema %d, want %d", d.Schema, OstreeDeploymentSchema)
	}
	if !IsHexSHA256(d.Commit) || !IsHexSHA256(d.BootCsum) {
		return fmt.Errorf("ostree deployment: commit %q and boot checksum %q must be 64 lower-case hex digits", d.Commit, d.BootCsum)
	}
	if d.ComposefsDigest != "" && !IsHexSHA256(d.ComposefsDigest) {
		return fmt.Errorf("ostree deployment: composefs digest %q is not 64 lower-case hex digits", d.ComposefsDigest)
	}
	if d.Stateroot == "" || d.Dir == "" || d.Entry == "" || d.KernelVersion == "" {
		return fmt.Errorf("ostree deployment: stateroot, dir, entry and kernel version must be set")
	}
	if !strings.Contains(" "+d.Cmdline+" ", " ostree=/ostree/boot.") {
		return fmt.Errorf("ostree deployment: command line %q has no ostree= argument", d.Cmdline)
	}
	return nil
}

// IsHexSHA256 reports whether s is a SHA-256 in 64 lower-case hex digits.
func IsHexSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Validate checks the analysis's schema version.
func (a *ImageAnalysis) Validate() error {
	if a.Schema != ImageAnalysisSchema {
		return fmt.Errorf("image analysis schema %d, want %d", a.Schema, ImageAnalysisSchema)
	}
	return nil
}

// Validate checks the layout's schema version.
func (l *DiskLayout) Validate() error {
	if l.Schema != DiskLayoutSchema {
		return fmt.Errorf("disk layout schema %d, want %d", l.Schema, DiskLayoutSchema)
	}
	return nil
}

// Validate checks the results' schema version.
func (r *BootTestResults) Validate() error {
	if r.Schema != BootTestSchema {
		return fmt.Errorf("boot test results schema %d, want %d", r.Schema, BootTestSchema)
	}
	return nil
}
