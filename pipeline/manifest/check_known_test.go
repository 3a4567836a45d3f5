package manifest

import "testing"

func TestKnownCheck(t *testing.T) {
	known := []string{"composefs-root", "composefs-digest", "usr-readonly"}
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"composefs-root", true},
		{"composefs-*", true},
		{"tag:secureboot", true},
		{"usr-*", true},
		{"nope-*", false},
		{"composefs-rot", false},
		{"[", false},
	} {
		if got := knownCheck(tc.name, known); got != tc.want {
			t.Errorf("knownCheck(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
