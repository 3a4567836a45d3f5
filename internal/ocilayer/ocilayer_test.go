package ocilayer

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures/ocilayout"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// layerTar builds an uncompressed layer.
func layerTar(t testing.TB, entries ...ti.Entry) []byte {
	t.Helper()
	b, err := ocilayout.TarBytes(entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawTar builds a layer from headers written verbatim (for names and
// types the helpers refuse to make).
func rawTar(t testing.TB, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// concurrency levels every test runs with.
var concurrency = []int{1, 4}

// hugeHeader returns a layer whose first entry is a special header (PAX
// records or a GNU long name) of size bytes, followed by a regular file.
func hugeHeader(t testing.TB, typ byte, size int) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "special", Mode: 0o644, Size: int64(size), Format: tar.FormatUSTAR}); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("9 k=v\n"), size/6+1)[:size]
	tw.Write(body)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644, Format: tar.FormatUSTAR})
	tw.Close()
	b := buf.Bytes()
	// Turn the first entry into the special type and fix its checksum.
	b[156] = typ
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

// dump applies layers to a fresh tree and returns its dumpfile.
func dump(t testing.TB, workers int, layers ...[]byte) (string, error) {
	t.Helper()
	tree := composefs.NewTree()
	a := NewApplier(tree, nil)
	a.SetConcurrency(workers)
	defer a.Close()
	for _, l := range layers {
		if err := a.Apply(bytes.NewReader(l)); err != nil {
			return "", err
		}
	}
	SetDirLinks(tree)
	var buf bytes.Buffer
	if err := composefs.WriteDumpfile(&buf, tree); err != nil {
		t.Fatal(err)
	}
	return buf.String(), nil
}

