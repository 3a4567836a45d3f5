package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// ErrUnformattedVars means a UEFI variable store template is all zeros
// (bookworm's AAVMF_VARS.fd): the firmware formats it on first boot, but
// keys cannot be enrolled into it. Use trixie's AAVMF_VARS.fd (cached by
// `make fixtures`) or a copy the firmware has booted once ([FormatVars]).
var ErrUnformattedVars = errors.New("testbed: UEFI variable store is unformatted (all zeros)")

// SignatureOwner is the owner GUID recorded with the certificates the
// testbed enrolls (any fixed GUID works; it identifies who added them).
const SignatureOwner = "a0e9d2c5-3b4f-4e6a-9c1d-5f7b8e2a4c60"

// VirtFwVars runs virt-fw-vars (python3-virt-firmware) to edit UEFI
// variable stores.
type VirtFwVars struct {
	Argv []string // command prefix, e.g. [/usr/bin/virt-fw-vars]
	Env  []string // extra environment
}

// FindVirtFwVars locates virt-fw-vars: the executable named by
// $CFS_VIRT_FW_VARS, else virt-fw-vars in PATH. `make fixtures` unpacks
// trixie's python3-virt-firmware and writes a wrapper that runs it on the
// host's Python (host/bin/virt-fw-vars in the fixture cache).
func FindVirtFwVars() (*VirtFwVars, error) {
	if p := os.Getenv("CFS_VIRT_FW_VARS"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return nil, fmt.Errorf("testbed: $CFS_VIRT_FW_VARS: %w", err)
		}
		return &VirtFwVars{Argv: []string{p}}, nil
	}
	p, err := exec.LookPath("virt-fw-vars")
	if err != nil {
		return nil, fmt.Errorf("testbed: virt-fw-vars not found: set CFS_VIRT_FW_VARS to host/bin/virt-fw-vars in the fixture cache (made by `make fixtures`) or install python3-virt-firmware: %w", err)
	}
	return &VirtFwVars{Argv: []string{p}}, nil
}

func (v *VirtFwVars) run(ctx context.Context, args ...string) (string, error) {
	argv := append(append([]string(nil), v.Argv...), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), v.Env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("virt-fw-vars %s: %w: %s", strings.Join(args, " "), err, lastLines(out.String(), 5))
	}
	return out.String(), nil
}

// Enroll writes to out a copy of the variable store template with pk as
// the Platform Key, kek and db certificates (PEM files) enrolled, and
// Secure Boot enabled. Setting PK moves the firmware to user mode, so it
// enforces signatures from then on.
func (v *VirtFwVars) Enroll(ctx context.Context, template, out, pk string, kek, db []string) error {
	if pk == "" || len(kek) == 0 || len(db) == 0 {
		return fmt.Errorf("testbed: enrolling Secure Boot keys needs a PK, at least one KEK and at least one db certificate")
	}
	if err := checkFormatted(template); err != nil {
		return err
	}
	for _, c := range append(append([]string{pk}, kek...), db...) {
		if !isFile(c) {
			return fmt.Errorf("testbed: certificate %s: not a file", c)
		}
	}
	tmp := out + ".tmp"
	args := []string{"-i", template, "-o", tmp, "--set-pk", SignatureOwner, pk}
	for _, k := range kek {
		args = append(args, "--add-kek", SignatureOwner, k)
	}
	for _, d := range db {
		args = append(args, "--add-db", SignatureOwner, d)
	}
	args = append(args, "--no-microsoft", "--sb")
	if _, err := v.run(ctx, args...); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.Publish(tmp, out)
}

// Print returns virt-fw-vars' listing of a variable store (-i FILE --print
// --verbose): variable names, and the subjects of enrolled certificates.
func (v *VirtFwVars) Print(ctx context.Context, vars string) (string, error) {
	return v.run(ctx, "-i", vars, "--print", "--verbose")
}

// EnrollSecureBoot enrolls the Secure Boot certificates (PEM files: pk,
// kek and db) into a copy of the variable store template and returns the
// path of the new store, a temporary file the caller removes. It uses
// [FindVirtFwVars].
func EnrollSecureBoot(ctx context.Context, varsTemplate, pk string, kek, db []string) (string, error) {
	v, err := FindVirtFwVars()
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "cfs-secureboot-vars-*.fd")
	if err != nil {
		return "", err
	}
	f.Close()
	if err := v.Enroll(ctx, varsTemplate, f.Name(), pk, kek, db); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// CheckVarsTemplate fails with [ErrUnformattedVars] when the variable
// store template at p is all zeros (keys cannot be enrolled into it), and
// when it cannot be read.
func CheckVarsTemplate(p string) error { return checkFormatted(p) }

// checkFormatted fails with ErrUnformattedVars when the template is all
// zeros.
func checkFormatted(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("testbed: variable store template: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: %s", ErrUnformattedVars, filepath.Base(p))
		}
		if err != nil {
			return err
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// uefiShellBanner is what EDK II prints when BDS falls back to its
// built-in shell (bookworm's AAVMF has one).
const uefiShellBanner = "UEFI Interactive Shell"

// FormatVars makes a formatted copy of an unformatted (all-zero) variable
// store template, such as bookworm's AAVMF_VARS.fd, so that keys can be
// enrolled into it: it boots fw once with a copy of the template and an
// empty disk, lets the firmware format the store and find nothing to boot
// (it refuses, or starts its built-in UEFI shell: QEMU is stopped at
// either), and writes the store the firmware left to out. scratch holds the boot's files. A
// template that is already formatted is copied unchanged.
func FormatVars(ctx context.Context, arch string, fw Firmware, out, scratch string) error {
	if err := checkFormatted(fw.VarsTemplate); !errors.Is(err, ErrUnformattedVars) {
		if err != nil {
			return err
		}
		return copyFile(fw.VarsTemplate, out)
	}
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}
	disk := filepath.Join(scratch, "empty.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(disk, 1<<20); err != nil {
		return err
	}
	res, err := Boot(ctx, Machine{Arch: arch, Firmware: &fw, Disk: disk, MemoryMiB: 512, Timeout: 5 * time.Minute,
		StopAt: uefiShellBanner}, scratch)
	if err != nil {
		return fmt.Errorf("testbed: formatting %s: %w", fw.VarsTemplate, err)
	}
	if res.Outcome != OutcomeRefused && res.Outcome != OutcomeStopped {
		return fmt.Errorf("testbed: formatting %s: the firmware did not reach its boot manager: %s (%s)", fw.VarsTemplate, res.Outcome, res.Reason)
	}
	vars := filepath.Join(scratch, "vars.fd")
	if err := checkFormatted(vars); err != nil {
		return fmt.Errorf("testbed: formatting %s: the firmware left %w", fw.VarsTemplate, err)
	}
	if err := copyFile(vars, out+".tmp"); err != nil {
		return err
	}
	return atomicfile.Publish(out+".tmp", out)
}
