package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// MergeOptions control Merge.
type MergeOptions struct {
	Out string // parent directory of the merged compose
	// Resolve selects nothing (the parts' targets do) and is always
	// offline: Merge resolves the plan only for its order.
	Resolve ResolveOptions
	// ManifestFiles are the manifests the parts must have been built from.
	ManifestFiles map[string][]byte
	// Finalize is [BuildOptions.Finalize] (signing SHA256SUMS).
	Finalize func(ctx context.Context, c *artifacts.Compose, rec *artifacts.ComposeRecord) error
}

// MergeError is a part that cannot be merged: it names the part.
type MergeError struct {
	Part string // the part's directory
	Err  error
}

func (e *MergeError) Error() string { return fmt.Sprintf("compose unit %s: %v", e.Part, e.Err) }
func (e *MergeError) Unwrap() error { return e.Err }

type mergePart struct {
	dir string
	rec *artifacts.ComposeRecord
	// images maps a published path to its images.json entry.
	images map[string]*artifacts.ImportedImage
}

// regenerated are the top-level files of a compose that Merge writes
// anew rather than taking from the parts.
var regenerated = map[string]bool{
	"SHA256SUMS": true, "SHA256SUMS.sig": true, "SHA256SUMS.sigstore.json": true,
	"STATUS": true, artifacts.ComposeRecordFile: true, "metadata": true,
}

