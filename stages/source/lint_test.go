package source

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

func TestLintNames(t *testing.T) {
	want := []string{"kdump-composefs", "kernel-missing", "ostree-grub2", "prepare-root", "root-dirs", "stub-missing", "var-content"}
	if got := LintNames(); !slices.Equal(got, want) {
		t.Errorf("LintNames() = %v, want %v", got, want)
	}
	for _, l := range Lints() {
		if l.Description == "" || (l.Severity != Fatal && l.Severity != Warning) {
			t.Errorf("lint %s: description %q severity %q", l.Name, l.Description, l.Severity)
		}
	}
}

func TestLints(t *testing.T) {
	base := LintSettings{Composefs: true, Initramfs: "builtin", UKI: true, UKIStub: "image"}
	type want struct {
		name     string
		severity Severity
		paths    []string
		skipped  bool
		text     string
	}
	tests := []struct {
		name     string
		edit     func(fstest.MapFS)
		settings func(*LintSettings)
		want     []want
		override bool
	}{
		{name: "clean image"},
		{
			name: "ostree-grub2 with composefs",
			edit: func(m fstest.MapFS) {
				m["etc/grub.d/15_ostree"] = &fstest.MapFile{Data: []byte("#!/bin/sh")}
				m["usr/libexec/libostree/grub2-15_ostree"] = &fstest.MapFile{Data: []byte("#!/bin/sh")}
			},
			want: []want{{name: "ostree-grub2", severity: Fatal, paths: []string{"/etc/grub.d/15_ostree", "/usr/libexec/libostree/grub2-15_ostree"}}},
		},
		{
			name:     "ostree-grub2 without composefs is fine",
			edit:     func(m fstest.MapFS) { m["etc/grub.d/15_ostree"] = &fstest.MapFile{} },
			settings: func(s *LintSettings) { s.Composefs = false },
		},
		{
			name: "kdump enabled in the image and the manifest",
			edit: func(m fstest.MapFS) {
				m["etc/systemd/system/multi-user.target.wants/kdump.service"] = &fstest.MapFile{Data: []byte("/usr/lib/systemd/system/kdump.service"), Mode: 0o777 | 1<<27}
			},
			settings: func(s *LintSettings) { s.Kdump = true },
			want:     []want{{name: "kdump-composefs", severity: Warning, paths: []string{"(manifest kernel.kdump = true)", "/etc/systemd/system/multi-user.target.wants/kdump.service"}}},
		},
		{
			name: "prepare-root disagrees, builtin initramfs: manifest wins",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("[composefs]\nenabled = no\n")}
			},
			want:     []want{{name: "prepare-root", severity: Warning, paths: []string{"/usr/lib/ostree/prepare-root.conf"}, text: "the manifest wins"}},
			override: true,
		},
		{
			name: "prepare-root disagrees with the image's own initramfs: fatal",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("[composefs]\nenabled = yes\n")}
			},
			settings: func(s *LintSettings) { s.Composefs = false; s.Initramfs = "image" },
			want:     []want{{name: "prepare-root", severity: Fatal, text: "cannot win"}},
		},
		{
			name: "prepare-root requires signed images",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("[composefs]\nenabled = signed\n")}
			},
			want:     []want{{name: "prepare-root", severity: Warning, text: "composefs.signed = false"}},
			override: true,
		},
		{
			name: "ostree backend, image composefs on, manifest off: the karg wins",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("[composefs]\nenabled = yes\n")}
			},
			settings: func(s *LintSettings) { s.Composefs = false; s.Initramfs = "image"; s.Ostree = true },
			want:     []want{{name: "prepare-root", severity: Warning, text: "ostree.prepare-root.composefs=0"}},
		},
		{
			name: "ostree backend, image composefs off, manifest on: fatal",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("[composefs]\nenabled = no\n")}
			},
			settings: func(s *LintSettings) { s.Initramfs = "image"; s.Ostree = true },
			want:     []want{{name: "prepare-root", severity: Fatal, text: "follows the image"}},
		},
		{
			name: "ostree backend, image requires signed commits: fatal",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("[composefs]\nenabled = signed\n")}
			},
			settings: func(s *LintSettings) { s.Initramfs = "image"; s.Ostree = true },
			want:     []want{{name: "prepare-root", severity: Fatal, text: "signed ostree commits"}},
		},
		{
			name: "ostree backend, image and manifest agree",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("[composefs]\nenabled = yes\n")}
			},
			settings: func(s *LintSettings) { s.Initramfs = "image"; s.Ostree = true },
		},
		{
			name: "prepare-root maybe agrees with anything",
			edit: func(m fstest.MapFS) {
				m["usr/lib/ostree/prepare-root.conf"] = &fstest.MapFile{Data: []byte("[composefs]\nenabled = maybe\n")}
			},
		},
		{
			name: "content under /var",
			edit: func(m fstest.MapFS) {
				m["var/lib/rpm/rpmdb.sqlite"] = &fstest.MapFile{Data: []byte("db")}
				m["var/log/empty"] = &fstest.MapFile{Mode: 0o755 | 1<<31}
				m["var/run"] = &fstest.MapFile{Data: []byte("../run"), Mode: 0o777 | 1<<27}
			},
			want: []want{{name: "var-content", severity: Warning, paths: []string{"/var/lib/rpm/rpmdb.sqlite", "/var/run"}}},
		},
		{
			name: "non-standard root dirs, one declared",
			edit: func(m fstest.MapFS) {
				m["data"] = &fstest.MapFile{Mode: 0o755 | 1<<31}
				m["nix"] = &fstest.MapFile{Mode: 0o755 | 1<<31}
				m[".dockerenv"] = &fstest.MapFile{}
			},
			settings: func(s *LintSettings) { s.ExtraDirs = []string{"/data"} },
			want:     []want{{name: "root-dirs", severity: Warning, paths: []string{"/.dockerenv", "/nix"}}},
		},
		{
			name: "missing kernel and stub, both skipped",
			edit: func(m fstest.MapFS) {
				delete(m, "usr/lib/modules/6.12.0/vmlinuz")
				delete(m, "usr/lib/systemd/boot/efi/linuxx64.efi.stub")
			},
			settings: func(s *LintSettings) { s.Skip = []string{"kernel-missing", "stub-missing"} },
			want: []want{
				{name: "kernel-missing", severity: Fatal, skipped: true},
				{name: "stub-missing", severity: Fatal, skipped: true, paths: []string{"/usr/lib/systemd/boot/efi/linuxx64.efi.stub"}},
			},
		},
		{
			name:     "missing stub with a host stub is fine",
			edit:     func(m fstest.MapFS) { delete(m, "usr/lib/systemd/boot/efi/linuxx64.efi.stub") },
			settings: func(s *LintSettings) { s.UKIStub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub" },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := ti.BootableFS("x86_64")
			if tc.edit != nil {
				tc.edit(m)
			}
			s := base
			if tc.settings != nil {
				tc.settings(&s)
			}
			a, err := Analyze(m, "x86_64", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := RunLints(m, a, s)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) != len(tc.want) {
				t.Fatalf("results = %+v, want %d", rep.Results, len(tc.want))
			}
			fatal, warn := 0, 0
			for i, w := range tc.want {
				r := rep.Results[i]
				if r.Name != w.name || r.Severity != w.severity || r.Skipped != w.skipped || !strings.Contains(r.Message, w.text) {
					t.Errorf("result %d = %+v, want %+v", i, r, w)
				}
				if w.paths != nil && !slices.Equal(r.Paths, w.paths) {
					t.Errorf("%s paths = %v, want %v", r.Name, r.Paths, w.paths)
				}
				if !w.skipped {
					if w.severity == Fatal {
						fatal++
					} else {
						warn++
					}
				}
			}
			if rep.Fatal != fatal || rep.Warnings != warn || len(rep.Failures()) != fatal {
				t.Errorf("fatal %d warnings %d, want %d %d", rep.Fatal, rep.Warnings, fatal, warn)
			}
			if a.PrepareRoot.Override != tc.override {
				t.Errorf("override = %v", a.PrepareRoot.Override)
			}
			if len(rep.Checked) != len(LintNames()) {
				t.Errorf("checked = %v", rep.Checked)
			}
		})
	}
}

func TestLintUnknownSkip(t *testing.T) {
	m := ti.BootableFS("x86_64")
	a, err := Analyze(m, "x86_64", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = RunLints(m, a, LintSettings{Skip: []string{"no-such-lint"}})
	if err == nil || !strings.Contains(err.Error(), `unknown lint "no-such-lint"`) {
		t.Fatalf("err = %v", err)
	}
}
