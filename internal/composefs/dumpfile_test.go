package composefs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goldenDir = "testdata/golden"

// TestDumpfileRoundTripGolden parses every golden dump written by
// composefs-info and writes it back byte for byte.
func TestDumpfileRoundTripGolden(t *testing.T) {
	for _, name := range []string{"t1-mixed", "t2-minimal", "t3-xattrs", "t4-dirs", "t5-special", "t6-ids-times", "t7-sizes"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(goldenDir, "dumps", name+".dump"))
			if err != nil {
				t.Fatal(err)
			}
			tree, err := ReadDumpfile(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := WriteDumpfile(&out, tree); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Errorf("round trip differs:\n%s", firstDiff(data, out.Bytes()))
			}
		})
	}
}

// firstDiff describes the first differing line of two texts.
func firstDiff(want, got []byte) string {
	wl := bytes.Split(want, []byte("\n"))
	gl := bytes.Split(got, []byte("\n"))
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g []byte
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if !bytes.Equal(w, g) {
			return "line " + itoa(i+1) + ":\nwant " + string(w) + "\ngot  " + string(g)
		}
	}
	return "(equal)"
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// TestReadDumpfileErrors pins the errors of malformed dumpfiles: each is a
// [*DumpfileError] at the line and column given, never a panic.
func TestReadDumpfileErrors(t *testing.T) {
	const root = "/ 0 40755 2 0 0 0 0.0 - - -\n"
	tests := []struct {
		name      string
		dump      string
		line, col int
		want      string
	}{
		// issue 13 item 17: an escaped NUL in a path once panicked.
		{"escaped NUL in path", root + "/a\\x00b 0 100644 1 0 0 0 0.0 - - -\n", 2, 1, "NUL character in name"},
		{"escaped NUL in parent", root + "/d\\x00 0 40755 2 0 0 0 0.0 - - -\n/d\\x00/f 0 100644 1 0 0 0 0.0 - - -\n", 2, 1, "NUL character in name"},
		{"escaped NUL in hard link path", root + "/f 0 100644 1 0 0 0 0.0 - - -\n/l\\x00 0 @100644 1 0 0 0 0.0 /f - -\n", 3, 1, "NUL character in name"},
		{"escaped NUL in hard link target", root + "/f 0 100644 1 0 0 0 0.0 - - -\n/l 0 @100644 1 0 0 0 0.0 /f\\x00 - -\n", 3, 26, `no target "/f\x00"`},
		{"raw NUL in line", root + "/a\x00 0 100644 1 0 0 0 0.0 - - -\n", 2, 3, "NUL character in line"},
		{"dot component", root + "/. 0 100644 1 0 0 0 0.0 - - -\n", 2, 1, ". and .. are not allowed"},
		{"missing parent", root + "/a/b 0 100644 1 0 0 0 0.0 - - -\n", 2, 1, "parent directory of /a/b is missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadDumpfile(strings.NewReader(tc.dump))
			var de *DumpfileError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DumpfileError", err)
			}
			if de.Line != tc.line || de.Column != tc.col || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v (line %d, column %d), want line %d, column %d, %q", err, de.Line, de.Column, tc.line, tc.col, tc.want)
			}
		})
	}
}

// TestReadDumpfileStrict pins mkcomposefs's two sets of parsing rules
// (issue 13 item 2): what the default accepts, and what
// DumpfileOptions.Strict (CFS_PARSE_STRICT) refuses instead. dump is the
// line after the root's; want is its dump, or the strict error.
func TestReadDumpfileStrict(t *testing.T) {
	const root = "/ 0 40755 2 0 0 0 0.0 - - -\n"
	tests := []struct {
		name        string
		dump        string
		lenient     string // our dump of the entry without Strict
		strictError string // "" if Strict accepts it too
	}{
		{"wide mode keeps its low 16 bits", "/l 6 20720777 1 0 0 0 0.0 target - -\n", "/l 6 120777 1 0 0 0 0.0 target - -\n", ""},
		{"no final newline", "/f 0 100644 1 0 0 0 0.0 - - -", "/f 0 100644 1 0 0 0 0.0 - - -\n", "2:30: missing newline"},
		{"trailing space", "/f 0 100644 1 0 0 0 0.0 - - - \n", "/f 0 100644 1 0 0 0 0.0 - - -\n", ""},
		{"line ends before CONTENT", "/l 0 120777 1 0 0 0 0.0 target\n", "/l 6 120777 1 0 0 0 0.0 target - -\n", "2:4: SIZE: 0 for a symlink target of 6 bytes"},
		{"RDEV on a file", "/f 0 100644 1 0 0 7 0.0 - - -\n", "/f 0 100644 1 0 0 0 0.0 - - -\n", "2:19: RDEV: non-zero device number 7"},
		{"symlink SIZE", "/l 1 120777 1 0 0 0 0.0 target - -\n", "/l 6 120777 1 0 0 0 0.0 target - -\n", "2:4: SIZE: 1 for a symlink target of 6 bytes"},
		{"symlink CONTENT", "/l 6 120777 1 0 0 0 0.0 target abcdef -\n", "/l 6 120777 1 0 0 0 0.0 target - -\n", "2:32: CONTENT: a symlink cannot have content"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree, err := ReadDumpfile(strings.NewReader(root + tc.dump))
			if err != nil {
				t.Fatalf("default rules: %v", err)
			}
			var out bytes.Buffer
			if err := WriteDumpfile(&out, tree); err != nil {
				t.Fatal(err)
			}
			if got := strings.SplitAfterN(out.String(), "\n", 2)[1]; got != tc.lenient {
				t.Errorf("default rules: got %q, want %q", got, tc.lenient)
			}
			_, err = ReadDumpfileOptions(strings.NewReader(root+tc.dump), &DumpfileOptions{Strict: true})
			switch {
			case tc.strictError == "" && err != nil:
				t.Errorf("strict rules: %v", err)
			case tc.strictError != "" && err == nil:
				t.Errorf("strict rules accept it, want %q", tc.strictError)
			case tc.strictError != "":
				var de *DumpfileError
				if !errors.As(err, &de) || !strings.Contains(fmt.Sprintf("%d:%d: %v", de.Line, de.Column, de.Err), tc.strictError) {
					t.Errorf("strict rules: got %v, want %q", err, tc.strictError)
				}
			}
		})
	}
}
