package composefs

import (
	"bytes"
	"os"
	"path/filepath"
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
