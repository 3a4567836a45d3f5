package source

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

var _ pipeline.Keyer = (*Config)(nil)

// variant is a manifest config for a bootable image.
func variant(name, arch, image string) *manifest.Config {
	return &manifest.Config{
		Variant: name, Name: strings.ToUpper(name[:1]) + name[1:], Arch: arch,
		Source:    manifest.Source{Image: image, Kind: manifest.SourceContainer},
		Composefs: manifest.Composefs{Enabled: true, Verity: initconfig.VerityNone},
		Initramfs: manifest.Initramfs{Source: manifest.InitramfsBuiltin},
		UKI:       manifest.UKI{Enabled: true, Stub: "image"},
		Rootfs:    manifest.Rootfs{ExtraDirs: []string{}},
		Lints:     manifest.Lints{Skip: []string{}},
	}
}

func TestStageThroughPipeline(t *testing.T) {
	imgs := ti.MultiArch()
	for i := range imgs {
		imgs[i].Config.Labels = map[string]string{"containers.bootc": "1"}
	}
	layout := ti.Build(t, imgs...)
	ref := "oci:" + layout + ":" + ti.Tag
	noKernel := "oci:" + ti.Build(t, ti.Sample(ti.Gzip)) + ":" + ti.Tag
	m := stagetest.Manifests{
		"coreos": {"x86_64": variant("coreos", "x86_64", ref), "aarch64": variant("coreos", "aarch64", ref)},
		"broken": {"x86_64": variant("broken", "x86_64", noKernel)},
	}
	st, err := artifacts.Open(context.Background(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stages := []pipeline.Stage{New()}
	// Local images plan offline.
	plan, err := pipeline.Resolve(context.Background(), m, stages, &pipeline.ResolveOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	var logs stagetest.SyncBuffer // stages log from several goroutines
	res, err := pipeline.Execute(context.Background(), plan, st, &pipeline.ExecOptions{KeepGoing: true, LogWriter: &logs})
	if err == nil || !strings.Contains(err.Error(), "kernel-missing") || !strings.Contains(err.Error(), "stub-missing") {
		t.Fatalf("err = %v, want the broken variant's fatal lints", err)
	}
	for _, tn := range plan.Targets {
		nr := res.Of(tn.Nodes[contract.Source])
		want := pipeline.StatusRan
		if tn.Target.Variant == "broken" {
			want = pipeline.StatusFailed
		}
		if nr.Status != want {
			t.Fatalf("%s: status %s (%v), want %s", tn.Target, nr.Status, nr.Err, want)
		}
		if want != pipeline.StatusRan {
			continue
		}
		rec := nr.Record
		for _, name := range []string{contract.SourceTree.Name, contract.SourceAnalysis.Name, contract.SourceLints.Name} {
			if _, ok := rec.Outputs[name]; !ok {
				t.Errorf("%s: no output %s", tn.Target, name)
			}
		}
		if rec.Outputs[contract.SourceTree.Name].MediaType != artifacts.MediaTypeDumpfile || len(rec.ObjectSets) != 1 {
			t.Errorf("%s: tree %+v object sets %v", tn.Target, rec.Outputs[contract.SourceTree.Name], rec.ObjectSets)
		}
		dump, err := st.ReadBlob(rec.Outputs[contract.SourceTree.Name].Digest)
		if err != nil {
			t.Fatal(err)
		}
		tree, err := composefs.ReadDumpfile(bytes.NewReader(dump))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tree.Lookup("/usr/lib/modules/6.12.0/vmlinuz"); err != nil {
			t.Errorf("%s: tree lacks the kernel: %v", tn.Target, err)
		}
		var an Analysis
		b, _ := st.ReadBlob(rec.Outputs[contract.SourceAnalysis.Name].Digest)
		if err := json.Unmarshal(b, &an); err != nil {
			t.Fatal(err)
		}
		if an.Arch != tn.Target.Arch || an.Kernel == nil || an.Kernel.Machine != tn.Target.Arch || !an.Bootc || an.Stub == nil {
			t.Errorf("%s: analysis %s", tn.Target, b)
		}
		var rep LintReport
		b, _ = st.ReadBlob(rec.Outputs[contract.SourceLints.Name].Digest)
		if err := json.Unmarshal(b, &rep); err != nil || rep.Fatal != 0 {
			t.Errorf("%s: lints %s", tn.Target, b)
		}
		var digestMeta string
		json.Unmarshal(rec.Meta["manifest_digest"], &digestMeta)
		var bootc bool
		json.Unmarshal(rec.Meta["bootc"], &bootc)
		if !strings.HasPrefix(digestMeta, "sha256:") || !bootc || string(rec.Meta["kernel"]) != `"6.12.0"` {
			t.Errorf("%s: meta %v", tn.Target, rec.Meta)
		}
	}
	if !strings.Contains(logs.String(), "imported") {
		t.Errorf("stage log lacks the import summary:\n%s", logs.String())
	}

	// A rerun with nothing changed is fully cached; skipping the lints
	// lets the broken variant through.
	m["broken"]["x86_64"].Lints.Skip = []string{"kernel-missing", "stub-missing"}
	plan, err = pipeline.Resolve(context.Background(), m, stages, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = pipeline.Execute(context.Background(), plan, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	counts := res.Counts()
	if counts[pipeline.StatusCached] != 2 || counts[pipeline.StatusRan] != 1 {
		t.Errorf("second run: %v", counts)
	}
}

// TestCacheKeyIgnoresPaths: the same image at two paths has one cache key.
func TestCacheKeyIgnoresPaths(t *testing.T) {
	layout := ti.Build(t, ti.Sample(ti.Gzip))
	moved := filepath.Join(t.TempDir(), "elsewhere")
	if out, err := exec.Command("cp", "-a", layout, moved).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	keys := map[string]bool{}
	for _, dir := range []string{layout, moved} {
		m := stagetest.Manifests{"v": {"x86_64": variant("v", "x86_64", "oci:"+dir+":"+ti.Tag)}}
		plan, err := pipeline.Resolve(context.Background(), m, []pipeline.Stage{New()}, &pipeline.ResolveOptions{Offline: true})
		if err != nil {
			t.Fatal(err)
		}
		keys[plan.Nodes[0].Key(nil)] = true
	}
	if len(keys) != 1 {
		t.Errorf("keys differ by path: %v", keys)
	}
	// A settings change that matters changes the key.
	m := stagetest.Manifests{"v": {"x86_64": variant("v", "x86_64", "oci:"+layout+":"+ti.Tag)}}
	m["v"]["x86_64"].Composefs.Enabled = false
	plan, err := pipeline.Resolve(context.Background(), m, []pipeline.Stage{New()}, &pipeline.ResolveOptions{Offline: true})
	if err != nil {
		t.Fatal(err)
	}
	if keys[plan.Nodes[0].Key(nil)] {
		t.Error("composefs.enabled does not change the key")
	}

}
