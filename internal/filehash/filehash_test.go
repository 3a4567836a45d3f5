package filehash

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestSHA256(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello\n")},
		{"large", make([]byte, 1<<20+17)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			sum, n, err := SHA256(p)
			if err != nil {
				t.Fatal(err)
			}
			if want := sha256.Sum256(tc.data); sum != want || n != int64(len(tc.data)) {
				t.Errorf("SHA256 = %x, %d; want %x, %d", sum, n, want, len(tc.data))
			}
		})
	}
}

func TestSHA256Missing(t *testing.T) {
	_, _, err := SHA256(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}
