package signing

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckKeyFile pins which key file permissions warrant a warning, as
// ssh judges them (issue 13 item 25).
func TestCheckKeyFile(t *testing.T) {
	tests := []struct {
		name           string
		fileMode       os.FileMode
		dirMode        os.FileMode
		want           string // substring of the *KeyFileError; "" for nil
		wantDirProblem bool
	}{
		{"0600 in 0700", 0o600, 0o700, "", false},
		{"0400 in 0755", 0o400, 0o755, "", false},
		{"0644 in 0755", 0o644, 0o755, "has permissions 0644, which are too open", false},
		{"0640 in 0700", 0o640, 0o700, "has permissions 0640", false},
		{"0602 in 0700", 0o602, 0o700, "has permissions 0602", false},
		{"0600 in a group-writable dir", 0o600, 0o775, "with permissions 0775: group or others can replace the key", true},
		{"0600 in a sticky world-writable dir", 0o600, 0o777 | os.ModeSticky, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			key := filepath.Join(dir, "cosign.key")
			if err := os.WriteFile(key, []byte("k"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(key, tc.fileMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			err := CheckKeyFile(key)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckKeyFile = %v, want nil", err)
				}
				return
			}
			var ke *KeyFileError
			if !errors.As(err, &ke) || !strings.Contains(err.Error(), tc.want) || (ke.Dir != "") != tc.wantDirProblem || ke.Path != key {
				t.Fatalf("CheckKeyFile = %v, want a *KeyFileError with %q", err, tc.want)
			}
		})
	}
	if err := CheckKeyFile(filepath.Join(t.TempDir(), "missing.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
