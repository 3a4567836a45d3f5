package ostree

import (
	"bytes"
	"testing"
	"time"
)

// FuzzReader feeds arbitrary bytes to the object parsers: they must not
// panic, and what they accept must marshal back to the same bytes (the
// parsers accept GVariant normal form only).
func FuzzReader(f *testing.F) {
	var zero Checksum
	seeds := []interface{ MarshalBinary() ([]byte, error) }{
		&FileHeader{Mode: modeRegular | 0o644, Xattrs: []Xattr{{"user.a", "b"}, {"security.x", "\x00"}}},
		&FileHeader{Mode: modeSymlink | 0o777, Target: "../t"},
		&DirMeta{Mode: modeDir | 0o755, UID: 1, GID: 2},
		&DirTree{Files: []TreeFile{{"a", zero}, {"b", zero}}, Dirs: []TreeDir{{"c", zero, zero}}},
		&Commit{Metadata: []MetaEntry{RefBinding("main"), {"version", String("1")}, {"n", Uint64(7)},
			{"d", Dict([]MetaEntry{{"x", Bytes([]byte{1})}})}}, Parent: &zero, Subject: "s", Body: "b",
			Timestamp: time.Unix(1700000000, 0), RootContents: zero, RootMeta: zero},
	}
	for i, s := range seeds {
		b, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i%4), b)
	}
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		var m interface{ MarshalBinary() ([]byte, error) }
		var err error
		switch kind % 4 {
		case 0:
			m, err = ParseFileHeader(b)
		case 1:
			m, err = ParseDirMeta(b)
		case 2:
			m, err = ParseDirTree(b)
		case 3:
			m, err = ParseCommit(b)
		}
		if err != nil {
			return
		}
		again, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted object does not marshal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("marshal of parsed object differs:\n%x\n%x", b, again)
		}
	})
}
