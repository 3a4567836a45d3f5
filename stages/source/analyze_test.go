package source

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cfs-compose/cfs-compose/internal/arch"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

func TestAnalyze(t *testing.T) {
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	tests := []struct {
		name    string
		arch    string
		kernel  string
		labels  map[string]string
		edit    func(fstest.MapFS)
		check   func(t *testing.T, a *Analysis)
		wantErr string
	}{
		{
			name: "x86_64 bootable", arch: "x86_64", labels: map[string]string{"containers.bootc": "1"},
			check: func(t *testing.T, a *Analysis) {
				k := a.Kernel
				if k == nil || k.Version != "6.12.0" || k.Vmlinuz != "/usr/lib/modules/6.12.0/vmlinuz" || k.Initramfs != "/usr/lib/modules/6.12.0/initramfs.img" ||
					!k.ModulesDep || k.Modules != 2 || k.Format != "pe" || k.Machine != "x86_64" || k.Size != 8192 {
					t.Errorf("kernel = %+v", k)
				}
				if !a.Bootc || a.OSRelease["ID"] != "fedora" || a.OSRelease["PRETTY_NAME"] != `Fedora Linux 41 ("Test")` || a.OSReleasePath != "/usr/lib/os-release" {
					t.Errorf("bootc %v os-release %v", a.Bootc, a.OSRelease)
				}
				if a.Stub == nil || a.Stub.Path != "/usr/lib/systemd/boot/efi/linuxx64.efi.stub" || a.Stub.Machine != "x86_64" {
					t.Errorf("stub = %+v", a.Stub)
				}
				// busybox, then sh (a symlink to it); both ELF x86_64.
				if len(a.Binaries) != 2 || a.Binaries[0].Path != "/usr/bin/busybox" || a.Binaries[0].Machine != "x86_64" {
					t.Errorf("binaries = %+v", a.Binaries)
				}
				if a.PrepareRoot.Present {
					t.Errorf("prepare-root present")
				}
			},
		},
		{
			name: "aarch64 bootable", arch: "aarch64",
			check: func(t *testing.T, a *Analysis) {
				if a.Kernel == nil || a.Kernel.Machine != "aarch64" || a.Stub == nil || a.Stub.Path != "/usr/lib/systemd/boot/efi/linuxaa64.efi.stub" || a.Bootc {
					t.Errorf("analysis = %+v", a)
				}
			},
		},
		{
			name: "arm64 Image without PE header", arch: "aarch64",
			edit: func(m fstest.MapFS) { m["usr/lib/modules/6.12.0/vmlinuz"].Data = fakeArm64Image(4096) },
			check: func(t *testing.T, a *Analysis) {
				if a.Kernel.Format != "arm64-image" {
					t.Errorf("format = %s", a.Kernel.Format)
				}
			},
		},
		{
			name: "gzip-compressed arm64 Image", arch: "aarch64",
			edit: func(m fstest.MapFS) { m["usr/lib/modules/6.12.0/vmlinuz"].Data = gz(fakeArm64Image(4096)) },
			check: func(t *testing.T, a *Analysis) {
				if a.Kernel.Format != "arm64-image" || a.Kernel.Machine != "aarch64" {
					t.Errorf("kernel = %+v", a.Kernel)
				}
			},
		},
		{
			name: "prepare-root.conf parsed", arch: "x86_64",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("# comment\n[composefs]\nenabled = signed\nkeypath=/etc/key\n\n[etc]\ntransient = true\n"), Mode: 0o644}
			},
			check: func(t *testing.T, a *Analysis) {
				pr := a.PrepareRoot
				if !pr.Present || pr.Composefs != "signed" || pr.Sections["composefs"]["keypath"] != "/etc/key" || pr.Sections["etc"]["transient"] != "true" {
					t.Errorf("prepare-root = %+v", pr)
				}
			},
		},
		{
			name: "no kernel is not an error (the lint reports it)", arch: "x86_64",
			edit: func(m fstest.MapFS) { delete(m, "usr/lib/modules/6.12.0/vmlinuz") },
			check: func(t *testing.T, a *Analysis) {
				if a.Kernel != nil || len(a.Kernels) != 0 {
					t.Errorf("kernel = %+v", a.Kernel)
				}
			},
		},
		{
			name: "two kernels, one chosen", arch: "x86_64", kernel: "6.13.1",
			edit: func(m fstest.MapFS) {
				m["usr/lib/modules/6.13.1/vmlinuz"] = &fstest.MapFile{Data: ti.FakePE(arch.X86_64.PEMachine, 512), Mode: 0o644}
			},
			check: func(t *testing.T, a *Analysis) {
				if strings.Join(a.Kernels, ",") != "6.12.0,6.13.1" || a.Kernel.Version != "6.13.1" || a.Kernel.Initramfs != "" || a.Kernel.ModulesDep {
					t.Errorf("kernels %v kernel %+v", a.Kernels, a.Kernel)
				}
			},
		},
		{
			name: "two kernels, none chosen", arch: "x86_64",
			edit: func(m fstest.MapFS) {
				m["usr/lib/modules/6.13.1/vmlinuz"] = &fstest.MapFile{Data: ti.FakePE(arch.X86_64.PEMachine, 512), Mode: 0o644}
			},
			wantErr: "several kernels (6.12.0, 6.13.1): choose one with source.kernel",
		},
		{name: "chosen kernel missing", arch: "x86_64", kernel: "9.9", wantErr: `source.kernel = "9.9"`},
		{
			name: "kernel for another arch", arch: "aarch64",
			edit:    func(m fstest.MapFS) { m["usr/lib/modules/6.12.0/vmlinuz"].Data = ti.FakePE(arch.X86_64.PEMachine, 512) },
			wantErr: "is a x86_64 kernel (pe), not aarch64",
		},
		{
			name: "binaries for another arch", arch: "x86_64",
			edit:    func(m fstest.MapFS) { m["usr/bin/busybox"].Data = ti.FakeELF(uint16(arch.Aarch64.ELFMachine), 300) },
			wantErr: "/usr/bin/busybox is a aarch64 elf binary, not x86_64",
		},
		{
			name: "stub for another arch", arch: "x86_64",
			edit: func(m fstest.MapFS) {
				m["usr/lib/systemd/boot/efi/linuxx64.efi.stub"].Data = ti.FakePE(arch.Aarch64.PEMachine, 512)
			},
			wantErr: "EFI stub /usr/lib/systemd/boot/efi/linuxx64.efi.stub is a aarch64 pe binary",
		},
		{
			name: "unknown kernel format", arch: "x86_64",
			edit:    func(m fstest.MapFS) { m["usr/lib/modules/6.12.0/vmlinuz"].Data = []byte("not a kernel") },
			wantErr: "unknown kernel image format",
		},
		{
			name: "malformed prepare-root.conf", arch: "x86_64",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("enabled = yes\n")}
			},
			wantErr: "line 1: key \"enabled\" outside a section",
		},
		{
			name: "etc/os-release fallback, scripts skipped", arch: "x86_64",
			edit: func(m fstest.MapFS) {
				delete(m, "usr/lib/os-release")
				m["etc/os-release"] = &fstest.MapFile{Data: []byte("ID='debian'\n")}
				m["usr/bin/busybox"].Data = []byte("#!/bin/sh\necho not elf\n")
			},
			check: func(t *testing.T, a *Analysis) {
				if a.OSRelease["ID"] != "debian" || a.OSReleasePath != "/etc/os-release" || len(a.Binaries) != 0 {
					t.Errorf("os-release %v binaries %v", a.OSRelease, a.Binaries)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := ti.BootableFS(tc.arch)
			if tc.edit != nil {
				tc.edit(m)
			}
			a, err := Analyze(m, tc.arch, tc.kernel, tc.labels)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, a)
		})
	}
}

func FuzzParseINI(f *testing.F) {
	f.Add([]byte("[composefs]\nenabled = yes\n"))
	f.Add([]byte("[a\nb"))
	f.Fuzz(func(t *testing.T, b []byte) {
		secs, err := parseINI(b)
		if err == nil && secs == nil {
			t.Fatal("nil sections without error")
		}
	})
}

func FuzzKernelMachine(f *testing.F) {
	f.Add(ti.FakePE(arch.X86_64.PEMachine, 256))
	f.Add(fakeArm64Image(256))
	f.Add(ti.FakeELF(uint16(arch.Aarch64.ELFMachine), 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := fstest.MapFS{"k": &fstest.MapFile{Data: b}}
		format, machine, err := kernelMachine(m, "k")
		if err == nil && (format == "" || machine == "") {
			t.Fatal("empty result without error")
		}
	})
}
