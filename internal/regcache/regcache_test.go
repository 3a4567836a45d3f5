package regcache_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/internal/regcache"
	"github.com/cfs-compose/cfs-compose/internal/regcache/regtest"
	"github.com/cfs-compose/cfs-compose/pipeline"
)

// entry is a stage record with every kind of content a record names: an
// output blob, a directory tree, a log, and an object set with its
// composefs objects.
type entry struct {
	rec     *artifacts.Record
	blob    []byte
	objects []string // hex fs-verity digests
}

func openStore(t *testing.T) *artifacts.Store {
	t.Helper()
	st, err := artifacts.Open(context.Background(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func makeEntry(t *testing.T, st *artifacts.Store, key, salt string) *entry {
	t.Helper()
	e := &entry{blob: bytes.Repeat([]byte("disk image "+salt+"\n"), 5000)}
	out, err := st.PutBytes(artifacts.MediaTypeLog, e.blob)
	if err != nil {
		t.Fatal(err)
	}
	logd, err := st.PutBytes(artifacts.MediaTypeLog, []byte("log of "+salt+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := st.TempDir("tree-")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, body string }{{"etc/os-release", "ID=" + salt + "\n"}, {"usr/bin/tool", "#!/bin/sh\n"}} {
		p := filepath.Join(dir, f.name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(dir, "usr/bin/tool"), filepath.Join(dir, "usr/bin/tool2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../etc/os-release", filepath.Join(dir, "usr/os-release")); err != nil {
		t.Fatal(err)
	}
	tree, err := st.AddTree(dir, "application/x-tree")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := objstore.Open(st.ObjectsDir())
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	var set []byte
	for i := range 3 {
		d, _, err := objs.Put(strings.NewReader(strings.Repeat(salt, 1000*(i+1))))
		if err != nil {
			t.Fatal(err)
		}
		e.objects = append(e.objects, fsverity.Hex(d))
		set = append(set, fsverity.Hex(d)+"\n"...)
	}
	setd, err := st.PutBytes("text/plain", set)
	if err != nil {
		t.Fatal(err)
	}
	e.rec = &artifacts.Record{
		Key: key, Kind: "fake", Version: "1", Config: []byte(`{"salt":"` + salt + `"}`),
		Outputs: map[string]artifacts.Output{"image": {Descriptor: out}, "root": {Descriptor: tree}},
		Log:     &logd, ObjectSets: []artifacts.Descriptor{setd}, Tool: "test",
	}
	if err := st.PutRecord(e.rec); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestPushFetch(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth bool
	}{{"anonymous", false}, {"htpasswd", true}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := regtest.Start(t, tc.auth)
			regtest.Isolate(t)
			ctx := context.Background()
			newCache := func(authFile string) *regcache.Cache {
				c, err := regcache.New(reg.Host+"/cfs/cache", regcache.Options{AuthFile: authFile, PlainHTTP: true})
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			builder := openStore(t)
			key := strings.Repeat("ab", 32)
			e := makeEntry(t, builder, key, tc.name)
			c := newCache(reg.AuthFile)
			if err := c.Push(ctx, builder, e.rec); err != nil {
				t.Fatalf("push: %v", err)
			}
			if s := c.Stats(); s.Pushed != 1 || s.BytesPushed < int64(len(e.blob)) {
				t.Errorf("stats after push: %+v", s)
			}
			// A second push of the same entry uploads no blob again.
			before := c.Stats().BytesPushed
			if err := c.Push(ctx, builder, e.rec); err != nil {
				t.Fatalf("second push: %v", err)
			}
			if got := c.Stats().BytesPushed; got != before {
				t.Errorf("second push uploaded %d more bytes, want 0", got-before)
			}

			other := openStore(t)
			c2 := newCache(reg.AuthFile)
			if err := c2.Fetch(ctx, other, strings.Repeat("cd", 32)); !errors.Is(err, pipeline.ErrRemoteMiss) {
				t.Fatalf("fetch of an absent key: %v, want ErrRemoteMiss", err)
			}
			if err := c2.Fetch(ctx, other, key); err != nil {
				t.Fatalf("fetch: %v", err)
			}
			got, err := other.GetRecord(key)
			if err != nil {
				t.Fatalf("record after fetch: %v", err)
			}
			if b, err := other.ReadBlob(got.Outputs["image"].Digest); err != nil || !bytes.Equal(b, e.blob) {
				t.Errorf("fetched blob: %v (equal %v)", err, bytes.Equal(b, e.blob))
			}
			root := got.Outputs["root"].Descriptor
			if d, _, err := artifacts.TreeDigest(other.Path(root)); err != nil || d != root.Digest {
				t.Errorf("fetched tree digest %s, %v; want %s", d, err, root.Digest)
			}
			for _, h := range e.objects {
				if _, err := os.Stat(filepath.Join(other.ObjectsDir(), h[:2], h[2:])); err != nil {
					t.Errorf("composefs object %s not fetched: %v", h, err)
				}
			}
			if s := c2.Stats(); s.Fetched != 1 || s.Misses != 1 || s.BytesPulled < int64(len(e.blob)) {
				t.Errorf("stats after fetch: %+v", s)
			}

			if tc.auth {
				empty := filepath.Join(t.TempDir(), "auth.json")
				if err := os.WriteFile(empty, []byte(`{"auths":{}}`), 0o600); err != nil {
					t.Fatal(err)
				}
				err := newCache(empty).Fetch(ctx, openStore(t), key)
				if err == nil || errors.Is(err, pipeline.ErrRemoteMiss) {
					t.Fatalf("fetch without credentials: %v, want an authentication error", err)
				}
				if !strings.Contains(err.Error(), "credential") {
					t.Errorf("fetch without credentials: %v, want it to say credentials are missing", err)
				}
			}
		})
	}
}

// TestFetchRefusesTamperedBlob changes an output blob's bytes in the
// registry's storage: the fetch is refused and nothing is recorded.
func TestFetchRefusesTamperedBlob(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(e *entry) string // returns the hex digest of the blob to change
	}{
		{"output blob", func(e *entry) string { return e.rec.Outputs["image"].Digest.Hex() }},
		{"log blob", func(e *entry) string { return e.rec.Log.Digest.Hex() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := regtest.Start(t, false)
			regtest.Isolate(t)
			ctx := context.Background()
			c, err := regcache.New(reg.Host+"/cache", regcache.Options{AuthFile: reg.AuthFile, PlainHTTP: true})
			if err != nil {
				t.Fatal(err)
			}
			builder := openStore(t)
			key := strings.Repeat("0f", 32)
			e := makeEntry(t, builder, key, "tamper")
			if err := c.Push(ctx, builder, e.rec); err != nil {
				t.Fatal(err)
			}
			h := tc.tamper(e)
			data := filepath.Join(reg.Dir, "docker/registry/v2/blobs/sha256", h[:2], h, "data")
			b, err := os.ReadFile(data)
			if err != nil {
				t.Fatalf("registry storage layout: %v", err)
			}
			b[0] ^= 0xff // same size, different digest
			if err := os.WriteFile(data, b, 0o644); err != nil {
				t.Fatal(err)
			}
			other := openStore(t)
			err = c.Fetch(ctx, other, key)
			if !errors.Is(err, regcache.ErrRefused) {
				t.Fatalf("fetch of a tampered entry: %v, want ErrRefused", err)
			}
			if !strings.Contains(err.Error(), h[:12]) {
				t.Errorf("error %q does not name the blob %s", err, h[:12])
			}
			if _, err := other.GetRecord(key); !errors.Is(err, artifacts.ErrNotFound) {
				t.Errorf("record after a refused fetch: %v, want not found", err)
			}
			if s := c.Stats(); s.Refused != 1 {
				t.Errorf("stats: %+v, want 1 refused", s)
			}
		})
	}
}

func TestNewRejectsTaggedReference(t *testing.T) {
	for _, ref := range []string{"127.0.0.1:5000/cache:latest", "not a reference"} {
		if _, err := regcache.New(ref, regcache.Options{}); err == nil {
			t.Errorf("New(%q) succeeded", ref)
		}
	}
}
