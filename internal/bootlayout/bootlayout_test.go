package bootlayout

import (
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// TestPaths pins the layouts: a change here changes every disk and must
// change cfs-init and the verifier with it (they use these functions).
func TestPaths(t *testing.T) {
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ got, want string }{
		{ESPBootPath(arch.X86_64), "EFI/BOOT/BOOTX64.EFI"},
		{ESPBootPath(arch.Aarch64), "EFI/BOOT/BOOTAA64.EFI"},
		{ESPUKIPath("testbed.efi"), "EFI/Linux/testbed.efi"},
		{Composefs.Image(hex), "composefs/images/" + hex},
		{Composefs.Signature(hex), "composefs/images/" + hex + ".sig"},
		{Composefs.Object("ab/cdef"), "composefs/objects/ab/cdef"},
		{Composefs.Deployment(hex), "state/deploy/" + hex},
		{Composefs.VerityStamp(hex), "state/deploy/" + hex + "/.verity-enabled"},
		{Composefs.Var(), "state/os/default/var"},
		{Plain.Root(), "state/deploy/plain/root"},
		{Plain.Var(), "state/os/default/var"},
		{strings.Join(Dirs(), " "), "composefs composefs/images composefs/objects state state/deploy state/deploy/plain"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
