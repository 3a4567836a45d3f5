package testbed

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// ErrNoFirmware means no UEFI firmware files were found.
var ErrNoFirmware = errors.New("testbed: no UEFI firmware found")

// Firmware is a UEFI firmware: a read-only code flash and the variable
// store template that is copied for every boot.
type Firmware struct {
	Code         string // read-only code image (OVMF_CODE_4M.fd, AAVMF_CODE.fd, …)
	VarsTemplate string // variable store to copy per boot (may carry enrolled keys)
	// SMM marks an x86_64 Secure Boot build (OVMF_CODE_4M.secboot.fd): it
	// only runs with SMM enabled and the code flash marked secure.
	SMM bool
}

// FirmwareDirs returns the directories searched for firmware: those in
// $CFS_FIRMWARE_DIRS (colon-separated), then extra, then Debian's
// /usr/share/OVMF, /usr/share/AAVMF and /usr/share/qemu-efi-aarch64.
func FirmwareDirs(extra ...string) []string {
	var dirs []string
	if env := os.Getenv("CFS_FIRMWARE_DIRS"); env != "" {
		dirs = append(dirs, strings.Split(env, ":")...)
	}
	dirs = append(dirs, extra...)
	return append(dirs, "/usr/share/OVMF", "/usr/share/AAVMF", "/usr/share/qemu-efi-aarch64")
}

// FindFirmware returns the first complete firmware for arch ("x86_64" or
// "aarch64") in dirs (see [FirmwareDirs]). With secureBoot it returns a
// Secure Boot build; its VarsTemplate holds no keys yet (enroll them with
// [EnrollSecureBoot] and set VarsTemplate to the result).
func FindFirmware(archName string, secureBoot bool, dirs []string) (Firmware, error) {
	a, err := arch.Lookup(archName)
	if err != nil || a.Name != archName {
		return Firmware{}, fmt.Errorf("testbed: no firmware known for arch %q", archName)
	}
	cands := a.Firmware
	if secureBoot {
		cands = a.SecureBootFirmware
	}
	var tried []string
	for _, d := range dirs {
		for _, c := range cands {
			code, vars := filepath.Join(d, c[0]), filepath.Join(d, c[1])
			tried = append(tried, code)
			if isFile(code) && isFile(vars) {
				return Firmware{Code: code, VarsTemplate: vars, SMM: secureBoot && a.SecureBootSMM}, nil
			}
		}
	}
	return Firmware{}, fmt.Errorf("%w for %s (secure boot %v); tried %s (install ovmf / qemu-efi-aarch64 or set CFS_FIRMWARE_DIRS)",
		ErrNoFirmware, archName, secureBoot, strings.Join(tried, ", "))
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
