package imagepull

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
	"github.com/google/go-containerregistry/pkg/registry"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
)

// testRegistry is an in-memory registry on a loopback port.
type testRegistry struct {
	host      string
	blobGets  atomic.Int64
	tamper    atomic.Value // func(w http.ResponseWriter, r *http.Request) bool: true when handled
	srv       *httptest.Server
	sys       *types.SystemContext
	policyDir string
}

var blobPath = regexp.MustCompile(`^/v2/.+/blobs/(sha256:[0-9a-f]{64})$`)

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	inner := registry.New(registry.Logger(nilLogger()))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := tr.tamper.Load().(func(http.ResponseWriter, *http.Request) bool); ok && f != nil && f(w, r) {
			return
		}
		if r.Method == http.MethodGet && blobPath.MatchString(r.URL.Path) {
			tr.blobGets.Add(1)
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "registries.conf.d"), 0o755)
	auth := filepath.Join(dir, "auth.json")
	os.WriteFile(auth, []byte(`{"auths":{}}`), 0o600)
	tr.sys = &types.SystemContext{
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue,
		SystemRegistriesConfPath:    conf, SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d"),
		AuthFilePath: auth, BigFilesTemporaryDir: dir,
	}
	tr.policyDir = dir
	return tr
}

// acceptPolicy writes an accept-anything policy.json and resolves it.
func (tr *testRegistry) acceptPolicy(t *testing.T) PolicySpec {
	t.Helper()
	p := filepath.Join(tr.policyDir, "policy.json")
	os.WriteFile(p, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	ps, err := ResolvePolicy(p, "")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// push copies every image of an oci: layout to docker://HOST/repo:tag.
func (tr *testRegistry) push(t *testing.T, layoutRef, repoTag string) {
	t.Helper()
	src, err := ParseReference(layoutRef)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := ParseReference("docker://" + tr.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	pc, _ := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	defer pc.Destroy()
	if _, err := copy.Image(context.Background(), pc, dst.Ref, src.Ref, &copy.Options{
		ImageListSelection: copy.CopyAllImages, DestinationCtx: tr.sys, SourceCtx: tr.sys,
	}); err != nil {
		t.Fatalf("pushing to the test registry: %v", err)
	}
}

func (tr *testRegistry) pull(t *testing.T, ref, arch string, ps PolicySpec, opts ImportOptions) (*Pulled, error) {
	t.Helper()
	r, err := ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return Pull(context.Background(), r, &PullOptions{Arch: arch, Policy: ps, Sys: tr.sys, Import: opts})
}

func multiArch() []ti.Image {
	amd := ti.Image{Architecture: "amd64", Layers: []ti.Layer{{Compression: ti.Gzip, Entries: bootableEntries("x86_64")}, ti.Sample(ti.Zstd).Layers[0]}}
	arm := ti.Image{Architecture: "arm64", Variant: "v8", Layers: []ti.Layer{{Compression: ti.Zstd, Entries: bootableEntries("aarch64")}}}
	return []ti.Image{amd, arm}
}

func TestRegistryBlobCache(t *testing.T) {
	tr := newTestRegistry(t)
	tr.push(t, "oci:"+ti.Build(t, multiArch()[0])+":"+ti.Tag, "img:1")
	ref := "docker://" + tr.host + "/img:1"
	ps := tr.acceptPolicy(t)
	st, objs := openStore(t)
	before := tr.blobGets.Load()
	p, err := tr.pull(t, ref, "x86_64", ps, ImportOptions{Objects: objs, Cache: st})
	if err != nil {
		t.Fatal(err)
	}
	fetched := tr.blobGets.Load() - before
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
	before = tr.blobGets.Load()
	p2, err := tr.pull(t, ref, "x86_64", ps, ImportOptions{Objects: objs2, Cache: st})
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.blobGets.Load() - before; got != 1 || p2.LayersFromCache != 2 || p2.Cached {
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
		{name: "unknown image", ref: func(tr *testRegistry) string { return "docker://" + tr.host + "/nothere:1" }, want: ErrUnknownImage, wantMsg: "nothere"},
		{name: "unknown tag", ref: func(tr *testRegistry) string { return "docker://" + tr.host + "/img:2" }, want: ErrUnknownImage, wantMsg: "img:2"},
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
			tr.push(t, "oci:"+ti.Build(t, multiArch()[0])+":"+ti.Tag, "img:1")
			ps := tr.acceptPolicy(t)
			ref := "docker://" + tr.host + "/img:1"
			if tc.ref != nil {
				ref = tc.ref(tr)
			}
			r, _ := ParseReference("docker://" + tr.host + "/img:1")
			img, err := Open(context.Background(), r, "x86_64", tr.sys)
			if err != nil {
				t.Fatal(err)
			}
			img.Close()
			if tc.tamper != nil {
				tr.tamper.Store(tc.tamper(img.Layers[1].Digest.String()))
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

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }
