package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// readTree returns every regular file under dir by relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// sameTree reports the differences between two compose directories.
func sameTree(t *testing.T, a, b string) []string {
	t.Helper()
	fa, fb := readTree(t, a), readTree(t, b)
	var diffs []string
	for p, ba := range fa {
		bb, ok := fb[p]
		switch {
		case !ok:
			diffs = append(diffs, p+": only in "+a)
		case !bytes.Equal(ba, bb):
			diffs = append(diffs, p+": differs")
		}
	}
	for p := range fb {
		if _, ok := fa[p]; !ok {
			diffs = append(diffs, p+": only in "+b)
		}
	}
	return diffs
}

type mergeFixture struct {
	dir, whole string
	parts      []string // compose directories of the units
	manifests  map[string][]byte
	m          *fakeManifests
	st         *artifacts.Store
	date       time.Time
}

func unitOpts(f *mergeFixture, out string, respin int, partial bool, variants, arches []string) *BuildOptions {
	return &BuildOptions{
		Out: out, Date: f.date, Respin: &respin, Partial: partial,
		Resolve:       ResolveOptions{Variants: variants, Arches: arches},
		Exec:          ExecOptions{Tool: "cfs-compose test"},
		ManifestFiles: f.manifests, Variables: map[string]string{"release": "41"},
		Finalize: fakeSign,
	}
}

// fakeSign stands for the build's finalizer that signs SHA256SUMS: it
// writes SHA256SUMS.sig (here the checksum's sha256) and records it in
// compose.json.
func fakeSign(_ context.Context, c *artifacts.Compose, rec *artifacts.ComposeRecord) error {
	b, err := os.ReadFile(filepath.Join(c.WorkDir(), "SHA256SUMS"))
	if err != nil {
		return err
	}
	d := artifacts.DigestBytes(b)
	if err := c.AddFile("SHA256SUMS.sig", strings.NewReader(d.Hex()+"\n"), false); err != nil {
		return err
	}
	rec.Extra = map[string]json.RawMessage{"sums": json.RawMessage(`"` + d.Hex() + `"`)}
	return nil
}

// newMergeFixture builds, from one warm store, the whole compose of three
// targets and its three units (one target each), all pinned to one date.
func newMergeFixture(t *testing.T) *mergeFixture {
	f := &mergeFixture{
		dir: t.TempDir(), manifests: map[string][]byte{"coreos.hcl": []byte("variant \"coreos\" {}\n")},
		m:    newFake(map[string][]string{"coreos": {"x86_64", "aarch64"}, "iot": {"x86_64"}}),
		date: time.Date(2026, 12, 6, 4, 0, 0, 0, time.UTC),
	}
	f.st = openStore(t, filepath.Join(f.dir, "cache"))
	ctx := context.Background()
	// Warm the store: the whole compose and the units then all take every
	// stage from the cache, as they would from a warm remote cache.
	if _, err := Build(ctx, f.m, chain(newHooks()), f.st, &BuildOptions{Out: filepath.Join(f.dir, "warm"), ManifestFiles: f.manifests}); err != nil {
		t.Fatal(err)
	}
	rec, err := Build(ctx, f.m, chain(newHooks()), f.st, unitOpts(f, filepath.Join(f.dir, "whole"), 0, false, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	f.whole = rec.Dir
	for i, sel := range [][2]string{{"coreos", "x86_64"}, {"coreos", "aarch64"}, {"iot", "x86_64"}} {
		out := filepath.Join(f.dir, "unit", string(rune('a'+i)))
		rec, err := Build(ctx, f.m, chain(newHooks()), f.st, unitOpts(f, out, 0, true, []string{sel[0]}, []string{sel[1]}))
		if err != nil {
			t.Fatal(err)
		}
		if rec.Partial == nil || len(rec.Targets) != 1 || rec.ID != "Fedora-41-20261206.n.0" {
			t.Fatalf("unit %v: partial %v, %d targets, id %s", sel, rec.Partial, len(rec.Targets), rec.ID)
		}
		f.parts = append(f.parts, rec.Dir)
	}
	return f
}

func TestMergeEqualsWholeCompose(t *testing.T) {
	f := newMergeFixture(t)
	for _, tc := range []struct {
		name  string
		order []int
	}{{"in order", []int{0, 1, 2}}, {"reversed", []int{2, 1, 0}}, {"shuffled", []int{1, 2, 0}}} {
		t.Run(tc.name, func(t *testing.T) {
			var parts []string
			for _, i := range tc.order {
				parts = append(parts, f.parts[i])
			}
			out := filepath.Join(t.TempDir(), "merged")
			rec, err := Merge(context.Background(), f.m, chain(newHooks()), parts, &MergeOptions{Out: out, ManifestFiles: f.manifests, Finalize: fakeSign})
			if err != nil {
				t.Fatal(err)
			}
			if rec.Partial != nil || rec.Status != artifacts.StatusFinished {
				t.Errorf("merged: partial %v status %s", rec.Partial, rec.Status)
			}
			files := readTree(t, rec.Dir)
			for _, p := range []string{"compose.json", "SHA256SUMS", "SHA256SUMS.sig", "STATUS", "metadata/images.json", "metadata/composeinfo.json",
				"Coreos/x86_64/images/disk-x86_64.raw", "Coreos/aarch64/images/disk-aarch64.raw", "Iot/x86_64/images/disk-x86_64.raw",
				"logs/Coreos/aarch64/disk.log", "logs/Iot/x86_64/src.log"} {
				if len(files[p]) == 0 {
					t.Errorf("merged compose lacks %s", p)
				}
			}
			if !bytes.Contains(files["SHA256SUMS"], []byte("Iot/x86_64/images/disk-x86_64.raw")) || !bytes.Contains(files["metadata/composeinfo.json"], []byte(`"Iot"`)) {
				t.Errorf("merged SHA256SUMS or composeinfo.json lack a unit's target:\n%s", files["SHA256SUMS"])
			}
			if d := sameTree(t, f.whole, rec.Dir); len(d) > 0 {
				t.Errorf("merged compose differs from the whole compose:\n%s", strings.Join(d, "\n"))
			}
		})
	}
}

func TestMergeRefusesBadParts(t *testing.T) {
	f := newMergeFixture(t)
	ctx := context.Background()
	build := func(t *testing.T, stages []Stage, opts *BuildOptions) string {
		t.Helper()
		rec, err := Build(ctx, f.m, stages, f.st, opts)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Dir
	}
	for _, tc := range []struct {
		name    string
		parts   func(t *testing.T) []string
		bad     func(parts []string) string // the part the error must name
		wantErr string
		files   map[string][]byte // manifests given to Merge (nil: the parts')
	}{
		{
			name:    "overlap",
			parts:   func(t *testing.T) []string { return []string{f.parts[0], f.parts[1], copyDir(t, f.parts[0])} },
			wantErr: "target coreos/x86_64 is also in",
		},
		{
			name:    "not a unit",
			parts:   func(t *testing.T) []string { return []string{f.parts[0], f.whole} },
			bad:     func(p []string) string { return p[1] },
			wantErr: "not a compose unit",
		},
		{
			name:    "other manifests",
			parts:   func(t *testing.T) []string { return f.parts },
			files:   map[string][]byte{"coreos.hcl": []byte("variant \"coreos\" { }\n")},
			wantErr: "built from other manifests than these (coreos.hcl:",
		},
		{
			name: "other compose ID",
			parts: func(t *testing.T) []string {
				return []string{f.parts[0], build(t, chain(newHooks()), unitOpts(f, filepath.Join(t.TempDir(), "r1"), 1, true, []string{"coreos"}, []string{"aarch64"}))}
			},
			wantErr: "is a unit of compose Fedora-41-20261206.n.",
		},
		{
			name: "other stage version",
			parts: func(t *testing.T) []string {
				stages := chain(newHooks())
				stages[4].(*fakeStage).version = "2" // disk
				return []string{f.parts[0], build(t, stages, unitOpts(f, filepath.Join(t.TempDir(), "v2"), 0, true, []string{"coreos"}, []string{"aarch64"}))}
			},
			wantErr: "stage disk is version",
		},
		{
			name: "tampered image",
			parts: func(t *testing.T) []string {
				bad := copyDir(t, f.parts[1])
				p := filepath.Join(bad, "Coreos/aarch64/images/disk-aarch64.raw")
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				b[0] ^= 0xff
				os.Remove(p)
				if err := os.WriteFile(p, b, 0o444); err != nil {
					t.Fatal(err)
				}
				return []string{f.parts[0], bad, f.parts[2]}
			},
			bad:     func(p []string) string { return p[1] },
			wantErr: "its compose.json says",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts := tc.parts(t)
			files := tc.files
			if files == nil {
				files = f.manifests
			}
			out := filepath.Join(t.TempDir(), "merged")
			_, err := Merge(ctx, f.m, chain(newHooks()), parts, &MergeOptions{Out: out, ManifestFiles: files})
			var me *MergeError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("merge: %v, want a MergeError saying %q", err, tc.wantErr)
			}
			if tc.bad != nil && me.Part != tc.bad(parts) {
				t.Errorf("error names part %s, want %s", me.Part, tc.bad(parts))
			}
			ents, _ := os.ReadDir(out)
			for _, e := range ents {
				t.Errorf("merge left %s in the output", e.Name())
			}
		})
	}
}

// copyDir copies a compose directory (a unit handed from one builder to
// another) into a fresh directory with the same base name.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
