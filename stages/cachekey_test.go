package stages

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
)

// TestCacheKeyPathIndependent: the same local image in another directory
// (another checkout, another builder) gives the same source stage cache
// key, so it hits the cache; paths stay in the records only.
func TestCacheKeyPathIndependent(t *testing.T) {
	layout := stagetest.FixtureLayout(t)
	var keys []string
	for _, name := range []string{"a", "b"} {
		dir := filepath.Join(t.TempDir(), name)
		if out, err := exec.Command("cp", "-a", layout, dir).CombinedOutput(); err != nil {
			t.Fatalf("copying the fixture layout: %v: %s", err, out)
		}
		mc := stagetest.TestbedConfig("oci:" + dir + ":testbed")
		p, err := pipeline.Resolve(context.Background(), stagetest.OneConfig{C: mc}, All(), &pipeline.ResolveOptions{Offline: true})
		if err != nil {
			t.Fatal(err)
		}
		n := p.Targets[0].Nodes[contract.Source]
		if string(n.Config) == string(n.KeyConfig) {
			t.Errorf("the source config %s enters the key with its paths", n.Config)
		}
		keys = append(keys, n.Key(nil))
	}
	if keys[0] != keys[1] {
		t.Errorf("source stage keys differ between two copies of one image: %s, %s", keys[0], keys[1])
	}
}
