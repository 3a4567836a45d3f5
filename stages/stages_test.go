package stages

import (
	"strings"
	"testing"
)

// TestAll checks the stage table: every kind once, in pipeline order, and
// every stage's inputs before it (stages/boottest's tests build with the
// same table, which they cannot import).
func TestAll(t *testing.T) {
	var kinds []string
	seen := map[string]bool{}
	for _, s := range All() {
		for _, d := range s.Inputs() {
			if !seen[d.Kind] {
				t.Errorf("stage %s consumes %s, which does not come before it", s.Kind(), d.Kind)
			}
		}
		if seen[s.Kind()] {
			t.Errorf("stage %s twice", s.Kind())
		}
		seen[s.Kind()] = true
		kinds = append(kinds, s.Kind())
	}
	if got, want := strings.Join(kinds, " "), "source composefs initramfs ostree uki disk sign boottest"; got != want {
		t.Errorf("stage table %q, want %q", got, want)
	}
}
