package composefs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDumpfile parses arbitrary dumpfiles. Whatever parses must dump back
// to text that parses to the same dump, and must either be rejected by the
// image writer or give an image the reader accepts.
func FuzzDumpfile(f *testing.F) {
	for _, name := range append(goldenDumps, "hardlinks") {
		data, err := os.ReadFile(filepath.Join(goldenDir, "dumps", name+".dump"))
		if err != nil {
			f.Fatal(err)
		}
		if len(data) < 20000 {
			f.Add(data)
		}
	}
	f.Add([]byte("/ 0 40755 2 0 0 0 0.0 - - -\n/a 3 100644 1 0 0 0 1.5 - a\\x20b - user.x=\\x3d\n"))
	f.Add([]byte("/ 0 40755 2 0 0 0 0.0 - - -\n/a @100644 0 0 0 0 0.0 /b - -\n/b 0 20000 1 0 0 0 0.0 - - -\n"))
	f.Add([]byte("/ 0 40755 2 0 0 0 -5.999999999 - - - trusted.overlay.x=y"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tree, err := ReadDumpfile(bytes.NewReader(data))
		if err != nil {
			var de *DumpfileError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DumpfileError", err)
			}
			return
		}
		var dump bytes.Buffer
		if err := WriteDumpfile(&dump, tree); err != nil {
			t.Fatal(err)
		}
		again, err := ReadDumpfile(bytes.NewReader(dump.Bytes()))
		if err != nil {
			t.Fatalf("re-parsing our own dump: %v\n%s", err, dump.Bytes())
		}
		var dump2 bytes.Buffer
		if err := WriteDumpfile(&dump2, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dump.Bytes(), dump2.Bytes()) {
			t.Fatalf("dump -> parse -> dump differs:\n%s\n%s", dump.Bytes(), dump2.Bytes())
		}
		var img bytes.Buffer
		if err := WriteImage(&img, tree, nil); err != nil {
			if !errors.Is(err, ErrWrite) {
				t.Fatalf("writer error %v does not wrap ErrWrite", err)
			}
			return
		}
		if _, err := ReadImage(bytes.NewReader(img.Bytes()), int64(img.Len())); err != nil {
			t.Fatalf("reading back the image of a parsed dump: %v", err)
		}
	})
}

// FuzzReader reads arbitrary images. The reader must not panic; what it
// accepts must be writable (or rejected by the writer), and the image
// written from it must read back and be a fixpoint.
func FuzzReader(f *testing.F) {
	for _, name := range []string{"t2-minimal", "t3-xattrs", "t5-special", "t6-ids-times", "hardlinks"} {
		tree := readGoldenDumpF(f, name)
		var b bytes.Buffer
		if err := WriteImage(&b, tree, nil); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tree, err := ReadImage(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		var img bytes.Buffer
		if err := WriteImage(&img, tree, nil); err != nil {
			if !errors.Is(err, ErrWrite) {
				t.Fatalf("writer error %v does not wrap ErrWrite", err)
			}
			return
		}
		again, err := ReadImage(bytes.NewReader(img.Bytes()), int64(img.Len()))
		if err != nil {
			t.Fatalf("reading back our own image: %v", err)
		}
		var img2 bytes.Buffer
		if err := WriteImage(&img2, again, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(img.Bytes(), img2.Bytes()) {
			t.Fatal("write(read(image)) is not a fixpoint")
		}
		if err := WriteDumpfile(&bytes.Buffer{}, tree); err != nil {
			t.Fatal(err)
		}
	})
}

func readGoldenDumpF(f *testing.F, name string) *Tree {
	data, err := os.ReadFile(filepath.Join(goldenDir, "dumps", name+".dump"))
	if err != nil {
		f.Fatal(err)
	}
	tree, err := ReadDumpfile(bytes.NewReader(data))
	if err != nil {
		f.Fatal(err)
	}
	return tree
}
