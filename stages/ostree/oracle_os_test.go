package ostree_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/ostree/ostreetest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
	"github.com/cfs-compose/cfs-compose/stages/ostree"
	"github.com/cfs-compose/cfs-compose/stages/source"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
)

// TestOracleOSFixture commits the real-OS fixture (the Debian trixie
// system of `make fixtures`, x86_64: ~13,600 entries, ~10,000 files) twice:
// with the pipeline (source stage import, then the ostree stage's Go
// writer) and with the real `ostree commit` of Debian trixie, which reads
// the image's layer tarballs itself (--tree=tar=LAYER per layer, in order;
// the fixture's layers have no whiteouts). Nothing of our import is on the
// reference's path. The pipeline moves /etc to /usr/etc, as ostree-rs-ext
// does; the reference does the same to a checkout of its commit and
// commits that again. Every content object (one per distinct file: its
// bytes, owner, mode and extended attributes), every directory-metadata
// and every directory-tree object must then be the same set in both
// repositories: the checksum of each file and directory of a real OS
// agrees with ostree's. The commit objects differ only by their metadata
// (subject, timestamp, ostree.linux, …), which internal/ostree's TestOracle
// compares byte for byte on generated trees.
func TestOracleOSFixture(t *testing.T) {
	ch := ostreetest.Get(t)
	layout, err := fixtures.DefaultLayoutDir()
	if err != nil {
		t.Fatal(err)
	}
	osLayout := filepath.Join(filepath.Dir(layout), fixtures.OSLinkName)
	if _, err := os.Stat(filepath.Join(osLayout, "index.json")); err != nil {
		t.Fatalf("no OS fixture at %s (make fixtures builds it): %v", osLayout, err)
	}
	osLayout, err = filepath.EvalSymlinks(osLayout)
	if err != nil {
		t.Fatal(err)
	}
	st := stagetest.OpenStore(t)
	mc := ostreeConfig("oci:"+osLayout+":testbed-os", false)
	p, res, err := stagetest.Build(t, st, mc, source.New(), ostree.New())
	if err != nil {
		t.Fatal(err)
	}
	dep, err := contract.OstreeDeployment.Decode(readOutput(t, st, p, res, contract.OstreeDeployment.Output))
	if err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(st.Path(stagetest.Output(t, p, res, contract.Ostree, contract.OstreeSysroot.Name).Descriptor), "ostree", "repo")

	layers := osLayers(t, osLayout, "amd64")
	ref := t.TempDir()
	binds := []ostreetest.Bind{{Host: osLayout, Guest: "/mnt/layout"}, {Host: ref, Guest: "/mnt/ref"}}
	run := func(args ...string) string {
		t.Helper()
		out, err := ch.Ostree(binds, args...)
		if err != nil {
			t.Fatalf("ostree %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	run("--repo=/mnt/ref/repo", "init", "--mode=bare")
	args := []string{"--repo=/mnt/ref/repo", "commit", "--branch=reference", "-s", "reference", "--timestamp=2024-01-01T00:00:00Z",
		// The layers have no entry for the root directory.
		"--tar-autocreate-parents"}
	for _, l := range layers {
		args = append(args, "--tree=tar=/mnt/layout/blobs/sha256/"+l)
	}
	t.Logf("ostree commit of the %d layer tarballs: %s", len(layers), strings.TrimSpace(run(args...)))

	// The same tree the ostree-rs-ext way: /etc moved to /usr/etc in a
	// checkout of ostree's commit, committed again into a second
	// repository, which then holds exactly the directory trees too.
	run("--repo=/mnt/ref/repo", "checkout", "reference", "/mnt/ref/co")
	if _, err := os.Lstat(filepath.Join(ref, "co", "usr", "etc")); err == nil {
		t.Fatal("the fixture has a /usr/etc of its own")
	}
	if err := os.Rename(filepath.Join(ref, "co", "etc"), filepath.Join(ref, "co", "usr", "etc")); err != nil {
		t.Fatal(err)
	}
	run("--repo=/mnt/ref/moved", "init", "--mode=bare")
	t.Logf("ostree commit of the tree with /usr/etc: %s", strings.TrimSpace(run("--repo=/mnt/ref/moved", "commit",
		"--branch=moved", "-s", "moved", "--timestamp=2024-01-01T00:00:00Z", "--tree=dir=/mnt/ref/co")))

	for _, kind := range []string{".file", ".dirmeta", ".dirtree"} {
		a, b := objectSet(t, ours, kind), objectSet(t, filepath.Join(ref, "moved"), kind)
		onlyOurs, onlyRef := setDiff(a, b), setDiff(b, a)
		if len(onlyOurs) > 0 || len(onlyRef) > 0 {
			t.Errorf("%s objects: %d ours, %d ostree's; only ours %d %v; only ostree's %d %v",
				kind, len(a), len(b), len(onlyOurs), head(onlyOurs), len(onlyRef), head(onlyRef))
			continue
		}
		t.Logf("%s objects: the same %d in both repositories (commit %s)", kind, len(a), dep.Commit)
	}
	if n := len(objectSet(t, ours, ".file")); n < 9000 {
		t.Errorf("only %d content objects: the fixture should have ~10,000 files", n)
	}
}

// osLayers returns the layer blob digests (hex) of the OS fixture's image
// for the OCI architecture arch, in order.
func osLayers(t *testing.T, layout, arch string) []string {
	t.Helper()
	blob := func(digest string) []byte {
		b, err := os.ReadFile(filepath.Join(layout, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var index struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	raw, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	for _, m := range index.Manifests {
		if m.Platform.Architecture != arch {
			continue
		}
		var man struct {
			Layers []struct {
				Digest string `json:"digest"`
			} `json:"layers"`
		}
		if err := json.Unmarshal(blob(m.Digest), &man); err != nil {
			t.Fatal(err)
		}
		var ls []string
		for _, l := range man.Layers {
			ls = append(ls, strings.TrimPrefix(l.Digest, "sha256:"))
		}
		return ls
	}
	t.Fatalf("no %s image in %s", arch, layout)
	return nil
}

// objectSet lists the checksums of a repository's objects of one kind
// (".file", ".dirmeta", …).
func objectSet(t *testing.T, repo, kind string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := strings.CutSuffix(d.Name(), kind); ok && !d.IsDir() {
			set[filepath.Base(filepath.Dir(p))+name] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func setDiff(a, b map[string]bool) []string {
	var d []string
	for k := range a {
		if !b[k] {
			d = append(d, k)
		}
	}
	slices.Sort(d)
	return d
}

func head(s []string) string {
	if len(s) > 5 {
		return fmt.Sprint(s[:5], " …")
	}
	return fmt.Sprint(s)
}
