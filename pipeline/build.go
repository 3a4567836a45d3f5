package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// BuildOptions control Build.
type BuildOptions struct {
	Out     string // parent directory of compose directories
	Resolve ResolveOptions
	Exec    ExecOptions
	Now     func() time.Time // clock for the compose date; nil means time.Now
	// Date, when not zero, pins the compose: its date (and so its ID),
	// compose.json's started and finished times and the images' mtimes
	// in images.json are Date, whenever the build runs. Compose units of
	// one compose pin the same date.
	Date time.Time
	// Respin, when not nil, is the compose's respin instead of the next
	// free one (the compose must not exist yet).
	Respin *int
	// ID, when set, is the compose ID the caller expects (the manifests
	// and the pinned date and respin must make it).
	ID string
	// Partial makes the compose a unit of a larger compose
	// (compose.json "partial"; merged by [Merge]). It needs Date and
	// Respin, so that every unit names the same compose.
	Partial bool
	// ManifestFiles and Variables are recorded in compose.json.
	ManifestFiles map[string][]byte
	Variables     map[string]string
	// Finalize runs after SHA256SUMS is written and before the compose is
	// renamed into place (for example to sign SHA256SUMS). It may add
	// files to the compose and facts to rec.Extra.
	Finalize func(ctx context.Context, c *artifacts.Compose, rec *artifacts.ComposeRecord) error
}

// Build resolves, executes and publishes one compose. A failed stage still
// produces a compose directory (STATUS DOOMED, or FINISHED_INCOMPLETE with
// KeepGoing) holding the logs and compose.json; a cancelled compose leaves
// nothing in Out. The returned error joins the stage failures.
func Build(ctx context.Context, m Manifests, stages []Stage, st *artifacts.Store, opts *BuildOptions) (*artifacts.ComposeRecord, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	pinned := !opts.Date.IsZero()
	if pinned {
		now = func() time.Time { return opts.Date }
	}
	if opts.Partial && (!pinned || opts.Respin == nil) {
		return nil, errors.New("a partial compose needs its compose ID fixed (a pinned date and respin), so that all units of the compose agree on it")
	}
	started := now()
	p, err := Resolve(ctx, m, stages, &opts.Resolve)
	if err != nil {
		return nil, err
	}
	spec := artifacts.ComposeSpec{Product: p.Compose.Product, Release: p.Compose.Release, Type: p.Compose.Type, Date: started, Pinned: pinned}
	var c *artifacts.Compose
	if opts.Respin != nil {
		c, err = artifacts.NewComposeRespin(opts.Out, spec, *opts.Respin)
	} else {
		c, err = artifacts.NewCompose(opts.Out, spec)
	}
	if err != nil {
		return nil, err
	}
	if opts.ID != "" && c.ID != opts.ID {
		c.Discard()
		return nil, fmt.Errorf("compose ID %s does not match the manifests' compose (%s)", opts.ID, c.ID)
	}
	exec := opts.Exec
	exec.LogDir = c.Dir()
	res, execErr := Execute(ctx, p, st, &exec)
	if ctx.Err() != nil || res == nil {
		c.Discard()
		if execErr == nil {
			execErr = ctx.Err()
		}
		return nil, execErr
	}
	rec := &artifacts.ComposeRecord{
		Schema: artifacts.ComposeSchema, ID: c.ID, Tool: opts.Exec.Tool, Started: started.UTC(),
		Compose: artifacts.ComposeName(p.Compose), Manifests: map[string]artifacts.Digest{}, Variables: opts.Variables,
		Dir: c.Dir(),
	}
	if opts.Partial {
		rec.Partial = &artifacts.PartialRecord{Date: started.UTC(), Respin: c.Respin}
	}
	for name, b := range opts.ManifestFiles {
		rec.Manifests[name] = artifacts.DigestBytes(b)
	}
	pubErr := publish(c, st, p, res, rec)
	if pinned {
		// A pinned compose records no durations: units of one compose,
		// and their merge, make the same compose.json whenever they run.
		for i := range rec.Stages {
			rec.Stages[i].WallMillis = 0
		}
	}
	switch {
	case execErr == nil && pubErr == nil:
		rec.Status = artifacts.StatusFinished
	case opts.Exec.KeepGoing && pubErr == nil && res.Counts()[StatusRan]+res.Counts()[StatusCached] > 0:
		rec.Status = artifacts.StatusIncomplete
	default:
		rec.Status = artifacts.StatusDoomed
	}
	if err := errors.Join(execErr, pubErr); err != nil {
		rec.Error = err.Error()
	}
	// The store first: the compose's files are hard links into it.
	finErr := st.Sync()
	if finErr == nil {
		finErr = finishCompose(ctx, c, rec, opts.Finalize, now)
	}
	if finErr == nil {
		finErr = recordCompose(c, st, rec)
	}
	if finErr != nil {
		c.Discard()
		return nil, errors.Join(execErr, pubErr, finErr)
	}
	return rec, errors.Join(execErr, pubErr)
}