// Merge combines compose units (partial composes of one compose, built with
// [BuildOptions.Partial] from the same manifests with the same compose ID)
// into the compose a single [Build] of all their targets writes: the same
// files, SHA256SUMS, metadata and compose.json (with the same pinned
// date), whatever the order of parts. Parts that overlap or disagree
// (manifests, variables, compose ID, stage versions, a shared stage's
// results, a file that does not match its compose.json) are refused with
// a [MergeError] naming the part, before anything is written; a failure
// while writing leaves nothing in Out.
func Merge(ctx context.Context, m Manifests, stages []Stage, partDirs []string, opts *MergeOptions) (*artifacts.ComposeRecord, error) {
	if len(partDirs) == 0 {
		return nil, errors.New("merge: no compose units given")
	}
	parts := make([]*mergePart, 0, len(partDirs))
	for _, d := range partDirs {
		p, err := loadPart(d)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	// A fixed order (by directory) so that the checks below name the same
	// parts whatever the order on the command line.
	sort.Slice(parts, func(i, j int) bool { return parts[i].dir < parts[j].dir })
	if err := checkParts(parts, opts.ManifestFiles); err != nil {
		return nil, err
	}
	first := parts[0].rec

	// The plan of all the parts' targets gives the order a single build
	// would record targets and stages in.
	owner := map[string]*mergePart{}
	var variants, arches []string
	for _, p := range parts {
		for _, t := range p.rec.Targets {
			owner[t.String()] = p
			if !slices.Contains(variants, t.Variant) {
				variants = append(variants, t.Variant)
			}
			if !slices.Contains(arches, t.Arch) {
				arches = append(arches, t.Arch)
			}
		}
	}
	ro := opts.Resolve
	ro.Variants, ro.Arches, ro.Offline, ro.Lenient = variants, arches, true, true
	plan, err := Resolve(ctx, m, stages, &ro)
	if err != nil {
		return nil, fmt.Errorf("merge: resolving the plan of the parts' targets: %w", err)
	}
	var order []*TargetNodes
	for i := range plan.Targets {
		if owner[plan.Targets[i].Target.String()] != nil {
			order = append(order, &plan.Targets[i])
		}
	}
	if len(order) != len(owner) {
		var missing []string
		for t, p := range owner {
			if !slices.ContainsFunc(order, func(tn *TargetNodes) bool { return tn.Target.String() == t }) {
				missing = append(missing, t+" (of "+p.dir+")")
			}
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("merge: targets not in the manifests: %s", strings.Join(missing, ", "))
	}
	nodePos := map[*Node]int{}
	for i, n := range plan.Nodes {
		nodePos[n] = i
	}

	rec := &artifacts.ComposeRecord{
		Schema: artifacts.ComposeSchema, ID: first.ID, Tool: first.Tool,
		Started: first.Partial.Date, Compose: first.Compose, Manifests: first.Manifests, Variables: first.Variables,
	}
	stagesByID := map[string]*artifacts.StageRecord{}
	stageTargets := map[string]map[string]bool{}
	stagePos := map[string]int{}
	hasLog := map[string]bool{}
	var errs []string
	statuses := map[string]bool{}
	for _, tn := range order {
		p := owner[tn.Target.String()]
		var tr *artifacts.TargetRecord
		for i := range p.rec.Targets {
			if p.rec.Targets[i].String() == tn.Target.String() {
				tr = &p.rec.Targets[i]
			}
		}
		rec.Targets = append(rec.Targets, *tr)
		for kind, id := range tr.Stages {
			pos := len(plan.Nodes)
			if n := tn.Nodes[kind]; n != nil {
				pos = nodePos[n]
			}
			if old, ok := stagePos[id]; !ok || pos < old {
				stagePos[id] = pos
			}
			if stageTargets[id] == nil {
				stageTargets[id] = map[string]bool{}
			}
			stageTargets[id][tn.Target.String()] = true
		}
	}
	for _, p := range parts {
		statuses[p.rec.Status] = true
		if p.rec.Error != "" {
			errs = append(errs, p.rec.Error)
		}
		for i := range p.rec.Stages {
			s := p.rec.Stages[i]
			if s.Log != "" {
				hasLog[s.ID] = true
			}
			if old, ok := stagesByID[s.ID]; ok && !preferStage(&s, old) {
				continue
			}
			stagesByID[s.ID] = &s
		}
	}
	ids := slices.Collect(maps.Keys(stagesByID))
	sort.Slice(ids, func(i, j int) bool {
		if stagePos[ids[i]] != stagePos[ids[j]] {
			return stagePos[ids[i]] < stagePos[ids[j]]
		}
		return ids[i] < ids[j]
	})
	for _, id := range ids {
		s := *stagesByID[id]
		s.Targets = slices.Sorted(maps.Keys(stageTargets[id]))
		s.Log = ""
		if hasLog[id] {
			for _, tn := range order {
				if stageTargets[id][tn.Target.String()] {
					s.Log = StageLogPath(tn.Target, s.Kind)
					break
				}
			}
		}
		rec.Stages = append(rec.Stages, s)
	}
	switch {
	case statuses[artifacts.StatusDoomed]:
		rec.Status = artifacts.StatusDoomed
	case statuses[artifacts.StatusIncomplete]:
		rec.Status = artifacts.StatusIncomplete
	default:
		rec.Status = artifacts.StatusFinished
	}
	rec.Error = strings.Join(errs, "\n")

	spec := artifacts.ComposeSpec{Product: plan.Compose.Product, Release: plan.Compose.Release, Type: plan.Compose.Type,
		Date: first.Partial.Date, Pinned: true}
	c, err := artifacts.NewComposeRespin(opts.Out, spec, first.Partial.Respin)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	rec.Dir = c.Dir()
	if c.ID != first.ID {
		c.Discard()
		return nil, fmt.Errorf("merge: the manifests name compose %s, the parts %s", c.ID, first.ID)
	}
	for _, p := range parts {
		if err := importPart(ctx, c, p); err != nil {
			c.Discard()
			return nil, err
		}
	}
	date := first.Partial.Date
	if err := finishCompose(ctx, c, rec, opts.Finalize, func() time.Time { return date }); err != nil {
		c.Discard()
		return nil, err
	}
	return rec, nil
}

// preferStage decides which of two parts' records of one shared stage
// the merged compose keeps, independently of the parts' order: the run
// over a cache hit, then the smaller JSON.
func preferStage(s, old *artifacts.StageRecord) bool {
	if (s.Status == string(StatusRan)) != (old.Status == string(StatusRan)) {
		return s.Status == string(StatusRan)
	}
	a, _ := json.Marshal(s)
	b, _ := json.Marshal(old)
	return bytes.Compare(a, b) < 0
}

func loadPart(dir string) (*mergePart, error) {
	rec, err := artifacts.LoadComposeRecord(dir)
	if err != nil {
		return nil, &MergeError{dir, err}
	}
	if rec.Partial == nil {
		return nil, &MergeError{dir, errors.New("not a compose unit (compose.json has no \"partial\"; build it with --partial)")}
	}
	p := &mergePart{dir: dir, rec: rec, images: map[string]*artifacts.ImportedImage{}}
	b, err := os.ReadFile(filepath.Join(dir, "metadata", "images.json"))
	if err != nil {
		return nil, &MergeError{dir, err}
	}
	var im struct {
		Payload struct {
			Images map[string]map[string][]struct {
				Arch, Format, Path, Type string
				Bootable                 bool
				Mtime                    int64
			} `json:"images"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, &MergeError{dir, fmt.Errorf("metadata/images.json: %w", err)}
	}
	for v, arches := range im.Payload.Images {
		for a, list := range arches {
			for _, e := range list {
				p.images[filepath.FromSlash(e.Path)] = &artifacts.ImportedImage{Variant: v, Arch: a, Mtime: e.Mtime,
					Publish: artifacts.Publish{Filename: filepath.Base(e.Path), Type: e.Type, Format: e.Format, Bootable: e.Bootable}}
			}
		}
	}
	return p, nil
}

// checkParts refuses parts that are not units of one compose made from
// these manifests, or that overlap.
func checkParts(parts []*mergePart, manifests map[string][]byte) error {
	want := map[string]artifacts.Digest{}
	for name, b := range manifests {
		want[name] = artifacts.DigestBytes(b)
	}
	first := parts[0]
	targetOf := map[string]string{}
	versionOf := map[string]string{} // kind -> "version (part)"
	stageOf := map[string]*artifacts.StageRecord{}
	stagePart := map[string]string{}
	for _, p := range parts {
		r := p.rec
		if !maps.Equal(r.Manifests, want) {
			return &MergeError{p.dir, fmt.Errorf("built from other manifests than these (%s)", manifestDiff(r.Manifests, want))}
		}
		if r.ID != first.rec.ID || !r.Partial.Date.Equal(first.rec.Partial.Date) || r.Partial.Respin != first.rec.Partial.Respin {
			return &MergeError{p.dir, fmt.Errorf("is a unit of compose %s (date %s), %s of %s (date %s)",
				r.ID, r.Partial.Date.Format(time.RFC3339), first.dir, first.rec.ID, first.rec.Partial.Date.Format(time.RFC3339))}
		}
		if r.Tool != first.rec.Tool {
			return &MergeError{p.dir, fmt.Errorf("built by %q, %s by %q", r.Tool, first.dir, first.rec.Tool)}
		}
		if !maps.Equal(r.Variables, first.rec.Variables) {
			return &MergeError{p.dir, fmt.Errorf("built with other variable values than %s", first.dir)}
		}
		for _, t := range r.Targets {
			if other, dup := targetOf[t.String()]; dup {
				return &MergeError{p.dir, fmt.Errorf("target %s is also in %s: the parts overlap", t, other)}
			}
			targetOf[t.String()] = p.dir
		}
		for i := range r.Stages {
			s := &r.Stages[i]
			if v, ok := versionOf[s.Kind]; ok && !strings.HasPrefix(v, s.Version+" ") {
				return &MergeError{p.dir, fmt.Errorf("stage %s is version %s, in %s", s.Kind, s.Version, v)}
			}
			versionOf[s.Kind] = s.Version + " (" + p.dir + ")"
			if o, ok := stageOf[s.ID]; ok && !sameResult(o, s) {
				return &MergeError{p.dir, fmt.Errorf("stage %s (%s) has other results than in %s (key %s, here %s)", s.ID, s.Kind, stagePart[s.ID], o.Key, s.Key)}
			}
			stageOf[s.ID], stagePart[s.ID] = s, p.dir
		}
	}
	return nil
}

// sameResult reports whether two records of one stage instance agree on
// everything but the run (status, time, bytes).
func sameResult(a, b *artifacts.StageRecord) bool {
	ok := func(s *artifacts.StageRecord) bool {
		return s.Status == string(StatusRan) || s.Status == string(StatusCached)
	}
	if !ok(a) || !ok(b) {
		return a.Key == b.Key && a.Kind == b.Kind && a.Version == b.Version
	}
	ja, _ := json.Marshal([]any{a.Kind, a.Version, a.Key, a.Config, a.Inputs, a.Outputs, a.Meta})
	jb, _ := json.Marshal([]any{b.Kind, b.Version, b.Key, b.Config, b.Inputs, b.Outputs, b.Meta})
	return bytes.Equal(ja, jb)
}

func manifestDiff(got, want map[string]artifacts.Digest) string {
	var d []string
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if got[name] != want[name] {
			g := "absent"
			if got[name] != "" {
				g = got[name].Short()
			}
			d = append(d, fmt.Sprintf("%s: %s, here %s", name, g, want[name].Short()))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[name]; !ok {
			d = append(d, name+": not here")
		}
	}
	return strings.Join(d, "; ")
}

// importPart brings a part's published files and logs into c, checking
// each checksummed file against the part's compose.json.
func importPart(ctx context.Context, c *artifacts.Compose, p *mergePart) error {
	seen := map[string]bool{}
	err := filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, err := filepath.Rel(p.dir, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if !strings.ContainsRune(rel, filepath.Separator) && regenerated[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", rel)
		}
		digest, summed := p.rec.Artifacts[rel]
		seen[rel] = true
		return c.Import(p.dir, rel, digest, summed, p.images[rel])
	})
	if err != nil {
		return &MergeError{p.dir, err}
	}
	for rel := range p.rec.Artifacts {
		if !seen[rel] {
			return &MergeError{p.dir, fmt.Errorf("%s is in its compose.json but not in the directory", rel)}
		}
	}
	return nil
}
