package source

// The registry harness is a copy of the one in internal/imagepull's
// tests: this test checks the stage's Resolve and the store-backed cache
// against a registry.

import (
	"context"
	"errors"
	"testing"

	"go.podman.io/image/v5/types"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/imagepull"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// testRegistry is the in-memory test registry with this package's
// helpers.
type testRegistry struct{ *ti.Registry }

func newTestRegistry(t *testing.T) *testRegistry { return &testRegistry{ti.NewRegistry(t)} }

// acceptPolicy writes an accept-anything policy.json and resolves it.
func (tr *testRegistry) acceptPolicy(t *testing.T) imagepull.PolicySpec {
	t.Helper()
	ps, err := imagepull.ResolvePolicy(tr.AcceptPolicyFile(t), "")
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func (tr *testRegistry) pull(t *testing.T, ref, arch string, ps imagepull.PolicySpec, opts imagepull.ImportOptions) (*imagepull.Pulled, error) {
	t.Helper()
	r, err := imagepull.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return imagepull.Pull(context.Background(), r, &imagepull.PullOptions{Arch: arch, Policy: ps, Sys: tr.Sys, Import: opts})
}

func TestRegistryPullMultiArch(t *testing.T) {
	tr := newTestRegistry(t)
	tr.Push(t, ti.Build(t, ti.MultiArch()...), "fedora/bootc:41")
	ref := "docker://" + tr.Host + "/fedora/bootc:41"
	ps := tr.acceptPolicy(t)

	var plans []*Config
	for _, arch := range []string{"x86_64", "aarch64"} {
		mc := &manifest.Config{Arch: arch, Source: manifest.Source{Image: ref, Policy: ps.Path}}
		c, err := Resolve(context.Background(), mc, facts(t, mc), false, tr.Sys)
		if err != nil {
			t.Fatal(err)
		}
		if c.Pinned != "docker://"+tr.Host+"/fedora/bootc@"+c.ManifestDigest || c.InstanceDigest == c.ManifestDigest || c.Identity != "docker://"+tr.Host+"/fedora/bootc" {
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
	if _, err := Resolve(context.Background(), mc, facts(t, mc), true, tr.Sys); !errors.Is(err, ErrOffline) {
		t.Errorf("offline tag plan err = %v", err)
	}
	// The cache key hides nothing but paths: same digests, same key.
	k1, k2 := plans[0].CacheKey().(Config), *plans[0]
	if k1.Pinned != "docker://"+tr.Host+"/fedora/bootc@"+plans[0].ManifestDigest || k1.Policy.Path != "" || k1.Policy.Digest != k2.Policy.Digest {
		t.Errorf("cache key = %+v", k1)
	}
}

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