// publish places outputs and logs in the compose and fills rec.Targets and
// rec.Stages.
func publish(c *artifacts.Compose, st *artifacts.Store, p *Plan, res *Result, rec *artifacts.ComposeRecord) error {
	var errs []error
	logOf := map[*Node]string{}
	for _, tn := range p.Targets {
		tr := artifacts.TargetRecord{Target: tn.Target, Stages: map[string]string{}}
		kinds := make([]string, 0, len(tn.Nodes))
		for k := range tn.Nodes {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, kind := range kinds {
			n := tn.Nodes[kind]
			tr.Stages[kind] = n.ID
			nr := res.Of(n)
			if nr.Log != nil {
				rel := StageLogPath(tn.Target, kind)
				if err := addStoreFile(c, st, rel, *nr.Log); err != nil {
					errs = append(errs, err)
				} else if _, seen := logOf[n]; !seen {
					logOf[n] = rel
				}
			}
			outputs := nr.Partial // what a failed stage left, for diagnosis
			if nr.Record != nil {
				outputs = nr.Record.Outputs
			}
			names := make([]string, 0, len(outputs))
			for name := range outputs {
				names = append(names, name)
			}
			sort.Strings(names)
			for _, name := range names {
				if err := c.Publish(st, tn.Target.Name, tn.Target.Arch, outputs[name]); err != nil {
					errs = append(errs, fmt.Errorf("%s %s: %w", tn.Target, kind, err))
				}
			}
		}
		rec.Targets = append(rec.Targets, tr)
	}
	for _, nr := range res.Nodes {
		n := nr.Node
		sr := artifacts.StageRecord{
			ID: n.ID, Kind: n.Kind, Version: n.Stage.Version(), Targets: targetStrings(n.Targets),
			Key: nr.Key, Status: string(nr.Status), CacheHit: nr.Status == StatusCached,
			WallMillis: nr.Wall.Milliseconds(), Config: n.Config, Log: logOf[n],
		}
		if nr.Record != nil {
			sr.Inputs, sr.Outputs, sr.Meta = nr.Record.Inputs, nr.Record.Outputs, nr.Record.Meta
			if nr.Status == StatusRan {
				sr.BytesWritten = nr.Record.BytesWritten
			}
		}
		if nr.Err != nil {
			sr.Error = nr.Err.Error()
		}
		rec.Stages = append(rec.Stages, sr)
	}
	return errors.Join(errs...)
}

func addStoreFile(c *artifacts.Compose, st *artifacts.Store, rel string, d artifacts.Descriptor) error {
	f, err := st.OpenBlob(d.Digest)
	if err != nil {
		return fmt.Errorf("publishing %s: %w", rel, err)
	}
	defer f.Close()
	return c.AddFile(rel, f, false)
}

// finishCompose writes checksums, finalizers, compose.json and metadata,
// syncs and renames the compose into place.
func finishCompose(ctx context.Context, c *artifacts.Compose, rec *artifacts.ComposeRecord, finalize func(context.Context, *artifacts.Compose, *artifacts.ComposeRecord) error, now func() time.Time) error {
	if _, err := c.WriteChecksums(); err != nil {
		return err
	}
	rec.Artifacts = c.Files()
	if finalize != nil && rec.Status != artifacts.StatusDoomed {
		if err := finalize(ctx, c, rec); err != nil {
			rec.Status = artifacts.StatusDoomed
			if rec.Error != "" {
				rec.Error += "\n"
			}
			rec.Error += err.Error()
		}
	}
	var variants []artifacts.Variant
	seen := map[string]int{}
	for _, t := range rec.Targets {
		i, ok := seen[t.Name]
		if !ok {
			i = len(variants)
			seen[t.Name] = i
			variants = append(variants, artifacts.Variant{UID: t.Name, Name: t.Name})
		}
		variants[i].Arches = append(variants[i].Arches, t.Arch)
	}
	for i := range variants {
		sort.Strings(variants[i].Arches)
	}
	if err := c.WriteMetadata(variants); err != nil {
		return err
	}
	fin := now()
	rec.Finished = fin.UTC()
	rec.WallMillis = fin.Sub(rec.Started).Milliseconds()
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding compose.json: %w", err)
	}
	if err := c.AddFile(artifacts.ComposeRecordFile, bytes.NewReader(append(b, '\n')), false); err != nil {
		return err
	}
	return c.Finish(rec.Status)
}

// recordCompose records in the store which keys the compose used (for gc
// --keep).
func recordCompose(c *artifacts.Compose, st *artifacts.Store, rec *artifacts.ComposeRecord) error {
	keys := []string{}
	for _, s := range rec.Stages {
		if s.Key != "" && (Status(s.Status) == StatusRan || Status(s.Status) == StatusCached) {
			keys = append(keys, s.Key)
		}
	}
	abs, _ := filepath.Abs(filepath.Join(c.Dir(), artifacts.ComposeRecordFile))
	return st.AddComposeRef(artifacts.ComposeRef{ID: c.ID, Time: rec.Finished, Status: rec.Status, Keys: keys, Record: abs})
}
