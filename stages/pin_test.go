package stages

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/pe"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/debfetch"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/initramfs"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

var updatePins = flag.Bool("update-pins", false, "record the testbed compose pins for the current fixture packages in testdata/pins.json")

// pinFile holds, per set of fixture packages (the sha256 of their .deb
// digests), the outputs of the shipped testbed variant.
const pinFile = "testdata/pins.json"

// Pins are one target's pinned outputs.
type Pins struct {
	ComposefsDigest string            `json:"composefs_digest,omitempty"`
	UKISections     map[string]string `json:"uki_sections"`
	DiskSHA256      string            `json:"disk_sha256"`
}

// TestPinnedOutputs pins what the shipped testbed manifest builds -- the
// composefs digest, the sha256 of every UKI section and of the raw disk
// image -- for both arches and both states of the contingency switch, so
// that a refactoring that changes a byte shows up. The inputs are fixed:
// the fixture's Debian packages (the pins are recorded per package set),
// and fixed stand-ins for the two binaries built from this repository
// (the image's agent and the builtin initramfs's /init), whose bytes
// change with any code change and are covered by the boot tests instead.
func TestPinnedOutputs(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPING in -short mode: builds four disk images")
	}
	stagetest.FixtureLayout(t)
	cache, err := debfetch.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	lock, err := fixtures.ReadLock(cache)
	if err != nil {
		t.Fatal(err)
	}
	key := lockKey(lock)

	var imgs []ti.Image
	for _, a := range []string{"amd64", "arm64"} {
		c, err := fixtures.LoadContent(context.Background(), cache, lock, a)
		if err != nil {
			t.Fatal(err)
		}
		c.Agent = []byte("#!pinned agent stand-in " + a + "\n")
		imgs = append(imgs, fixtures.Image(c))
	}
	ref := "oci:" + ti.Build(t, imgs...) + ":" + ti.Tag

	_, file, _, _ := runtime.Caller(0)
	mdir := filepath.Join(filepath.Dir(file), "..", "manifests")
	files, err := manifest.ReadDir(mdir)
	if err != nil {
		t.Fatal(err)
	}
	init := initramfs.NewWithInit(func(goarch string) ([]byte, error) {
		return []byte("pinned cfs-init stand-in " + goarch + "\n"), nil
	})
	var table []pipeline.Stage
	for _, s := range All() {
		switch s.Kind() {
		case contract.BootTest:
			continue
		case contract.Initramfs:
			s = init
		}
		table = append(table, s)
	}

	got := map[string]Pins{}
	for _, on := range []bool{true, false} {
		fs := files
		if !on {
			fs = flipComposefs(t, files)
		}
		m, diags := manifest.Parse(fs, nil)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		lit := stagetest.Manifests{"testbed": {}}
		for _, arch := range m.Arches("testbed") {
			c, err := m.Config("testbed", arch)
			if err != nil {
				t.Fatal(err)
			}
			c.Source.Image = ref
			lit["testbed"][arch] = c
		}
		st := stagetest.OpenStore(t)
		p, err := pipeline.Resolve(context.Background(), lit, table, &pipeline.ResolveOptions{Offline: true})
		if err != nil {
			t.Fatal(err)
		}
		res, err := pipeline.Execute(context.Background(), p, st, &pipeline.ExecOptions{Jobs: 2, LogWriter: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range p.Targets {
			name := fmt.Sprintf("%s/composefs=%v", tg.Target.Arch, on)
			var pin Pins
			output := func(kind, out string) []byte {
				n := tg.Nodes[kind]
				if n == nil {
					t.Fatalf("%s: no %s stage", name, kind)
				}
				o, ok := res.Of(n).Record.Outputs[out]
				if !ok {
					t.Fatalf("%s: %s has no output %s", name, kind, out)
				}
				b, err := os.ReadFile(st.Path(o.Descriptor))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			if on {
				var d struct{ Digest string }
				if err := json.Unmarshal(output("composefs", "digest"), &d); err != nil {
					t.Fatal(err)
				}
				pin.ComposefsDigest = d.Digest
			} else if tg.Nodes["composefs"] != nil {
				t.Errorf("%s: a composefs stage with composefs off", name)
			}
			pin.UKISections = peSections(t, output("uki", "uki"))
			pin.DiskSHA256 = sha256Hex(output("disk", "raw"))
			got[name] = pin
		}
	}
	checkPins(t, key, got)
}

// flipComposefs turns the testbed's composefs off the way an operator does
// (cfs-compose set).
func flipComposefs(t *testing.T, files map[string][]byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for n, b := range files {
		out[n] = b
	}
	for n, b := range files {
		if filepath.Base(n) != "testbed.hcl" {
			continue
		}
		src, diags := manifest.Set(b, n, "variant.testbed.composefs.enabled=false")
		if diags.HasErrors() {
			t.Fatalf("flipping composefs: %v", diags)
		}
		out[n] = src
		return out
	}
	t.Fatal("no testbed.hcl among the shipped manifests")
	return out
}

func peSections(t *testing.T, b []byte) map[string]string {
	t.Helper()
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("reading the UKI: %v", err)
	}
	m := map[string]string{}
	for _, s := range f.Sections {
		d, err := s.Data()
		if err != nil {
			t.Fatalf("UKI section %s: %v", s.Name, err)
		}
		m[s.Name] = sha256Hex(d[:min(len(d), int(s.VirtualSize))])
	}
	m["(whole file)"] = sha256Hex(b)
	return m
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// lockKey identifies the fixture's package set.
func lockKey(l *fixtures.Lock) string {
	var lines []string
	for _, d := range l.Packages {
		lines = append(lines, d.Role+" "+d.For+" "+d.Name+" "+d.Version+" "+d.Arch+" "+d.SHA256)
	}
	slices.Sort(lines)
	return sha256Hex([]byte(strings.Join(lines, "\n")))[:16]
}

func checkPins(t *testing.T, key string, got map[string]Pins) {
	t.Helper()
	all := map[string]map[string]Pins{}
	if b, err := os.ReadFile(pinFile); err == nil {
		if err := json.Unmarshal(b, &all); err != nil {
			t.Fatalf("%s: %v", pinFile, err)
		}
	} else if !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if *updatePins {
		all[key] = got
		b, err := json.MarshalIndent(all, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pinFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded pins for fixture package set %s", key)
		return
	}
	want, ok := all[key]
	if !ok {
		t.Fatalf("no pins for the fixture package set %s (the fixture's Debian packages changed since the pins were recorded); "+
			"check that the outputs are right and record them with: go test ./stages -run TestPinnedOutputs -update-pins", key)
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: not built", name)
			continue
		}
		if g.ComposefsDigest != w.ComposefsDigest {
			t.Errorf("%s: composefs digest %s, pinned %s", name, g.ComposefsDigest, w.ComposefsDigest)
		}
		for s, h := range w.UKISections {
			if g.UKISections[s] != h {
				t.Errorf("%s: UKI section %s sha256 %s, pinned %s", name, s, g.UKISections[s], h)
			}
		}
		if len(g.UKISections) != len(w.UKISections) {
			t.Errorf("%s: UKI sections %v, pinned %v", name, g.UKISections, w.UKISections)
		}
		if g.DiskSHA256 != w.DiskSHA256 {
			t.Errorf("%s: disk image sha256 %s, pinned %s", name, g.DiskSHA256, w.DiskSHA256)
		}
	}
	if len(got) != len(want) {
		t.Errorf("built %d targets, pinned %d", len(got), len(want))
	}
}