func TestApply(t *testing.T) {
	e := "1704067200.0" // ti.Epoch
	tests := []struct {
		name   string
		layers [][]ti.Entry
		want   []string // dumpfile lines (root line first)
	}{
		{
			name:   "basic types",
			layers: [][]ti.Entry{{ti.Dir("etc", 0o755), ti.File("etc/f", "hi\n", 0o644), ti.Symlink("etc/l", "f"), ti.CharDev("null", 1, 3, 0o666), ti.BlockDev("loop", 7, 200, 0o660, ti.Owner(0, 6)), ti.Fifo("fifo", 0o600), ti.File("empty", "", 0o644)}},
			want: []string{
				"/ 4096 40755 3 0 0 0 0.0 - - -",
				"/empty 0 100644 1 0 0 0 " + e + " - - -",
				"/etc 0 40755 2 0 0 0 " + e + " - - -",
				"/etc/f 3 100644 1 0 0 0 " + e + " - hi\\n -",
				"/etc/l 1 120777 1 0 0 0 " + e + " f - -",
				"/fifo 0 10600 1 0 0 0 " + e + " - - -",
				"/loop 0 60660 1 0 6 1992 " + e + " - - -",
				"/null 0 20666 1 0 0 259 " + e + " - - -",
			},
		},
		{
			name: "special bits, owner, nsec mtime, xattrs sorted",
			layers: [][]ti.Entry{{
				ti.File("suid", "x", 0o4755), ti.File("sgid", "x", 0o2711, ti.Owner(1000, 2000)),
				ti.Dir("sticky", 0o1777, ti.MTime(time.Unix(5, 123456789)), func(h *tar.Header) { h.Format = tar.FormatPAX }),
				ti.File("x", "x", 0o644, ti.Xattr("user.b", "2"), ti.Xattr("security.selinux", "system_u:object_r:bin_t:s0"), ti.Xattr("user.a", "1"), ti.Capability(1<<13, true)),
			}},
			want: []string{
				"/ 4096 40755 3 0 0 0 0.0 - - -",
				"/sgid 1 102711 1 1000 2000 0 " + e + " - x -",
				"/sticky 0 41777 2 0 0 0 5.123456789 - - -",
				"/suid 1 104755 1 0 0 0 " + e + " - x -",
				"/x 1 100644 1 0 0 0 " + e + " - x - security.capability=\\x01\\x00\\x00\\x02\\x00\\x20\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00 security.selinux=system_u:object_r:bin_t:s0 user.a=1 user.b=2",
			},
		},
		{
			name: "whiteouts and opaque directories across layers",
			layers: [][]ti.Entry{
				{ti.Dir("a", 0o755), ti.File("a/keep", "k", 0o644), ti.File("a/gone", "g", 0o644), ti.Dir("o", 0o755), ti.File("o/old", "o", 0o644), ti.Dir("o/sub", 0o755), ti.File("o/sub/deep", "d", 0o644), ti.Dir("d", 0o755), ti.File("d/x", "x", 0o644)},
				{ti.Whiteout("a/gone"), ti.Whiteout("d"), ti.File("o/new", "n", 0o644), ti.Opaque("o"), ti.Whiteout("nonexistent"), ti.Whiteout("a/keep/below")},
			},
			want: []string{
				"/ 4096 40755 4 0 0 0 0.0 - - -",
				"/a 0 40755 2 0 0 0 " + e + " - - -",
				"/a/keep 1 100644 1 0 0 0 " + e + " - k -",
				"/o 0 40755 2 0 0 0 " + e + " - - -",
				"/o/new 1 100644 1 0 0 0 " + e + " - n -",
			},
		},
		{
			name: "same-layer whiteout does not remove what the layer created",
			layers: [][]ti.Entry{
				{ti.Dir("d", 0o755), ti.File("d/old", "o", 0o644)},
				{ti.File("d/new", "n", 0o644), ti.Whiteout("d/new"), ti.Dir("d/sub", 0o700), ti.Whiteout("d")},
			},
			want: []string{
				"/ 4096 40755 3 0 0 0 0.0 - - -",
				"/d 0 40755 3 0 0 0 " + e + " - - -",
				"/d/new 1 100644 1 0 0 0 " + e + " - n -",
				"/d/sub 0 40700 2 0 0 0 " + e + " - - -",
			},
		},
		{
			name: "hardlinks become copies, also across layers",
			layers: [][]ti.Entry{
				{ti.File("a", "A", 0o640, ti.Owner(5, 6), ti.Xattr("user.k", "v")), ti.Hardlink("b", "a")},
				{ti.Hardlink("c", "/a"), ti.File("a", "new", 0o644)},
			},
			want: []string{
				"/ 4096 40755 2 0 0 0 0.0 - - -",
				"/a 3 100644 1 0 0 0 " + e + " - new -",
				"/b 1 100640 1 5 6 0 " + e + " - A - user.k=v",
				"/c 1 100640 1 5 6 0 " + e + " - A - user.k=v",
			},
		},
		{
			name: "file replaced by directory and back",
			layers: [][]ti.Entry{
				{ti.File("x", "file", 0o644)},
				{ti.Dir("x", 0o700), ti.File("x/in", "i", 0o644)},
				{ti.File("x", "file again", 0o600)},
			},
			want: []string{
				"/ 4096 40755 2 0 0 0 0.0 - - -",
				"/x 10 100600 1 0 0 0 " + e + " - file\\x20again -",
			},
		},
		{
			name: "directory over directory keeps entries, replaces metadata and xattrs",
			layers: [][]ti.Entry{
				{ti.Dir("d", 0o755, ti.Xattr("user.old", "1")), ti.File("d/f", "f", 0o644)},
				{ti.Dir("d", 0o711, ti.Owner(1, 2), ti.Xattr("user.new", "2"))},
			},
			want: []string{
				"/ 4096 40755 3 0 0 0 0.0 - - -",
				"/d 0 40711 2 1 2 0 " + e + " - - - user.new=2",
				"/d/f 1 100644 1 0 0 0 " + e + " - f -",
			},
		},
		{
			name:   "duplicate entries: the last one wins",
			layers: [][]ti.Entry{{ti.File("f", "one", 0o644), ti.File("f", "two", 0o600), ti.Symlink("s", "a"), ti.Symlink("s", "b")}},
			want: []string{
				"/ 4096 40755 2 0 0 0 0.0 - - -",
				"/f 3 100600 1 0 0 0 " + e + " - two -",
				"/s 1 120777 1 0 0 0 " + e + " b - -",
			},
		},
		{
			name:   "parents resolve through symlinks inside the tree",
			layers: [][]ti.Entry{{ti.Dir("usr", 0o755), ti.Dir("usr/lib", 0o755), ti.Symlink("lib", "usr/lib"), ti.Symlink("abs", "/usr/lib"), ti.Symlink("up", "../../../usr"), ti.File("lib/a", "a", 0o644), ti.File("abs/b", "b", 0o644), ti.File("up/lib/c", "c", 0o644)}},
			want: []string{
				"/ 4096 40755 3 0 0 0 0.0 - - -",
				"/abs 8 120777 1 0 0 0 " + e + " /usr/lib - -",
				"/lib 7 120777 1 0 0 0 " + e + " usr/lib - -",
				"/up 12 120777 1 0 0 0 " + e + " ../../../usr - -",
				"/usr 0 40755 3 0 0 0 " + e + " - - -",
				"/usr/lib 0 40755 2 0 0 0 " + e + " - - -",
				"/usr/lib/a 1 100644 1 0 0 0 " + e + " - a -",
				"/usr/lib/b 1 100644 1 0 0 0 " + e + " - b -",
				"/usr/lib/c 1 100644 1 0 0 0 " + e + " - c -",
			},
		},
		{
			name:   "missing parents are created",
			layers: [][]ti.Entry{{ti.File("a/b/c", "c", 0o644)}},
			want: []string{
				"/ 4096 40755 3 0 0 0 0.0 - - -",
				"/a 0 40755 3 0 0 0 " + e + " - - -",
				"/a/b 0 40755 2 0 0 0 " + e + " - - -",
				"/a/b/c 1 100644 1 0 0 0 " + e + " - c -",
			},
		},
		{
			name:   "root entry sets root metadata",
			layers: [][]ti.Entry{{ti.Dir(".", 0o700, ti.Owner(1, 1))}},
			want:   []string{"/ 4096 40700 2 1 1 0 " + e + " - - -"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var layers [][]byte
			for _, l := range tc.layers {
				layers = append(layers, layerTar(t, l...))
			}
			for _, workers := range concurrency {
				got, err := dump(t, workers, layers...)
				if err != nil {
					t.Fatal(err)
				}
				// Directory sizes are informational; compare the rest.
				want := strings.Join(tc.want, "\n") + "\n"
				if normSize(got) != normSize(want) {
					t.Errorf("%d workers: dump:\n%s\nwant:\n%s", workers, got, want)
				}
			}
		})
	}
}

