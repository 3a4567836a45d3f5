// Package arch describes the CPU architectures cfs-compose builds for:
// every arch-specific fact (the names each ecosystem uses, the EFI file
// names, the PE and ELF machines, the root partition type, how QEMU runs a
// guest and which firmware it boots) lives here once, and every stage, the
// testbed, the fixtures and cfs-init read it from here.
//
// An [*Arch] is one of the package's values ([X86_64], [Aarch64]); compare
// pointers or names. It encodes as its Fedora name in JSON and text, so
// configs and cache keys hold "x86_64", not a struct.
package arch

import (
	"debug/elf"
	"debug/pe"
	"fmt"
	"strings"
)

// Arch is one supported architecture.
type Arch struct {
	// Name is the Fedora and uname spelling: x86_64, aarch64.
	Name string
	// GOARCH is Go's spelling (and cfs-init's binary suffix): amd64, arm64.
	GOARCH string
	// Debian is Debian's architecture name: amd64, arm64.
	Debian string
	// OCIVariant is the OCI platform variant ("" or "v8").
	OCIVariant string
	// PEMachine is the machine of the arch's EFI binaries.
	PEMachine uint16
	// ELFMachine is the machine of the arch's Linux binaries.
	ELFMachine elf.Machine
	// EFIBootFile is the removable-media boot file on the ESP
	// (EFI/BOOT/<EFIBootFile>).
	EFIBootFile string
	// EFIStub is systemd's EFI stub for UKIs
	// (/usr/lib/systemd/boot/efi/<EFIStub>).
	EFIStub string
	// SystemdBoot is systemd-boot's EFI binary
	// (/usr/lib/systemd/boot/efi/<SystemdBoot>).
	SystemdBoot string
	// RootPartitionType is the Discoverable Partitions Specification
	// root partition type GUID (lower case).
	RootPartitionType string
	// Console is the serial console device QEMU's machine provides.
	Console string
	// QEMU is the system emulator binary; QEMUMachine and QEMUCPU the
	// machine and CPU it runs guests with under TCG (QEMUCPU "" means
	// QEMU's default; aarch64's plain "max" is slow under TCG).
	QEMU        string
	QEMUMachine string
	QEMUCPU     string
	// Firmware lists the UEFI (code, variable template) file names to look
	// for, in order of preference, without and with Secure Boot.
	Firmware, SecureBootFirmware [][2]string
	// SecureBootSMM says the Secure Boot firmware needs SMM and a secure
	// code flash (OVMF's secboot builds).
	SecureBootSMM bool
}

// The supported architectures.
var (
	X86_64 = &Arch{
		Name: "x86_64", GOARCH: "amd64", Debian: "amd64",
		PEMachine: pe.IMAGE_FILE_MACHINE_AMD64, ELFMachine: elf.EM_X86_64,
		EFIBootFile: "BOOTX64.EFI", EFIStub: "linuxx64.efi.stub", SystemdBoot: "systemd-bootx64.efi",
		RootPartitionType: "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
		Console:           "ttyS0",
		QEMU:              "qemu-system-x86_64", QEMUMachine: "q35",
		Firmware:           [][2]string{{"OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"}, {"OVMF_CODE.fd", "OVMF_VARS.fd"}},
		SecureBootFirmware: [][2]string{{"OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.fd"}, {"OVMF_CODE.secboot.fd", "OVMF_VARS.fd"}},
		SecureBootSMM:      true,
	}
	Aarch64 = &Arch{
		Name: "aarch64", GOARCH: "arm64", Debian: "arm64", OCIVariant: "v8",
		PEMachine: pe.IMAGE_FILE_MACHINE_ARM64, ELFMachine: elf.EM_AARCH64,
		EFIBootFile: "BOOTAA64.EFI", EFIStub: "linuxaa64.efi.stub", SystemdBoot: "systemd-bootaa64.efi",
		RootPartitionType: "b921b045-1df0-41c3-af44-4c6f280d3fae",
		Console:           "ttyAMA0",
		QEMU:              "qemu-system-aarch64", QEMUMachine: "virt", QEMUCPU: "cortex-a57",
		Firmware: [][2]string{{"AAVMF_CODE.no-secboot.fd", "AAVMF_VARS.fd"}, {"AAVMF_CODE.fd", "AAVMF_VARS.fd"}},
		// bookworm's AAVMF_CODE.fd enforces Secure Boot once keys are enrolled
		SecureBootFirmware: [][2]string{{"AAVMF_CODE.secboot.fd", "AAVMF_VARS.fd"}, {"AAVMF_CODE.fd", "AAVMF_VARS.fd"}},
	}
)

// All returns the supported architectures, x86_64 first.
func All() []*Arch { return []*Arch{X86_64, Aarch64} }

// Names returns the Fedora names of the supported architectures.
func Names() []string { return []string{X86_64.Name, Aarch64.Name} }

// Lookup returns the architecture named s in any spelling it knows
// (x86_64, amd64; aarch64, arm64).
func Lookup(s string) (*Arch, error) {
	for _, a := range All() {
		if s == a.Name || s == a.GOARCH || s == a.Debian {
			return a, nil
		}
	}
	return nil, fmt.Errorf("unsupported architecture %q (want %s)", s, strings.Join(Names(), " or "))
}

// MustLookup is [Lookup] for names known to be valid (constants, values a
// manifest has already checked); it panics otherwise.
func MustLookup(s string) *Arch {
	a, err := Lookup(s)
	if err != nil {
		panic(err)
	}
	return a
}

// String returns the Fedora name.
func (a *Arch) String() string { return a.Name }

// KernelConsole returns the kernel argument for the serial console
// ("console=ttyS0").
func (a *Arch) KernelConsole() string { return "console=" + a.Console }

// MarshalText encodes the Fedora name.
func (a *Arch) MarshalText() ([]byte, error) { return []byte(a.Name), nil }

// UnmarshalText decodes any known spelling.
func (a *Arch) UnmarshalText(b []byte) error {
	v, err := Lookup(string(b))
	if err != nil {
		return err
	}
	*a = *v
	return nil
}
