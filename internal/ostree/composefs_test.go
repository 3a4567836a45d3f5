package ostree

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

// TestComposefs checks ComposefsTree against the rules of libostree's
// ostree-repo-composefs.c (no byte oracle: Debian's ostree is built
// without composefs) and round-trips the image through the composefs
// reader.
func TestComposefs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("SKIPPING: the generated test tree and the bare repository need root (chown, security xattrs)")
	}
	src := t.TempDir()
	if err := makeTree(src, oracleTree); err != nil {
		t.Fatal(err)
	}
	tr, open, err := loadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	w, err := NewWriter(repo, &Options{Open: open, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	root, err := w.WriteTree(tr)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := w.WriteCommit(&Commit{Timestamp: time.Unix(1e9, 0), RootContents: root.Contents, RootMeta: root.Meta})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r := openDir(t, repo)

	// The digest computed from the root before the commit exists is the
	// one of the commit's image with verity.
	pre, err := r.ComposefsDigest(root)
	if err != nil {
		t.Fatal(err)
	}
	post, err := r.WriteComposefs(io.Discard, sum, &ComposefsOptions{Verity: true})
	if err != nil {
		t.Fatal(err)
	}
	if pre != post {
		t.Errorf("ComposefsDigest %x, WriteComposefs with verity %x", pre, post)
	}
	e := ComposefsDigestEntry(pre)
	if b, _ := e.Value.AsBytes(); e.Key != MetaComposefsDigest || !bytes.Equal(b, pre[:]) {
		t.Errorf("ComposefsDigestEntry = %+v", e)
	}

	for _, verity := range []bool{false, true} {
		ct, err := r.ComposefsTree(sum, &ComposefsOptions{Verity: verity})
		if err != nil {
			t.Fatal(err)
		}
		// Every name of the source tree is in the image with the
		// source's metadata.
		err = tr.Walk(func(name string, src *composefs.Inode, _ bool) error {
			ino, err := ct.Lookup(name)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				return nil
			}
			if ino.Mode != src.Mode || ino.UID != src.UID || ino.GID != src.GID || ino.Target != src.Target || ino.Mtime != (composefs.Timespec{}) {
				t.Errorf("%s: %+v, source %+v", name, ino, src)
			}
			var want []composefs.Xattr
			for _, x := range src.Xattrs {
				if x.Value != "" {
					want = append(want, x)
				}
			}
			slices.SortFunc(want, func(a, b composefs.Xattr) int { return strings.Compare(a.Name, b.Name) })
			if !slices.Equal(ino.Xattrs, want) {
				t.Errorf("%s: xattrs %q, want %q", name, ino.Xattrs, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"/usr", "/etc", "/boot", "/var", "/sysroot"} {
			ino, err := ct.Lookup(d)
			if err != nil || ino.Mode != composefs.TypeDir|0o755 || ino.UID != 0 || len(ino.Xattrs) != 0 {
				t.Errorf("root directory %s: %+v %v", d, ino, err)
			}
		}
		// Regular files: payload = object path, digest = fs-verity of the
		// object with Verity; empty files are plain; no hard links.
		for _, name := range []string{"/bigger", "/hardlink", "/small", "/empty", "/same1", "/same2", "/xdir/hard"} {
			ino, err := ct.Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			if ino.Nlink != 1 {
				t.Errorf("%s: nlink %d", name, ino.Nlink)
			}
			data, err := os.ReadFile(filepath.Join(src, name))
			if err != nil {
				t.Fatal(err)
			}
			if len(data) == 0 {
				if ino.Payload != "" || ino.Digest != nil || ino.Size != 0 {
					t.Errorf("%s: empty file %+v", name, ino)
				}
				continue
			}
			h := headerOf(ino)
			h.Xattrs = nil
			for _, x := range ino.Xattrs {
				h.Xattrs = append(h.Xattrs, Xattr{x.Name, x.Value})
			}
			c, err := FileChecksum(h, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if want := ObjectPath(c, ObjectFile)[len("objects/"):]; ino.Payload != want || ino.Size != int64(len(data)) || len(ino.Content) != 0 {
				t.Errorf("%s: payload %q size %d, want %q %d", name, ino.Payload, ino.Size, want, len(data))
			}
			if verity {
				if d := fsverity.Sum(data); ino.Digest == nil || *ino.Digest != d {
					t.Errorf("%s: digest %v, want %x", name, ino.Digest, d)
				}
			} else if ino.Digest != nil {
				t.Errorf("%s: digest without Verity", name)
			}
		}

		var img bytes.Buffer
		d, err := r.WriteComposefs(&img, sum, &ComposefsOptions{Verity: verity})
		if err != nil {
			t.Fatal(err)
		}
		if d != fsverity.Sum(img.Bytes()) {
			t.Errorf("image digest %x is not the image's fs-verity digest", d)
		}
		back, err := composefs.ReadImage(bytes.NewReader(img.Bytes()), int64(img.Len()))
		if err != nil {
			t.Fatal(err)
		}
		var a, b bytes.Buffer
		if err := composefs.WriteDumpfile(&a, ct); err != nil {
			t.Fatal(err)
		}
		if err := composefs.WriteDumpfile(&b, back); err != nil {
			t.Fatal(err)
		}
		// Directory sizes and link counts are computed by the image
		// writer; everything else must survive.
		if na, nb := normalizeDirs(a.String()), normalizeDirs(b.String()); na != nb {
			t.Errorf("image does not round-trip:\ntree:\n%s\nimage:\n%s", na, nb)
		}
		var again bytes.Buffer
		if err := composefs.WriteImage(&again, back, &composefs.WriteOptions{MaxVersion: 1}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Bytes(), img.Bytes()) {
			t.Errorf("the image read back does not write the same image")
		}
	}
}

// normalizeDirs zeroes the size and link count of directory lines of a
// dumpfile.
func normalizeDirs(dump string) string {
	lines := strings.Split(dump, "\n")
	for i, l := range lines {
		f := strings.Split(l, " ")
		if len(f) < 4 {
			continue
		}
		if mode, err := strconv.ParseUint(f[2], 8, 32); err == nil && mode&0o170000 == 0o040000 {
			f[1], f[3] = "0", "0"
			lines[i] = strings.Join(f, " ")
		}
	}
	return strings.Join(lines, "\n")
}
