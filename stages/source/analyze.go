package source

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// AnalysisSchema is the schema version of the analysis output.
const AnalysisSchema = artifacts.ImageAnalysisSchema

// Well-known paths in a bootable container image (unrooted, io/fs style).
const (
	modulesDir      = "usr/lib/modules"
	osReleasePath   = "usr/lib/os-release"
	etcOSRelease    = "etc/os-release"
	prepareRootPath = "usr/lib/ostree/prepare-root.conf"
	stubDir         = "usr/lib/systemd/boot/efi"
	bootcLabel      = "containers.bootc"
)

// Machine names used in the analysis (Fedora spelling).
const (
	MachineX86_64  = manifest.ArchX86_64
	MachineAarch64 = manifest.ArchAarch64
)

// Analysis is what the source stage learns about a bootable container
// image (the "analysis" output); the schema lives in package artifacts so
// later stages can read it without importing this stage.
type Analysis = artifacts.ImageAnalysis

// Kernel is one kernel of the image.
type Kernel = artifacts.ImageKernel

// Binary is one executable whose machine was checked.
type Binary = artifacts.ImageBinary

// PrepareRoot is the image's ostree prepare-root configuration.
type PrepareRoot = artifacts.PrepareRoot

// candidateBinaries are checked, in order, for their ELF machine; the
// first three that exist are reported.
var candidateBinaries = []string{"usr/bin/busybox", "usr/bin/bash", "usr/bin/sh", "usr/bin/ls", "usr/bin/env", "usr/bin/systemctl"}

// Analyze inspects the image tree fsys (the image's root, as
// composefs.Tree.FS gives it) for arch: kernels, os-release,
// prepare-root.conf, the EFI stub and executables. kernel selects a kernel
// version when there are several. labels are the image configuration's
// labels. It fails when the choice of kernel is ambiguous or a kernel or
// executable is built for another machine; a missing kernel is left to the
// kernel-missing lint.
func Analyze(fsys fs.FS, arch, kernel string, labels map[string]string) (*Analysis, error) {
	a := &Analysis{Schema: AnalysisSchema, Arch: arch, Labels: labels, Kernels: []string{}, Binaries: []Binary{}}
	a.Bootc = labels[bootcLabel] == "1"
	if err := findKernels(a, fsys, kernel); err != nil {
		return nil, err
	}
	for _, p := range []string{osReleasePath, etcOSRelease} {
		b, err := fs.ReadFile(fsys, p)
		if err == nil {
			a.OSRelease, a.OSReleasePath = parseOSRelease(b), "/"+p
			break
		}
	}
	if b, err := fs.ReadFile(fsys, prepareRootPath); err == nil {
		secs, err := parseINI(b)
		if err != nil {
			return nil, fmt.Errorf("/%s: %w", prepareRootPath, err)
		}
		a.PrepareRoot = PrepareRoot{Path: "/" + prepareRootPath, Present: true, Sections: secs, Composefs: secs["composefs"]["enabled"]}
	}
	stub := path.Join(stubDir, "linux"+efiArch(arch)+".efi.stub")
	if _, err := fs.Stat(fsys, stub); err == nil {
		format, machine, err := exeMachine(fsys, stub)
		if err != nil {
			return nil, fmt.Errorf("EFI stub /%s: %w", stub, err)
		}
		if machine != arch {
			return nil, fmt.Errorf("EFI stub /%s is a %s %s binary, not %s", stub, machine, format, arch)
		}
		a.Stub = &Binary{Path: "/" + stub, Format: format, Machine: machine}
	}
	for _, p := range candidateBinaries {
		if len(a.Binaries) == 3 {
			break
		}
		if fi, err := fs.Stat(fsys, p); err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
			continue
		}
		format, machine, err := exeMachine(fsys, p)
		if err != nil {
			continue // a script or something else that is not an executable
		}
		if machine != arch {
			return nil, fmt.Errorf("/%s is a %s %s binary, not %s: the image is for another architecture", p, machine, format, arch)
		}
		a.Binaries = append(a.Binaries, Binary{Path: "/" + p, Format: format, Machine: machine})
	}
	return a, nil
}

// efiArch is the EFI architecture suffix (x64, aa64).
func efiArch(arch string) string {
	if arch == manifest.ArchAarch64 {
		return "aa64"
	}
	return "x64"
}

