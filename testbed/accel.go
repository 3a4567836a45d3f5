package testbed

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// Accelerators.
const (
	AccelTCG = "tcg"
	AccelKVM = "kvm"
)

// DetectAccel chooses the accelerator for a guest architecture: KVM only
// when the host has the same architecture and real hardware virtualisation
// (the kvm_intel or kvm_amd module is loaded and the CPU flags show vmx or
// svm); otherwise TCG. /dev/kvm alone is not enough: kvm-pvm provides it
// without being able to run stock guests. reason explains the choice.
func DetectAccel(guestArch string) (accel, reason string) {
	return detectAccel("/", runtime.GOARCH, guestArch)
}

func detectAccel(root, hostGOARCH, guestArch string) (string, string) {
	host, err := arch.Lookup(hostGOARCH)
	if err != nil || host.Name != guestArch {
		return AccelTCG, "guest " + guestArch + " differs from host " + hostGOARCH
	}
	if host != arch.X86_64 {
		return AccelTCG, "KVM detection is only implemented for x86_64 hosts"
	}
	var module string
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat(filepath.Join(root, "sys/module", m)); err == nil {
			module = m
		}
	}
	if module == "" {
		return AccelTCG, "neither kvm_intel nor kvm_amd is loaded (no hardware KVM)"
	}
	cpuinfo, err := os.ReadFile(filepath.Join(root, "proc/cpuinfo"))
	if err != nil {
		return AccelTCG, "cannot read /proc/cpuinfo: " + err.Error()
	}
	if !cpuFlag(string(cpuinfo), "vmx") && !cpuFlag(string(cpuinfo), "svm") {
		return AccelTCG, module + " is loaded but the CPU has no vmx/svm flag"
	}
	if _, err := os.Stat(filepath.Join(root, "dev/kvm")); err != nil {
		return AccelTCG, "no /dev/kvm"
	}
	return AccelKVM, module + " loaded, CPU has hardware virtualisation"
}

// cpuFlag reports whether any "flags" line of /proc/cpuinfo lists flag.
func cpuFlag(cpuinfo, flag string) bool {
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == flag {
				return true
			}
		}
	}
	return false
}
