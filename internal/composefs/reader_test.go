package composefs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// sampleTree has a subdirectory, a file, a symlink and shared attributes.
func sampleTree(t testing.TB) *Tree {
	tr := NewTree()
	for _, e := range []struct {
		name string
		ino  *Inode
	}{
		{"/sub", &Inode{Mode: TypeDir | 0o755}},
		{"/sub/f", &Inode{Mode: TypeRegular | 0o644, Size: 5, Content: []byte("hello"), Xattrs: []Xattr{{"user.a", "shared"}}}},
		{"/g", &Inode{Mode: TypeRegular | 0o644, Size: 3, Content: []byte("abc"), Xattrs: []Xattr{{"user.a", "shared"}}}},
		{"/l", &Inode{Mode: TypeSymlink | 0o777, Target: "sub/f"}},
	} {
		if err := tr.Add(e.name, e.ino); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// nidOf finds the inode number of a root entry.
func nidOf(t *testing.T, img []byte, name string) uint64 {
	t.Helper()
	rd, err := NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	ri, err := rd.readInode(rd.rootNid)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := rd.readDirents(ri)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.name == name {
			return e.nid
		}
	}
	t.Fatalf("no entry %s", name)
	return 0
}

func TestReaderRejects(t *testing.T) {
	good := writeImage(t, sampleTree(t), nil)
	if _, err := ReadImage(bytes.NewReader(good), int64(len(good))); err != nil {
		t.Fatalf("good image: %v", err)
	}
	le := binary.LittleEndian
	inodeOff := func(nid uint64) int { return int(nid * slotSize) }
	subNid := nidOf(t, good, "sub")
	gNid := nidOf(t, good, "g")
	lNid := nidOf(t, good, "l")
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
		want   string
	}{
		{"too small", func(b []byte) []byte { return b[:1000] }, "too small"},
		{"bad magic", func(b []byte) []byte { b[0] ^= 1; return b }, "bad magic"},
		{"header version", func(b []byte) []byte { le.PutUint32(b[4:], 2); return b }, "header version"},
		{"format version", func(b []byte) []byte { le.PutUint32(b[12:], 2); return b }, "format version 2"},
		{"erofs magic", func(b []byte) []byte { b[superOffset] ^= 1; return b }, "superblock magic"},
		{"block size", func(b []byte) []byte { b[superOffset+12] = 9; return b }, "block size"},
		{"incompat", func(b []byte) []byte { le.PutUint32(b[superOffset+80:], 1); return b }, "incompatible"},
		{"meta outside", func(b []byte) []byte { le.PutUint32(b[superOffset+40:], 1000); return b }, "outside the image"},
		{"root nid", func(b []byte) []byte { le.PutUint16(b[superOffset+14:], 0xffff); return b }, "outside the image"},
		{"root not dir", func(b []byte) []byte { le.PutUint16(b[superOffset+14:], uint16(gNid)); return b }, "root is not a directory"},
		{"bad layout", func(b []byte) []byte { b[inodeOff(gNid)] = 3 << 1; return b }, "data layout"},
		{"bad mode", func(b []byte) []byte { le.PutUint16(b[inodeOff(gNid)+4:], 0o070644); return b }, "file type"},
		{"truncated data", func(b []byte) []byte { return b[:len(b)-blockSize] }, ""},
		{"dir cycle", func(b []byte) []byte {
			// make /sub's entry "f" point at /sub itself
			i := bytes.Index(b, []byte("...f"))
			if i < 0 {
				t.Fatal("no dirent names ...f")
			}
			// the dirents of /sub are ".", "..", "f": the third entry's nid
			start := i - 3*direntSize
			le.PutUint64(b[start+2*direntSize:], subNid)
			return b
		}, "cycle"},
		{"dirent nameoff", func(b []byte) []byte {
			i := bytes.Index(b, []byte("...f"))
			start := i - 3*direntSize
			le.PutUint16(b[start+8:], 7)
			return b
		}, "name offset"},
		{"symlink empty", func(b []byte) []byte { le.PutUint64(b[inodeOff(lNid)+8:], 0); return compactSize(b, lNid, 0) }, "symlink target"},
		{"content too big", func(b []byte) []byte { return compactSize(b, gNid, 6000) }, ""},
		{"shared xattr id", func(b []byte) []byte {
			// the shared id follows the 12-byte xattr header of /g
			off := inodeOff(gNid) + inodeCompactSize + xattrHeaderSize
			le.PutUint32(b[off:], 0x7fffffff)
			return b
		}, "shared attribute"},
		{"xattr index", func(b []byte) []byte {
			// the shared table entry: index byte at offset 1
			rd, _ := NewReader(bytes.NewReader(b), int64(len(b)))
			ri, _ := rd.readInode(gNid)
			id := le.Uint32(b[ri.dataOffset()+xattrHeaderSize:])
			b[rd.xattrStart+int64(id)*4+1] = 9
			return b
		}, "name index"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.mutate(bytes.Clone(good))
			_, err := ReadImage(bytes.NewReader(img), int64(len(img)))
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want an ErrFormat error", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// compactSize sets the i_size of a compact inode.
func compactSize(b []byte, nid uint64, size uint32) []byte {
	binary.LittleEndian.PutUint32(b[nid*slotSize+8:], size)
	return b
}

// TestReaderCorruption flips every byte of small images: the reader must
// return a tree or an error, never panic, and whatever it returns must be
// writable or rejected cleanly.
func TestReaderCorruption(t *testing.T) {
	images := [][]byte{
		writeImage(t, sampleTree(t), nil),
		writeImage(t, readGoldenDump(t, "hardlinks"), nil),
	}
	if !testing.Short() {
		images = append(images, writeImage(t, readGoldenDump(t, "t5-special"), nil))
	}
	for _, good := range images {
		for off := 0; off < len(good); off++ {
			if off >= superOffset+superSize && good[off] == 0 && off%16 != 0 {
				continue // mostly padding: sample it
			}
			flips := []byte{0xff}
			if off%3 == 0 {
				flips = append(flips, 0x01)
			}
			for _, x := range flips {
				img := bytes.Clone(good)
				img[off] ^= x
				tree, err := ReadImage(bytes.NewReader(img), int64(len(img)))
				if err != nil {
					if !errors.Is(err, ErrFormat) {
						t.Fatalf("offset %d: error %v does not wrap ErrFormat", off, err)
					}
					continue
				}
				var out bytes.Buffer
				if err := WriteImage(&out, tree, nil); err != nil && !errors.Is(err, ErrWrite) {
					t.Fatalf("offset %d: writing the tree read back: %v", off, err)
				}
				if err := WriteDumpfile(&bytes.Buffer{}, tree); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func TestReaderInfo(t *testing.T) {
	img := writeImage(t, readGoldenDump(t, "t3-xattrs"), nil)
	rd, err := NewReader(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if rd.Version() != 0 || !rd.HasACL() || rd.Inodes() == 0 {
		t.Errorf("version %d, acl %v, inodes %d", rd.Version(), rd.HasACL(), rd.Inodes())
	}
	img = writeImage(t, readGoldenDump(t, "t5-special"), nil)
	rd, _ = NewReader(bytes.NewReader(img), int64(len(img)))
	if rd.Version() != 1 || rd.HasACL() {
		t.Errorf("t5: version %d, acl %v", rd.Version(), rd.HasACL())
	}
}