// normSize blanks the SIZE field of directory lines.
func normSize(dump string) string {
	lines := strings.Split(dump, "\n")
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) > 2 && strings.HasPrefix(f[2], "40") {
			f[1] = "D"
			lines[i] = strings.Join(f, " ")
		}
	}
	return strings.Join(lines, "\n")
}

func TestApplyHostile(t *testing.T) {
	hdr := func(typ byte, name, link string) *tar.Header {
		return &tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o644, ModTime: time.Unix(1, 0)}
	}
	tests := []struct {
		name    string
		layers  [][]byte
		want    []string // paths that must exist
		wantNot []string // paths that must not exist
		err     error    // expected error (errors.Is), nil for success
		errText string
	}{
		{name: "dotdot climbs no higher than the root", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, "../../etc/passwd", ""), hdr(tar.TypeReg, "a/../../../b", ""))}, want: []string{"/etc/passwd", "/b"}},
		{name: "absolute names stay inside", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, "/abs/file", ""), hdr(tar.TypeDir, "//x//y/", ""))}, want: []string{"/abs/file", "/x/y"}},
		{name: "symlink escaping the root is resolved inside", layers: [][]byte{rawTar(t, hdr(tar.TypeSymlink, "evil", "../../../../etc"), hdr(tar.TypeReg, "evil/shadow", ""))}, want: []string{"/etc/shadow", "/evil"}},
		{name: "hardlink to a missing target", layers: [][]byte{rawTar(t, hdr(tar.TypeLink, "l", "nothere"))}, err: ErrHardlink},
		{name: "hardlink outside the tree is clamped and missing", layers: [][]byte{rawTar(t, hdr(tar.TypeLink, "l", "../../etc/passwd"))}, err: ErrHardlink},
		{name: "hardlink to a directory", layers: [][]byte{rawTar(t, hdr(tar.TypeDir, "d", ""), hdr(tar.TypeLink, "l", "d"))}, err: ErrHardlink},
		{name: "hardlink to itself", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, "f", ""), hdr(tar.TypeLink, "f", "f"))}, err: ErrHardlink},
		{name: "hardlink through a symlinked parent", layers: [][]byte{rawTar(t, hdr(tar.TypeDir, "real", ""), hdr(tar.TypeReg, "real/f", ""), hdr(tar.TypeSymlink, "alias", "real"), hdr(tar.TypeLink, "copy", "alias/f"))}, want: []string{"/copy", "/real/f"}},
		{name: "root replaced by a file", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, ".", ""))}, err: ErrRootType},
		{name: "file used as a parent directory", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, "f", ""), hdr(tar.TypeReg, "f/g", ""))}, err: ErrNotDir},
		{name: "symlink loop", layers: [][]byte{rawTar(t, hdr(tar.TypeSymlink, "a", "b"), hdr(tar.TypeSymlink, "b", "a"), hdr(tar.TypeReg, "a/x", ""))}, err: ErrLoop},
		{name: "empty symlink target", layers: [][]byte{rawTar(t, hdr(tar.TypeSymlink, "s", ""))}, err: composefs.ErrInvalidInode},
		{name: "name component too long", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, strings.Repeat("n", 256), ""))}, err: composefs.ErrInvalidPath},
		{name: "xattr value too large", layers: [][]byte{rawTar(t, &tar.Header{Typeflag: tar.TypeReg, Name: "x", Mode: 0o644, PAXRecords: map[string]string{"SCHILY.xattr.user.big": strings.Repeat("v", 40000)}})}, err: composefs.ErrInvalidXattr},
		{name: "device number too large", layers: [][]byte{rawTar(t, &tar.Header{Typeflag: tar.TypeChar, Name: "c", Mode: 0o644, Devmajor: 1 << 20, Devminor: 1})}, err: composefs.ErrInvalidInode},
		{name: "unsupported entry type", layers: [][]byte{rawTar(t, &tar.Header{Typeflag: 'Z', Name: "z", Mode: 0o644})}, err: ErrUnsupported},
		{name: "truncated layer", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, "a", ""), &tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: 5000})[:1536]}, errText: "unexpected EOF"},
		{name: "huge PAX header", layers: [][]byte{hugeHeader(t, tar.TypeXHeader, 2<<20)}, err: tar.ErrFieldTooLong},
		{name: "huge GNU long name", layers: [][]byte{hugeHeader(t, tar.TypeGNULongName, 2<<20)}, err: tar.ErrFieldTooLong},
		{name: "garbage", layers: [][]byte{bytes.Repeat([]byte{0xff}, 1024)}, errText: "reading layer"},
		{name: "pax global header ignored", layers: [][]byte{rawTar(t, &tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "g", PAXRecords: map[string]string{"comment": "x"}}, hdr(tar.TypeReg, "f", ""))}, want: []string{"/f"}, wantNot: []string{"/g"}},
		{name: "whiteout through a symlinked parent", layers: [][]byte{
			rawTar(t, hdr(tar.TypeDir, "real", ""), hdr(tar.TypeReg, "real/f", ""), hdr(tar.TypeSymlink, "alias", "real")),
			rawTar(t, hdr(tar.TypeReg, "alias/.wh.f", "")),
		}, want: []string{"/alias", "/real"}, wantNot: []string{"/real/f"}},
		{name: "opaque marker on a missing directory", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, "nope/.wh..wh..opq", ""))}, wantNot: []string{"/nope"}},
		// issue 13 item 23: whiteouts that name no entry, and names below whiteouts.
		{name: "whiteout of no name", layers: [][]byte{rawTar(t, hdr(tar.TypeDir, "d0", ""), hdr(tar.TypeReg, "d0/f", "")), rawTar(t, hdr(tar.TypeReg, "d0/.wh.", ""))}, err: ErrWhiteout, errText: `entry "d0/.wh.": ocilayer: invalid whiteout: ".wh." names no entry to remove`},
		{name: "whiteout of dot", layers: [][]byte{rawTar(t, hdr(tar.TypeDir, "d0", "")), rawTar(t, hdr(tar.TypeReg, "d0/.wh..", ""))}, err: ErrWhiteout, errText: `".wh.." names no entry`},
		{name: "whiteout of dotdot", layers: [][]byte{rawTar(t, hdr(tar.TypeDir, "d0/d1", "")), rawTar(t, hdr(tar.TypeReg, "d0/d1/.wh...", ""))}, err: ErrWhiteout, errText: `".wh..." names no entry`},
		{name: "whiteout of no name at the root", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, ".wh.", ""))}, err: ErrWhiteout},
		{name: "directory named like the opaque marker", layers: [][]byte{
			rawTar(t, hdr(tar.TypeDir, "d", ""), hdr(tar.TypeReg, "d/keep", "")),
			rawTar(t, hdr(tar.TypeDir, "d/.wh..wh..opq/", ""), hdr(tar.TypeReg, "d/.wh..wh..opq/x", ""), hdr(tar.TypeDir, "d/.wh..wh..opq/sub/", ""), hdr(tar.TypeReg, "d/new", "")),
		}, want: []string{"/d", "/d/new"}, wantNot: []string{"/d/.wh..wh..opq", "/d/keep"}},
		{name: "AUFS metadata is skipped", layers: [][]byte{rawTar(t, hdr(tar.TypeDir, ".wh..wh.plnk/", ""), hdr(tar.TypeReg, ".wh..wh.plnk/123", ""), hdr(tar.TypeReg, ".wh..wh.aufs", ""), hdr(tar.TypeReg, "f", ""))}, want: []string{"/f"}, wantNot: []string{"/.wh..wh.plnk", "/.wh..wh.aufs", "/.wh.plnk"}},
		{name: "entry below a whiteout name", layers: [][]byte{rawTar(t, hdr(tar.TypeReg, "d/.wh.x/f", ""))}, err: ErrWhiteout, errText: `entry inside ".wh.x", a whiteout name`},
	}
	for _, tc := range tests {
		for _, workers := range concurrency {
			t.Run(fmt.Sprintf("%s/%d", tc.name, workers), func(t *testing.T) {
				tree := composefs.NewTree()
				a := NewApplier(tree, nil)
				a.SetConcurrency(workers)
				defer a.Close()
				var err error
				for _, l := range tc.layers {
					if err = a.Apply(bytes.NewReader(l)); err != nil {
						break
					}
				}
				switch {
				case tc.err != nil || tc.errText != "":
					if err == nil {
						t.Fatalf("no error, want %v %q", tc.err, tc.errText)
					}
					if tc.err != nil && !errors.Is(err, tc.err) {
						t.Fatalf("err = %v, want %v", err, tc.err)
					}
					if !strings.Contains(err.Error(), tc.errText) {
						t.Fatalf("err = %v, want text %q", err, tc.errText)
					}
					if again := a.Apply(bytes.NewReader(nil)); again != err {
						t.Errorf("error not sticky: %v", again)
					}
					return
				case err != nil:
					t.Fatal(err)
				}
				for _, p := range tc.want {
					if _, err := tree.Lookup(p); err != nil {
						t.Errorf("%s missing: %v", p, err)
					}
				}
				for _, p := range tc.wantNot {
					if _, err := tree.Lookup(p); err == nil {
						t.Errorf("%s present", p)
					}
				}
			})
		}
	}
}

