package manifest

import (
	"slices"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// The arch constants and the schema's arches enum are internal/arch's names.
func TestArchNamesFromInternalArch(t *testing.T) {
	if ArchX86_64 != arch.X86_64.Name || ArchAarch64 != arch.Aarch64.Name {
		t.Errorf("ArchX86_64, ArchAarch64 = %q, %q; internal/arch says %q, %q", ArchX86_64, ArchAarch64, arch.X86_64.Name, arch.Aarch64.Name)
	}
	if !slices.Equal(arches, arch.Names()) {
		t.Errorf("arches = %q, want %q", arches, arch.Names())
	}
	for _, a := range arch.All() {
		for _, alias := range []string{a.GOARCH, a.Debian} {
			if enumAliases[alias] != a.Name {
				t.Errorf("enumAliases[%q] = %q, want %q", alias, enumAliases[alias], a.Name)
			}
		}
	}
}
