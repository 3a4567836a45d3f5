package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// ComposeSchema is the schema version of compose.json.
const ComposeSchema = 1

// ComposeRecord is compose.json: the complete record of one compose.
type ComposeRecord struct {
	Schema     int              `json:"schema"`
	ID         string           `json:"id"`
	Status     string           `json:"status"`
	Tool       string           `json:"tool"`
	Started    time.Time        `json:"started"`
	Finished   time.Time        `json:"finished"`
	WallMillis int64            `json:"wallMillis"`
	Compose    manifest.Compose `json:"compose"`
	// Manifests maps each manifest file name to its sha256 digest.
	Manifests map[string]artifacts.Digest `json:"manifests"`
	// Variables holds the effective variable values.
	Variables map[string]string `json:"variables,omitempty"`
	Targets   []TargetRecord    `json:"targets"`
	Stages    []StageRecord     `json:"stages"`
	// Artifacts maps each published file (relative path) to its digest.
	Artifacts map[string]artifacts.Digest `json:"artifacts"`
	// Extra holds compose-level facts added by finalizers (for example
	// the SHA256SUMS signature).
	Extra map[string]json.RawMessage `json:"extra,omitempty"`
	Error string                     `json:"error,omitempty"`

	// Dir is the compose directory (not serialized).
	Dir string `json:"-"`
}

// TargetRecord lists the stage instances one target used.
type TargetRecord struct {
	Target
	Stages map[string]string `json:"stages"` // kind -> stage id
}

// StageRecord is one stage instance in compose.json.
type StageRecord struct {
	ID           string                      `json:"id"`
	Kind         string                      `json:"kind"`
	Version      string                      `json:"version"`
	Targets      []string                    `json:"targets"`
	Key          string                      `json:"key,omitempty"`
	Status       Status                      `json:"status"`
	CacheHit     bool                        `json:"cacheHit"`
	WallMillis   int64                       `json:"wallMillis"`
	BytesWritten int64                       `json:"bytesWritten"`
	Config       json.RawMessage             `json:"config"`
	Inputs       map[string]artifacts.Digest `json:"inputs,omitempty"`
	Outputs      map[string]artifacts.Output `json:"outputs,omitempty"`
	Meta         map[string]json.RawMessage  `json:"meta,omitempty"`
	Log          string                      `json:"log,omitempty"` // relative to the compose directory
	Error        string                      `json:"error,omitempty"`
}

// BuildOptions control Build.
type BuildOptions struct {
	Out     string // parent directory of compose directories
	Resolve ResolveOptions
	Exec    ExecOptions
	Now     func() time.Time // clock for the compose date; nil means time.Now
	// ManifestFiles and Variables are recorded in compose.json.
	ManifestFiles map[string][]byte
	Variables     map[string]string
	// Finalize runs after SHA256SUMS is written and before the compose is
	// renamed into place (for example to sign SHA256SUMS). It may add
	// files to the compose and facts to rec.Extra.
	Finalize func(ctx context.Context, c *artifacts.Compose, rec *ComposeRecord) error
}

// Build resolves, executes and publishes one compose. A failed stage still
// produces a compose directory (STATUS DOOMED, or FINISHED_INCOMPLETE with
// KeepGoing) holding the logs and compose.json; a cancelled compose leaves
// nothing in Out. The returned error joins the stage failures.
func Build(ctx context.Context, m Manifests, stages []Stage, st *artifacts.Store, opts *BuildOptions) (*ComposeRecord, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	started := now()
	p, err := Resolve(ctx, m, stages, &opts.Resolve)
	if err != nil {
		return nil, err
	}
	spec := artifacts.ComposeSpec{Product: p.Compose.Product, Release: p.Compose.Release, Type: p.Compose.Type, Date: started}
	c, err := artifacts.NewCompose(opts.Out, spec)
	if err != nil {
		return nil, err
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
	rec := &ComposeRecord{
		Schema: ComposeSchema, ID: c.ID, Tool: opts.Exec.Tool, Started: started.UTC(),
		Compose: p.Compose, Manifests: map[string]artifacts.Digest{}, Variables: opts.Variables,
		Dir: c.Dir(),
	}
	for name, b := range opts.ManifestFiles {
		rec.Manifests[name] = artifacts.DigestBytes(b)
	}
	pubErr := publish(c, st, p, res, rec)
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
	finErr := finish(ctx, c, st, rec, opts, now)
	if finErr != nil {
		c.Discard()
		return nil, errors.Join(execErr, pubErr, finErr)
	}
	return rec, errors.Join(execErr, pubErr)
}

// publish places outputs and logs in the compose and fills rec.Targets and
// rec.Stages.
func publish(c *artifacts.Compose, st *artifacts.Store, p *Plan, res *Result, rec *ComposeRecord) error {
	var errs []error
	logOf := map[*Node]string{}
	for _, tn := range p.Targets {
		tr := TargetRecord{Target: tn.Target, Stages: map[string]string{}}
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
		sr := StageRecord{
			ID: n.ID, Kind: n.Kind, Version: n.Stage.Version(), Targets: targetStrings(n.Targets),
			Key: nr.Key, Status: nr.Status, CacheHit: nr.Status == StatusCached,
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

// finish writes checksums, finalizers, compose.json and metadata, syncs
// and renames the compose into place, and records it in the store.
func finish(ctx context.Context, c *artifacts.Compose, st *artifacts.Store, rec *ComposeRecord, opts *BuildOptions, now func() time.Time) error {
	if _, err := c.WriteChecksums(); err != nil {
		return err
	}
	rec.Artifacts = c.Files()
	if opts.Finalize != nil && rec.Status != artifacts.StatusDoomed {
		if err := opts.Finalize(ctx, c, rec); err != nil {
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
	if err := c.AddFile("compose.json", bytes.NewReader(append(b, '\n')), false); err != nil {
		return err
	}
	if err := st.Sync(); err != nil {
		return err
	}
	if err := c.Finish(rec.Status); err != nil {
		return err
	}
	keys := []string{}
	for _, s := range rec.Stages {
		if s.Key != "" && (s.Status == StatusRan || s.Status == StatusCached) {
			keys = append(keys, s.Key)
		}
	}
	abs, _ := filepath.Abs(filepath.Join(c.Dir(), "compose.json"))
	return st.AddComposeRef(artifacts.ComposeRef{ID: c.ID, Time: fin.UTC(), Status: rec.Status, Keys: keys, Record: abs})
}

// LoadComposeRecord reads a compose.json (a compose directory or the file).
func LoadComposeRecord(path string) (*ComposeRecord, error) {
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		path = filepath.Join(path, "compose.json")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading compose record: %w", err)
	}
	var r ComposeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading compose record %s: %w", path, err)
	}
	r.Dir = filepath.Dir(path)
	return &r, nil
}
