package source

// The registry harness is a copy of the one in internal/imagepull's
// tests: this test checks the stage's Resolve and the store-backed cache
// against a registry.

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/imagepull"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
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
func (tr *testRegistry) acceptPolicy(t *testing.T) imagepull.PolicySpec {
	t.Helper()
	p := filepath.Join(tr.policyDir, "policy.json")
	os.WriteFile(p, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	ps, err := imagepull.ResolvePolicy(p, "")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// push copies every image of an oci: layout to docker://HOST/repo:tag.
func (tr *testRegistry) push(t *testing.T, layoutRef, repoTag string) {
	t.Helper()
	src, err := imagepull.ParseReference(layoutRef)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := imagepull.ParseReference("docker://" + tr.host + "/" + repoTag)
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

func (tr *testRegistry) pull(t *testing.T, ref, arch string, ps imagepull.PolicySpec, opts imagepull.ImportOptions) (*imagepull.Pulled, error) {
	t.Helper()
	r, err := imagepull.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return imagepull.Pull(context.Background(), r, &imagepull.PullOptions{Arch: arch, Policy: ps, Sys: tr.sys, Import: opts})
}

func multiArch() []ti.Image {
	amd := ti.Image{Architecture: "amd64", Layers: []ti.Layer{{Compression: ti.Gzip, Entries: bootableEntries("x86_64")}, ti.Sample(ti.Zstd).Layers[0]}}
	arm := ti.Image{Architecture: "arm64", Variant: "v8", Layers: []ti.Layer{{Compression: ti.Zstd, Entries: bootableEntries("aarch64")}}}
	return []ti.Image{amd, arm}
}

func TestRegistryPullMultiArch(t *testing.T) {
	tr := newTestRegistry(t)
	tr.push(t, "oci:"+ti.Build(t, multiArch()...)+":"+ti.Tag, "fedora/bootc:41")
	ref := "docker://" + tr.host + "/fedora/bootc:41"
	ps := tr.acceptPolicy(t)

	var plans []*Config
	for _, arch := range []string{"x86_64", "aarch64"} {
		mc := &manifest.Config{Arch: arch, Source: manifest.Source{Image: ref, Policy: ps.Path}}
		c, err := Resolve(context.Background(), mc, facts(t, mc), false, tr.sys)
		if err != nil {
			t.Fatal(err)
		}
		if c.Pinned != "docker://"+tr.host+"/fedora/bootc@"+c.ManifestDigest || c.InstanceDigest == c.ManifestDigest || c.Identity != "docker://"+tr.host+"/fedora/bootc" {
			t.Errorf("%s plan = %+v", arch, c)
		}
		plans = append(plans, c)

		st, objs := openStore(t)
		p, err := tr.pull(t, c.Pinned, arch, ps, imagepull.ImportOptions{Objects: objs, Cache: storeCache{st}})
		if err != nil {
			t.Fatal(err)
		}
		if p.Image.InstanceDigest.String() != c.InstanceDigest {
			t.Errorf("%s: pulled instance %s, planned %s", arch, p.Image.InstanceDigest, c.InstanceDigest)
		}
		a, err := Analyze(p.Tree.FS(objs.FS()), arch, "", p.Config.Config.Labels)
		if err != nil {
			t.Fatal(err)
		}
		if a.Kernel == nil || a.Kernel.Machine != arch {
			t.Errorf("%s: kernel %+v", arch, a.Kernel)
		}
	}
	if plans[0].ManifestDigest != plans[1].ManifestDigest || plans[0].InstanceDigest == plans[1].InstanceDigest {
		t.Errorf("both arches must share the index digest and differ in instance: %+v %+v", plans[0], plans[1])
	}

	// The pinned reference plans offline, without the network.
	mc := &manifest.Config{Arch: "x86_64", Source: manifest.Source{Image: plans[0].Pinned}}
	c, err := Resolve(context.Background(), mc, facts(t, mc), true, &types.SystemContext{SystemRegistriesConfPath: "/nonexistent"})
	if err != nil || c.ManifestDigest != plans[0].ManifestDigest || c.InstanceDigest != "" {
		t.Errorf("offline pinned plan = %+v, %v", c, err)
	}
	// A tag does not.
	mc.Source.Image = ref
	if _, err := Resolve(context.Background(), mc, facts(t, mc), true, tr.sys); !errors.Is(err, ErrOffline) {
		t.Errorf("offline tag plan err = %v", err)
	}
	// The cache key hides nothing but paths: same digests, same key.
	k1, k2 := plans[0].CacheKey().(Config), *plans[0]
	if k1.Pinned != "docker://"+tr.host+"/fedora/bootc@"+plans[0].ManifestDigest || k1.Policy.Path != "" || k1.Policy.Digest != k2.Policy.Digest {
		t.Errorf("cache key = %+v", k1)
	}
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// openStore opens an artifact store in a temp dir, with its object store.
func openStore(t testing.TB) (*artifacts.Store, *objstore.Store) {
	t.Helper()
	st, err := artifacts.Open(context.Background(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	objs, err := objstore.Open(st.ObjectsDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return st, objs
}
