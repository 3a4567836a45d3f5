package signing

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSums(t *testing.T) {
	h := strings.Repeat("ab", 32)
	tests := []struct {
		name  string
		in    string
		names []string
		err   string
	}{
		{"gnu", h + "  a.raw\n" + h + " *EFI/Linux/b.efi\n", []string{"a.raw", "EFI/Linux/b.efi"}, ""},
		{"bsd tag", "# Fedora-41 CHECKSUM\nSHA256 (Fedora.iso) = " + h + "\n", []string{"Fedora.iso"}, ""},
		{"name with spaces and parens", "SHA256 (a (1).raw) = " + h + "\n" + h + "  b c\n", []string{"a (1).raw", "b c"}, ""},
		{"blank and CRLF", "\n" + h + "  x\r\n\n", []string{"x"}, ""},
		{"empty", "", nil, ""},
		{"short hex", "abcd  x\n", nil, "line 1"},
		{"bad hex", strings.Repeat("zz", 32) + "  x\n", nil, "not a SHA-256"},
		{"one space", h + " x\n", nil, "line 1"},
		{"escape", h + "  ../x\n", nil, `"../x"`},
		{"absolute", "SHA256 (/etc/x) = " + h + "\n", nil, `"/etc/x"`},
		{"duplicate", h + "  x\n" + h + "  x\n", nil, "line 2: x listed twice"},
		{"bsd malformed", "SHA256 (x = " + h + "\n", nil, "line 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSums(strings.NewReader(tc.in))
			if tc.err != "" {
				if !errors.Is(err, ErrSums) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrSums with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range got {
				names = append(names, c.Name)
				if len(c.SHA256) != 32 {
					t.Errorf("%s: digest %d bytes", c.Name, len(c.SHA256))
				}
			}
			if strings.Join(names, "|") != strings.Join(tc.names, "|") {
				t.Errorf("names = %q, want %q", names, tc.names)
			}
		})
	}
}

// TestWriteSumsCoreutils checks WriteSums output with the real
// `sha256sum -c`, and that ParseSums reads sha256sum's own output.
func TestWriteSumsCoreutils(t *testing.T) {
	dir := t.TempDir()
	var sums []Checksum
	for _, name := range []string{"a.raw", "b.efi"} {
		p := writeBlob(t, dir, name, []byte("content of "+name))
		d, err := HashFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, Checksum{Name: name, SHA256: d})
	}
	var buf bytes.Buffer
	if err := WriteSums(&buf, sums); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, SumsFile), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "-c", SumsFile)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	cmd = exec.Command("sha256sum", "a.raw", "b.efi")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseSums(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(parsed) != 2 || !bytes.Equal(parsed[1].SHA256, sums[1].SHA256) {
		t.Fatalf("parsed = %+v", parsed)
	}
	if err := WriteSums(&buf, []Checksum{{Name: "a\nb", SHA256: sums[0].SHA256}}); err == nil {
		t.Error("WriteSums accepted a name with a newline")
	}
}

// FuzzParseSums: accepted input re-encodes (GNU form) to the same entries.
func FuzzParseSums(f *testing.F) {
	h := strings.Repeat("0f", 32)
	f.Add(h + "  a\n")
	f.Add("SHA256 (a b) = " + h + "\n# c\n")
	f.Fuzz(func(t *testing.T, in string) {
		sums, err := ParseSums(strings.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteSums(&buf, sums); err != nil {
			return // names WriteSums cannot represent (backslash)
		}
		again, err := ParseSums(&buf)
		if err != nil || len(again) != len(sums) {
			t.Fatalf("round trip: %v (%d vs %d entries)", err, len(again), len(sums))
		}
		for i := range sums {
			if again[i].Name != sums[i].Name || !bytes.Equal(again[i].SHA256, sums[i].SHA256) {
				t.Fatalf("entry %d: %+v != %+v", i, again[i], sums[i])
			}
		}
	})
}
