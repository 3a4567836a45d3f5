package boottest

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// TestPipeline checks the boot tests of the shared build (build_test.go):
// the testbed variant for x86_64 and aarch64 built by cfs-compose's stage
// table from the shipped manifest, with a signed composefs digest and
// Secure Boot enforced, and its plain-root version. Every check that
// applies must pass, the digest checked must be the composefs stage's, and
// the disks must be unchanged by the boots. A second run with nothing
// changed takes everything from the cache; forcing the boot tests to rerun
// (what cfs-compose test does) boots again and reuses every other stage.
func TestPipeline(t *testing.T) {
	requireBoot(t, "x86_64")
	requireBoot(t, "aarch64")
	b := build(t)
	t.Logf("build of 4 versions x 2 arches, 4 boot tests: %.1fs, %v", b.elapsed.Seconds(), b.res.Counts())
	common := []string{"agent-report", "uefi-boot", "etc-writable", "var-writable"}
	want := map[string][]string{
		vTestbed: append([]string{"secureboot-enabled", "composefs-root", "composefs-digest", "composefs-verity",
			"composefs-signature", "usr-readonly"}, common...),
		vPlain: append([]string{"secureboot-disabled", "plain-root"}, common...),
	}
	sums := map[string][32]byte{}
	for _, v := range []string{vTestbed, vPlain} {
		for _, arch := range []string{"x86_64", "aarch64"} {
			nr := b.node(t, v, arch, contract.BootTest)
			if nr.Status != pipeline.StatusRan {
				t.Fatalf("%s/%s: boottest %s", v, arch, nr.Status)
			}
			name := "Fedora-" + b.set[v][arch].Name + "-41." + arch
			checkOutputs(t, b.st, nr.Record, name, want[v])
			var r artifacts.BootTestResults
			raw, err := os.ReadFile(b.st.Path(nr.Record.Outputs["results"].Descriptor))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			if v == vTestbed {
				if d := b.digest(t, v, arch); r.ComposefsDigest != d || r.Facts["composefs"] != d {
					t.Errorf("%s: booted %s, checked against %s, the composefs stage built %s", name, r.Facts["composefs"], r.ComposefsDigest, d)
				}
			}
			sums[v+arch] = fileSum(t, b.disk(t, v, arch))
		}
	}
	_, res, err := b.execute(nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Counts()[pipeline.StatusCached]; n != len(res.Nodes) {
		t.Errorf("second run: %v, want everything cached", res.Counts())
	}
	_, res, err = b.execute(func(n *pipeline.Node) bool { return n.Kind == contract.BootTest })
	if err != nil {
		t.Fatal(err)
	}
	for _, nr := range res.Nodes {
		want := pipeline.StatusCached
		if nr.Node.Kind == contract.BootTest {
			want = pipeline.StatusRan
		}
		if nr.Status != want {
			t.Errorf("forced rerun: %s %s, want %s", nr.Node.Kind, nr.Status, want)
		}
	}
	for k, sum := range sums {
		v, arch := k[:len(k)-len("x86_64")], k[len(k)-len("x86_64"):]
		if len(k) > 7 && k[len(k)-7:] == "aarch64" {
			v, arch = k[:len(k)-7], "aarch64"
		}
		if fileSum(t, b.disk(t, v, arch)) != sum {
			t.Errorf("%s/%s: the disk image changed", v, arch)
		}
	}
}
