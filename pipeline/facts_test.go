package pipeline

import (
	"testing"

	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

func TestFactsRootLabel(t *testing.T) {
	tests := []struct {
		name  string
		parts []manifest.Partition
		want  string
	}{
		{"none", nil, "root"},
		{"label", []manifest.Partition{{Name: "esp", Type: "esp", Label: "EFI"}, {Name: "rootfs", Type: "root", Label: "sysroot"}}, "sysroot"},
		{"name", []manifest.Partition{{Name: "rootfs", Type: "root"}}, "rootfs"},
		{"no root type", []manifest.Partition{{Name: "data", Type: "linux", Label: "data"}}, "root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rootLabel(tc.parts); got != tc.want {
				t.Errorf("rootLabel = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFactsBackend(t *testing.T) {
	c := &manifest.Config{Arch: manifest.ArchX86_64, Deploy: manifest.Deploy{Backend: manifest.BackendOstree, Stateroot: "fedora"}}
	f, err := FactsOf(Target{Variant: "v", Arch: manifest.ArchX86_64}, c)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Ostree() || f.Stateroot != "fedora" {
		t.Errorf("ostree backend: Ostree() = %t, Stateroot = %q", f.Ostree(), f.Stateroot)
	}
	c.Deploy.Backend = manifest.BackendComposefs
	if f, err = FactsOf(Target{Variant: "v", Arch: manifest.ArchX86_64}, c); err != nil {
		t.Fatal(err)
	}
	if f.Ostree() || f.Stateroot != "" {
		t.Errorf("composefs backend: Ostree() = %t, Stateroot = %q (want none)", f.Ostree(), f.Stateroot)
	}
}
