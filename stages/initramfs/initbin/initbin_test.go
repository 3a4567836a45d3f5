package initbin

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"testing"
)

// TestBinary checks the embedded binaries: when `make initbins` has run
// (as `make test` does) they are static ELF executables for their
// architecture; otherwise Binary says how to build them.
func TestBinary(t *testing.T) {
	for _, tc := range []struct {
		arch    string
		machine elf.Machine
	}{{"amd64", elf.EM_X86_64}, {"arm64", elf.EM_AARCH64}} {
		t.Run(tc.arch, func(t *testing.T) {
			b, err := Binary(tc.arch)
			if _, statErr := os.Stat("cfs-init-" + tc.arch); statErr != nil {
				if !errors.Is(err, ErrNotBuilt) {
					t.Fatalf("without the binary: err = %v, want ErrNotBuilt", err)
				}
				if os.Getenv("CFS_REQUIRE_INITBINS") != "" {
					t.Fatalf("cfs-init-%s was not built (make initbins)", tc.arch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f, err := elf.NewFile(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != tc.machine || f.Type != elf.ET_EXEC {
				t.Errorf("machine %v type %v, want %v ET_EXEC", f.Machine, f.Type, tc.machine)
			}
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("not static: has a PT_INTERP program header")
				}
			}
		})
	}
	if _, err := Binary("riscv64"); err == nil {
		t.Error("riscv64: want an error")
	}
}
