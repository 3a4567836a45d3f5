package artifacts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBlobWriteCommitAbort(t *testing.T) {
	s := open(t, t.TempDir())
	d, err := s.PutBytes("text/plain", []byte("hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
	if string(d.Digest) != want || d.Size != 6 {
		t.Fatalf("desc = %+v", d)
	}
	info, err := os.Stat(s.BlobPath(d.Digest))
	if err != nil || info.Mode().Perm() != 0o444 {
		t.Fatalf("blob file: %v %v", err, info)
	}
	// Same content again: idempotent.
	if d2, err := s.PutBytes("text/plain", []byte("hello\n")); err != nil || d2 != d {
		t.Fatalf("second put: %v %+v", err, d2)
	}
	w, err := s.NewBlobWriter("x")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("never stored"))
	w.Abort()
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp", s.session)); len(ents) != 0 {
		t.Errorf("aborted blob left %v", ents)
	}
	if _, err := s.OpenBlob(DigestBytes([]byte("never stored"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("aborted blob readable: %v", err)
	}
	if _, err := s.OpenBlob("sha256:zz"); !errors.Is(err, ErrBadDigest) {
		t.Errorf("bad digest: %v", err)
	}
}

func TestAddFileKeepsSparse(t *testing.T) {
	s := open(t, t.TempDir())
	tmp, err := s.TempDir("t-*")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(tmp, "disk.raw")
	f, _ := os.Create(p)
	f.Truncate(64 << 20)
	f.WriteAt([]byte("data"), 32<<20)
	f.Close()
	d, err := s.AddFile(p, MediaTypeOctet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Error("source still present")
	}
	var st syscallStat
	if blocks := st.blocks(t, s.BlobPath(d.Digest)); blocks*512 > 1<<20 {
		t.Errorf("stored file allocates %d bytes; sparse file was filled", blocks*512)
	}
}

func TestStaleSessionsRemoved(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	// A dead process's session: directory + unlocked lock file.
	dead := filepath.Join(dir, "tmp", "deadbeef")
	os.MkdirAll(filepath.Join(dead, "sub"), 0o755)
	os.WriteFile(filepath.Join(dead, "sub", "half"), []byte("x"), 0o644)
	os.WriteFile(dead+".lock", nil, 0o644)
	s2 := open(t, dir) // a second process opening the store
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Error("stale session not removed")
	}
	// The live session of s is untouched.
	if _, err := os.Stat(filepath.Join(dir, "tmp", s.session)); err != nil {
		t.Errorf("live session removed: %v", err)
	}
	_ = s2
}

func TestRecordsGCAndVerify(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	put := func(key, content string, objs ...string) {
		d, err := s.PutBytes("text/plain", []byte(content))
		if err != nil {
			t.Fatal(err)
		}
		r := &Record{Key: key, Kind: "k", Outputs: map[string]Output{"out": {Descriptor: d}}}
		if len(objs) > 0 {
			set, _ := s.PutBytes("text/plain", []byte(strings.Join(objs, "\n")+"\n"))
			r.ObjectSets = []Descriptor{set}
		}
		if err := s.PutRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	obj := func(content string) string {
		// not a real fs-verity name; gc only matches names.
		h := sha256.Sum256([]byte(content))
		name := hex.EncodeToString(h[:])
		p := filepath.Join(s.ObjectsDir(), name[:2], name[2:])
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(content), 0o644)
		return name
	}
	o1, o2 := obj("one"), obj("two")
	put("aaaa", "old", o1)
	put("bbbb", "new", o2)
	now := time.Now()
	s.AddComposeRef(ComposeRef{ID: "c1", Time: now.Add(-time.Hour), Keys: []string{"aaaa"}})
	s.AddComposeRef(ComposeRef{ID: "c2", Time: now, Keys: []string{"bbbb"}})

	if _, err := s.GetRecord("aaaa"); err != nil {
		t.Fatal(err)
	}
	ents, _ := s.List()
	if len(ents) != 2 {
		t.Fatalf("entries = %+v", ents)
	}
	res, err := s.GC(GCOptions{Keep: 1, DryRun: true})
	if err != nil || res.Records != 1 {
		t.Fatalf("dry run: %v %+v", err, res)
	}
	if _, err := s.GetRecord("aaaa"); err != nil {
		t.Fatal("dry run deleted")
	}
	res, err = s.GC(GCOptions{Keep: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 1 || res.Blobs != 2 || res.Objects != 1 {
		t.Errorf("gc = %+v", res)
	}
	if _, err := s.GetRecord("aaaa"); !errors.Is(err, ErrNotFound) {
		t.Error("old record kept")
	}
	if _, err := s.GetRecord("bbbb"); err != nil {
		t.Errorf("kept record: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.ObjectsDir(), o2[:2], o2[2:])); err != nil {
		t.Error("live object removed")
	}
	if _, err := os.Stat(filepath.Join(s.ObjectsDir(), o1[:2], o1[2:])); !os.IsNotExist(err) {
		t.Error("dead object kept")
	}

	// Verify: clean, then corrupt a blob and an object.
	ov := func(r io.Reader) (string, error) {
		h := sha256.New()
		io.Copy(h, r)
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	vr, err := s.Verify(ov)
	if err != nil || len(vr.Problems) != 0 || vr.Objects != 1 {
		t.Fatalf("verify clean: %v %+v", err, vr)
	}
	r, _ := s.GetRecord("bbbb")
	bp := s.BlobPath(r.Outputs["out"].Digest)
	os.Chmod(bp, 0o644)
	os.WriteFile(bp, []byte("NEW"), 0o644)
	op := filepath.Join(s.ObjectsDir(), o2[:2], o2[2:])
	os.WriteFile(op, []byte("tampered"), 0o644)
	vr, _ = s.Verify(ov)
	if len(vr.Problems) != 2 {
		t.Errorf("problems = %+v", vr.Problems)
	}
	// A blob of the wrong size makes the record a miss rather than a hit.
	os.WriteFile(bp, []byte("NE"), 0o644)
	if _, err := s.GetRecord("bbbb"); !errors.Is(err, ErrNotFound) {
		t.Errorf("truncated blob record: %v", err)
	}
}

func TestGCBySize(t *testing.T) {
	s := open(t, t.TempDir())
	for i, k := range []string{"k1", "k2", "k3"} {
		d, _ := s.PutBytes("x", []byte(strings.Repeat("a", 1000*(i+1))))
		s.PutRecord(&Record{Key: k, Outputs: map[string]Output{"o": {Descriptor: d}}})
		ts := time.Now().Add(time.Duration(i) * time.Minute) // k3 most recently used
		os.Chtimes(s.recordPath(k), ts, ts)
	}
	res, err := s.GC(GCOptions{MaxSize: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 1 {
		t.Fatalf("gc = %+v", res)
	}
	if _, err := s.GetRecord("k1"); !errors.Is(err, ErrNotFound) {
		t.Error("least recently used entry kept")
	}
}

func TestComposeIDs(t *testing.T) {
	d := time.Date(2026, 11, 27, 23, 59, 0, 0, time.UTC)
	for typ, want := range map[string]string{"nightly": "Fedora-41-20261127.n.0", "production": "Fedora-41-20261127.0", "test": "Fedora-41-20261127.t.0", "ci": "Fedora-41-20261127.ci.0"} {
		got, err := ComposeSpec{Product: "Fedora", Release: "41", Type: typ, Date: d}.ID(0)
		if err != nil || got != want {
			t.Errorf("%s: %s %v", typ, got, err)
		}
	}
	if _, err := (ComposeSpec{Product: "Fedora", Release: "41", Type: "weekly"}).ID(0); err == nil {
		t.Error("unknown type accepted")
	}
}

func TestComposeRespinAndStalePartial(t *testing.T) {
	out := t.TempDir()
	spec := ComposeSpec{Product: "Fedora", Release: "41", Type: "nightly", Date: time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)}
	// A crashed compose's working directory (no lock holder).
	os.MkdirAll(filepath.Join(out, ".Fedora-41-20261127.n.0.partial", "x"), 0o755)
	c, err := NewCompose(out, spec)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "Fedora-41-20261127.n.0" {
		t.Errorf("id = %s (stale partial should have been removed and respin 0 reused)", c.ID)
	}
	c2, err := NewCompose(out, spec) // concurrent compose: next respin
	if err != nil {
		t.Fatal(err)
	}
	if c2.ID != "Fedora-41-20261127.n.1" {
		t.Errorf("concurrent id = %s", c2.ID)
	}
	if err := c.Finish(StatusFinished); err != nil {
		t.Fatal(err)
	}
	c2.Discard()
	ents, _ := os.ReadDir(out)
	if len(ents) != 1 || ents[0].Name() != "Fedora-41-20261127.n.0" {
		var n []string
		for _, e := range ents {
			n = append(n, e.Name())
		}
		t.Errorf("out = %v", n)
	}
}

func TestSparseBlobWriter(t *testing.T) {
	block := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
	for _, tc := range []struct {
		name    string
		content []byte
		chunk   int  // write size
		holes   bool // the stored file must have holes
	}{
		{"all zero", block(0, 1<<20), 65536, true},
		{"data between holes", append(append(block(0, 8192), block('x', 5000)...), block(0, 1<<20)...), 3000, true},
		{"unaligned small writes", append(block('a', 10), block(0, 300000)...), 777, true},
		{"no zeros", block('z', 100000), 4096, false},
		{"short zero tail", append(block('q', 4096), block(0, 100)...), 10, false},
		{"empty", nil, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t, t.TempDir())
			w, err := st.NewBlobWriter("application/octet-stream")
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			w.Sparse()
			for off := 0; off < len(tc.content); off += tc.chunk {
				end := min(off+tc.chunk, len(tc.content))
				if n, err := w.Write(tc.content[off:end]); err != nil || n != end-off {
					t.Fatalf("write: %d, %v", n, err)
				}
			}
			d, err := w.Commit()
			if err != nil {
				t.Fatal(err)
			}
			if want := DigestBytes(tc.content); d.Digest != want || d.Size != int64(len(tc.content)) {
				t.Errorf("descriptor %s/%d, want %s/%d", d.Digest, d.Size, want, len(tc.content))
			}
			got, err := st.ReadBlob(d.Digest)
			if err != nil || !bytes.Equal(got, tc.content) {
				t.Fatalf("read back: %v (equal %v)", err, bytes.Equal(got, tc.content))
			}
			var sys unix.Stat_t
			if err := unix.Stat(st.BlobPath(d.Digest), &sys); err != nil {
				t.Fatal(err)
			}
			if allocated := sys.Blocks * 512; tc.holes && allocated >= int64(len(tc.content)) {
				t.Errorf("%d bytes allocated for %d bytes of mostly zeros: no holes", allocated, len(tc.content))
			}
		})
	}
}
