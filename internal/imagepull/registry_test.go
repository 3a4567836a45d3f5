package imagepull

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// testRegistry is the in-memory test registry with this package's
// helpers.
type testRegistry struct{ *ti.Registry }

func newTestRegistry(t *testing.T) *testRegistry { return &testRegistry{ti.NewRegistry(t)} }

// acceptPolicy writes an accept-anything policy.json and resolves it.
func (tr *testRegistry) acceptPolicy(t *testing.T) PolicySpec {
	t.Helper()
	ps, err := ResolvePolicy(tr.AcceptPolicyFile(t), "")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func (tr *testRegistry) pull(t *testing.T, ref, arch string, ps PolicySpec, opts ImportOptions) (*Pulled, error) {
	t.Helper()
	r, err := ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return Pull(context.Background(), r, &PullOptions{Arch: arch, Policy: ps, Sys: tr.Sys, Import: opts})
}

func TestRegistryBlobCache(t *testing.T) {
	tr := newTestRegistry(t)
	tr.Push(t, ti.Build(t, ti.MultiArch()[0]), "img:1")
	ref := "docker://" + tr.Host + "/img:1"
	ps := tr.acceptPolicy(t)
	st, objs := openStore(t)
	before := tr.BlobGets.Load()
	p, err := tr.pull(t, ref, "x86_64", ps, ImportOptions{Objects: objs, Cache: st})
	if err != nil {
		t.Fatal(err)
	}
	fetched := tr.BlobGets.Load() - before
	if fetched != 3 || p.LayersFromCache != 0 { // config + 2 layers
		t.Fatalf("first pull fetched %d blobs, %d layers from cache", fetched, p.LayersFromCache)
	}
	for _, l := range p.Image.Layers {
		if !st.has(l.Digest) {
			t.Errorf("layer %s not cached in the store", l.Digest)
		}
	}
	// A fresh object store defeats the import cache: the layers come
	// from the blob cache, not the registry (only the config is fetched).
	_, objs2 := openStore(t)
	before = tr.BlobGets.Load()
	p2, err := tr.pull(t, ref, "x86_64", ps, ImportOptions{Objects: objs2, Cache: st})
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.BlobGets.Load() - before; got != 1 || p2.LayersFromCache != 2 || p2.Cached {
		t.Errorf("second pull fetched %d blobs, %d layers from cache, cached %v", got, p2.LayersFromCache, p2.Cached)
	}
	// Same store and objects: the import cache answers.
	p3, err := tr.pull(t, ref, "x86_64", ps, ImportOptions{Objects: objs2, Cache: st})
	if err != nil || !p3.Cached {
		t.Errorf("third pull cached = %v, %v", p3 != nil && p3.Cached, err)
	}
}

func TestRegistryErrors(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name    string
		ref     func(tr *testRegistry) string
		tamper  func(layer string) func(http.ResponseWriter, *http.Request) bool
		want    error
		wantMsg string
	}{
		{name: "unreachable registry", ref: func(*testRegistry) string { return "docker://" + deadAddr + "/img:1" }, want: ErrUnreachable, wantMsg: deadAddr},
		{name: "unknown image", ref: func(tr *testRegistry) string { return "docker://" + tr.Host + "/nothere:1" }, want: ErrUnknownImage, wantMsg: "nothere"},
		{name: "unknown tag", ref: func(tr *testRegistry) string { return "docker://" + tr.Host + "/img:2" }, want: ErrUnknownImage, wantMsg: "img:2"},
		{name: "auth failure", tamper: func(string) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
		}, want: ErrAuth, wantMsg: "img:1"},
		{name: "corrupt blob", tamper: func(layer string) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, layer) {
					return false
				}
				b := []byte(strings.Repeat("corrupt!", 512))
				w.Header().Set("Content-Length", strconv.Itoa(len(b)))
				w.Write(b)
				return true
			}
		}, want: ErrDigestMismatch, wantMsg: "layer 2 (sha256:"},
		{name: "truncated layer", tamper: func(layer string) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, layer) {
					return false
				}
				w.Header().Set("Content-Length", "100000")
				w.WriteHeader(http.StatusOK)
				w.Write([]byte(strings.Repeat("x", 1000)))
				if hj, ok := w.(http.Hijacker); ok {
					c, _, _ := hj.Hijack()
					c.Close()
				}
				return true
			}
		}, want: ErrTruncated, wantMsg: "layer 2 (sha256:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRegistry(t)
			tr.Push(t, ti.Build(t, ti.MultiArch()[0]), "img:1")
			ps := tr.acceptPolicy(t)
			ref := "docker://" + tr.Host + "/img:1"
			if tc.ref != nil {
				ref = tc.ref(tr)
			}
			r, _ := ParseReference("docker://" + tr.Host + "/img:1")
			img, err := Open(context.Background(), r, "x86_64", tr.Sys)
			if err != nil {
				t.Fatal(err)
			}
			img.Close()
			if tc.tamper != nil {
				tr.Tamper.Store(tc.tamper(img.Layers[1].Digest.String()))
			}
			st, objs := openStore(t)
			_, err = tr.pull(t, ref, "x86_64", ps, ImportOptions{Objects: objs, Cache: st})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want %v with %q", err, tc.want, tc.wantMsg)
			}
			// Nothing half-written: the damaged layer is not in the store.
			if st.has(img.Layers[1].Digest) {
				t.Errorf("damaged layer committed to the store")
			}
			if len(st.imports) != 0 {
				t.Errorf("imports cached: %v", st.imports)
			}
		})
	}
}