// findKernels lists /usr/lib/modules/*/vmlinuz and inspects the chosen one.
func findKernels(a *Analysis, fsys fs.FS, want string) error {
	ents, err := fs.ReadDir(fsys, modulesDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("/%s: %w", modulesDir, err)
	}
	for _, e := range ents {
		vm := path.Join(modulesDir, e.Name(), "vmlinuz")
		if fi, err := fs.Stat(fsys, vm); err == nil && fi.Mode().IsRegular() {
			a.Kernels = append(a.Kernels, e.Name())
		}
	}
	slices.Sort(a.Kernels)
	var kver string
	switch {
	case want != "":
		if !slices.Contains(a.Kernels, want) {
			return fmt.Errorf("source.kernel = %q, but the image has no /%s/%s/vmlinuz (kernels: %s)", want, modulesDir, want, listOrNone(a.Kernels))
		}
		kver = want
	case len(a.Kernels) == 0:
		return nil
	case len(a.Kernels) > 1:
		return fmt.Errorf("the image ships several kernels (%s): choose one with source.kernel", strings.Join(a.Kernels, ", "))
	default:
		kver = a.Kernels[0]
	}
	dir := path.Join(modulesDir, kver)
	k := &Kernel{Version: kver, Vmlinuz: "/" + dir + "/vmlinuz", ModulesDir: "/" + dir}
	fi, err := fs.Stat(fsys, dir+"/vmlinuz")
	if err != nil {
		return err
	}
	k.Size = fi.Size()
	if fi, err := fs.Stat(fsys, dir+"/initramfs.img"); err == nil && fi.Mode().IsRegular() {
		k.Initramfs = "/" + dir + "/initramfs.img"
	}
	if _, err := fs.Stat(fsys, dir+"/modules.dep"); err == nil {
		k.ModulesDep = true
	}
	_ = fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		n := d.Name()
		if !d.IsDir() && (strings.HasSuffix(n, ".ko") || strings.Contains(n, ".ko.")) {
			k.Modules++
		}
		return nil
	})
	if k.Format, k.Machine, err = kernelMachine(fsys, dir+"/vmlinuz"); err != nil {
		return fmt.Errorf("kernel %s: %w", k.Vmlinuz, err)
	}
	if k.Machine != a.Arch {
		return fmt.Errorf("kernel %s is a %s kernel (%s), not %s", k.Vmlinuz, k.Machine, k.Format, a.Arch)
	}
	a.Kernel = k
	return nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// arm64Magic is "ARM\x64" at offset 0x38 of an arm64 Image.
const arm64Magic = 0x644d5241

// readHead reads up to n bytes from the start of a file.
func readHead(fsys fs.FS, name string, n int) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	m, err := io.ReadFull(f, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	return b[:m], nil
}

// kernelMachine identifies a kernel image's machine: a PE/EFI stub (both
// arches for Fedora and Debian kernels, also EFI zboot), an arm64 Image
// (optionally gzip-compressed), an x86 bzImage or an ELF vmlinux.
func kernelMachine(fsys fs.FS, name string) (format, machine string, err error) {
	head, err := readHead(fsys, name, 64<<10)
	if err != nil {
		return "", "", err
	}
	if f, m, ok := headMachine(head); ok {
		return f, m, nil
	}
	if len(head) >= 0x40 && binary.LittleEndian.Uint32(head[0x38:]) == arm64Magic {
		return "arm64-image", MachineAarch64, nil
	}
	if len(head) > 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(head))
		if err == nil {
			var b [0x40]byte
			if _, err := io.ReadFull(zr, b[:]); err == nil && binary.LittleEndian.Uint32(b[0x38:]) == arm64Magic {
				return "arm64-image", MachineAarch64, nil
			}
		}
	}
	if len(head) >= 0x206 && string(head[0x202:0x206]) == "HdrS" {
		return "bzimage", MachineX86_64, nil
	}
	return "", "", errors.New("unknown kernel image format (not PE, arm64 Image, bzImage or ELF)")
}

// exeMachine identifies an ELF or PE executable's machine.
func exeMachine(fsys fs.FS, name string) (format, machine string, err error) {
	head, err := readHead(fsys, name, 4096)
	if err != nil {
		return "", "", err
	}
	if f, m, ok := headMachine(head); ok {
		return f, m, nil
	}
	return "", "", errors.New("not an ELF or PE executable")
}

// headMachine decodes the machine of a PE or ELF header.
func headMachine(h []byte) (format, machine string, ok bool) {
	switch {
	case len(h) >= 20 && string(h[:4]) == "\x7fELF":
		var em uint16
		switch h[5] {
		case 1:
			em = binary.LittleEndian.Uint16(h[18:])
		case 2:
			em = binary.BigEndian.Uint16(h[18:])
		default:
			return "", "", false
		}
		for _, a := range arch.All() {
			if em == uint16(a.ELFMachine) {
				return "elf", a.Name, true
			}
		}
		return "elf", fmt.Sprintf("elf-machine-%d", em), true
	case len(h) >= 0x40 && string(h[:2]) == "MZ":
		off := int(binary.LittleEndian.Uint32(h[0x3c:]))
		if off < 0x40 || off+6 > len(h) || string(h[off:off+4]) != "PE\x00\x00" {
			return "", "", false
		}
		m := binary.LittleEndian.Uint16(h[off+4:])
		for _, a := range arch.All() {
			if m == a.PEMachine {
				return "pe", a.Name, true
			}
		}
		return "pe", fmt.Sprintf("pe-machine-%#x", m), true
	}
	return "", "", false
}

// parseOSRelease parses os-release(5): KEY=VALUE lines, values optionally
// quoted with shell-style escapes.
func parseOSRelease(b []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			q := v[0]
			v = v[1 : len(v)-1]
			if q == '"' {
				var sb strings.Builder
				for i := 0; i < len(v); i++ {
					if v[i] == '\\' && i+1 < len(v) {
						i++
					}
					sb.WriteByte(v[i])
				}
				v = sb.String()
			}
		}
		m[k] = v
	}
	return m
}

// parseINI parses a GKeyFile-style configuration (prepare-root.conf):
// [section] headers, key = value lines, # and ; comments.
func parseINI(b []byte) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	sec := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: malformed section header %q", n, line)
			}
			sec = strings.TrimSpace(line[1 : len(line)-1])
			if out[sec] == nil {
				out[sec] = map[string]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: want key = value, got %q", n, line)
			}
			if sec == "" {
				return nil, fmt.Errorf("line %d: key %q outside a section", n, strings.TrimSpace(k))
			}
			out[sec][strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