func TestApplyObjects(t *testing.T) {
	for _, workers := range concurrency {
		t.Run(fmt.Sprint(workers), func(t *testing.T) { testApplyObjects(t, workers) })
	}
}

func testApplyObjects(t *testing.T, workers int) {
	dir := t.TempDir()
	st, err := objstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	big := strings.Repeat("composefs\n", 1000)
	exact := strings.Repeat("6", composefs.InlineThreshold)
	over := strings.Repeat("7", composefs.InlineThreshold+1)
	tree := composefs.NewTree()
	a := NewApplier(tree, st)
	a.SetConcurrency(workers)
	defer a.Close()
	if err := a.Apply(bytes.NewReader(layerTar(t, ti.File("big", big, 0o644), ti.File("exact", exact, 0o644), ti.File("over", over, 0o644), ti.Hardlink("big2", "big")))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path    string
		content string
		inline  bool
	}{{"/big", big, false}, {"/big2", big, false}, {"/exact", exact, true}, {"/over", over, false}} {
		ino, err := tree.Lookup(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if tc.inline {
			if string(ino.Content) != tc.content || ino.Digest != nil {
				t.Errorf("%s: want inline content", tc.path)
			}
			continue
		}
		want := fsverity.Sum([]byte(tc.content))
		if ino.Digest == nil || *ino.Digest != want || ino.Payload != composefs.ObjectPath(want) || ino.Content != nil {
			t.Errorf("%s: digest/payload not set for an object", tc.path)
			continue
		}
		f, err := st.Open(want)
		if err != nil {
			t.Fatalf("%s: object missing: %v", tc.path, err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if string(b) != tc.content {
			t.Errorf("%s: object content differs", tc.path)
		}
	}
	s := a.Stats()
	if s.Entries != 4 || s.Files != 4 || s.Objects != 2 || s.Bytes != int64(len(big)+len(exact)+len(over)) {
		t.Errorf("stats = %+v", s)
	}
}

func FuzzApply(f *testing.F) {
	f.Add(layerTar(f, ti.Sample(ti.Uncompressed).Layers[0].Entries...))
	f.Add(layerTar(f, ti.Sample(ti.Uncompressed).Layers[1].Entries...))
	f.Add(rawTar(f, &tar.Header{Typeflag: tar.TypeSymlink, Name: "a", Linkname: "../a"}, &tar.Header{Typeflag: tar.TypeReg, Name: "a/b"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		tree := composefs.NewTree()
		a := NewApplier(tree, nil)
		base := layerTar(t, ti.Dir("d", 0o755), ti.File("d/f", "x", 0o644))
		if err := a.Apply(bytes.NewReader(base)); err != nil {
			t.Fatal(err)
		}
		if a.Apply(bytes.NewReader(b)) != nil {
			return
		}
		// Whatever was applied must serialize.
		if err := composefs.WriteDumpfile(io.Discard, tree); err != nil {
			t.Fatal(err)
		}
	})
}
