package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// Status is the outcome of one stage instance.
type Status string

// Stage outcomes.
const (
	StatusCached    Status = "cached"    // outputs taken from the cache
	StatusRan       Status = "ran"       // run now, outputs stored
	StatusFailed    Status = "failed"    // the stage returned an error
	StatusSkipped   Status = "skipped"   // not run: an upstream stage failed, or the compose stopped
	StatusCancelled Status = "cancelled" // not run or interrupted: the compose was cancelled
)

// NodeResult is what happened to one node.
type NodeResult struct {
	Node   *Node
	Status Status
	Key    string // cache key (empty when never computed)
	Record *artifacts.Record
	Err    error
	// Log is the stage log blob (also set for failures; nil for skipped).
	Log  *artifacts.Descriptor
	Wall time.Duration
	// Partial holds the outputs a failed stage added before it failed
	// (a boot test's report): never cached, but published into the failed
	// compose so it can be diagnosed.
	Partial map[string]artifacts.Output
	// Remote is set when the cached record came from the remote cache.
	Remote bool
}

// Result is the outcome of Execute, one entry per plan node in plan order.
type Result struct {
	Nodes []*NodeResult
	by    map[*Node]*NodeResult
}

// Of returns the result of a node.
func (r *Result) Of(n *Node) *NodeResult { return r.by[n] }

// Failed returns the failed nodes' results.
func (r *Result) Failed() []*NodeResult {
	var out []*NodeResult
	for _, nr := range r.Nodes {
		if nr.Status == StatusFailed {
			out = append(out, nr)
		}
	}
	return out
}

// Counts returns how many nodes ended in each status.
func (r *Result) Counts() map[Status]int {
	m := map[Status]int{}
	for _, nr := range r.Nodes {
		m[nr.Status]++
	}
	return m
}

// ExecOptions control execution. The zero value runs with one job per CPU
// and stops at the first failure.
type ExecOptions struct {
	Jobs      int  // parallel stages; 0 means runtime.NumCPU()
	KeepGoing bool // after a failure, finish the branches that do not depend on it
	// Rerun forces a node to run even when its key is cached (the record
	// is replaced). Nil means never.
	Rerun func(*Node) bool
	// LogWriter receives every stage log event as zerolog JSON (wrap it in
	// a zerolog.ConsoleWriter for people); nil discards.
	LogWriter io.Writer
	LogLevel  zerolog.Level
	// Events receives progress events; nil discards. It is called from
	// several goroutines, never concurrently.
	Events func(Event)
	Tool   string // tool name and version, recorded in stage records
	// LogDir, when set, names where the compose will keep stage logs, so
	// failure messages can point there; it is only used in messages.
	LogDir string
	// Secret provides secrets to stages (RunContext.Secret); nil: none.
	Secret func(name string) (string, bool)
	// Remote, when set, is a shared stage cache: keys missing from the
	// local store are fetched from it, stages that ran are pushed to it.
	// A remote that fails (unreachable, or an entry refused for a digest
	// mismatch) costs a local build, never correctness: the failure is
	// logged and the stage runs.
	Remote RemoteCache
}

// StageError is a failed stage with the targets it served and its log.
type StageError struct {
	Kind    string
	Targets []Target
	Log     string // where the log will be (compose logs dir) or is (store)
	Err     error
}

func (e *StageError) Error() string {
	ts := make([]string, len(e.Targets))
	for i, t := range e.Targets {
		ts[i] = t.String()
	}
	msg := fmt.Sprintf("stage %s (%s) failed: %v", e.Kind, strings.Join(ts, ", "), e.Err)
	if e.Log != "" {
		msg += "; log: " + e.Log
	}
	return msg
}

func (e *StageError) Unwrap() error { return e.Err }

// Execute runs a plan: each node's cache key is computed from its config
// and its inputs' digests once its dependencies are done; a cached key is
// reused, otherwise the stage runs (at most one process per key at a time)
// and its record is stored. It returns the per-node results and an error
// joining every stage failure (or ctx's error when cancelled).
func Execute(ctx context.Context, p *Plan, st *artifacts.Store, opts *ExecOptions) (*Result, error) {
	if opts == nil {
		opts = &ExecOptions{}
	}
	var unresolved []error
	for _, n := range p.Nodes {
		if n.PlanErr != nil {
			unresolved = append(unresolved, fmt.Errorf("stage %s (%s): %w", n.Kind, targetList(n.Targets), n.PlanErr))
		}
	}
	if len(unresolved) > 0 {
		return nil, errors.Join(unresolved...)
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	e := &executor{p: p, st: st, opts: opts, res: &Result{by: map[*Node]*NodeResult{}}}
	for _, n := range p.Nodes {
		nr := &NodeResult{Node: n}
		e.res.Nodes = append(e.res.Nodes, nr)
		e.res.by[n] = nr
	}
	e.emit(Event{Type: EventPlan, Total: int64(len(p.Nodes))})

	pending := map[*Node]int{}
	dependents := map[*Node][]*Node{}
	for _, n := range p.Nodes {
		pending[n] = len(n.Deps)
		for _, d := range n.Deps {
			dependents[d] = append(dependents[d], n)
		}
	}
	var ready []*Node
	for _, n := range p.Nodes {
		if pending[n] == 0 {
			ready = append(ready, n)
		}
	}
	type done struct {
		n *Node
	}
	doneCh := make(chan done)
	running := 0
	stopping := false
	var errs []error

	// block marks n and everything downstream as skipped.
	var block func(n *Node, why error)
	block = func(n *Node, why error) {
		nr := e.res.by[n]
		if nr.Status != "" {
			return
		}
		nr.Status, nr.Err = StatusSkipped, why
		for _, d := range dependents[n] {
			block(d, why)
		}
	}

	for {
		for !stopping && ctx.Err() == nil && running < jobs && len(ready) > 0 {
			n := ready[0]
			ready = ready[1:]
			running++
			go func() {
				e.runNode(ctx, n)
				doneCh <- done{n}
			}()
		}
		if running == 0 {
			break
		}
		d := <-doneCh
		running--
		nr := e.res.by[d.n]
		switch nr.Status {
		case StatusFailed:
			errs = append(errs, nr.Err)
			for _, dep := range dependents[d.n] {
				block(dep, fmt.Errorf("upstream stage %s failed", d.n.Kind))
			}
			if !opts.KeepGoing {
				stopping = true
			}
		case StatusCancelled:
		default:
			for _, dep := range dependents[d.n] {
				pending[dep]--
				if pending[dep] == 0 && e.res.by[dep].Status == "" {
					ready = append(ready, dep)
				}
			}
		}
	}
	for _, nr := range e.res.Nodes {
		if nr.Status == "" {
			if ctx.Err() != nil {
				nr.Status = StatusCancelled
			} else {
				nr.Status, nr.Err = StatusSkipped, errors.New("not started: the compose stopped after a failure (use --keep-going to finish independent stages)")
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return e.res, fmt.Errorf("compose cancelled: %w", err)
	}
	return e.res, errors.Join(errs...)
}

type executor struct {
	p    *Plan
	st   *artifacts.Store
	opts *ExecOptions
	res  *Result
	mu   sync.Mutex // serializes Events
}

func (e *executor) emit(ev Event) {
	if e.opts.Events == nil {
		return
	}
	ev.Time = time.Now().UTC()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts.Events(ev)
}

func targetList(ts []Target) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return strings.Join(s, ", ")
}

// runNode computes the key, consults the cache and runs the stage if
// needed. It fills in the node's result.
func (e *executor) runNode(ctx context.Context, n *Node) {
	nr := e.res.by[n]
	start := time.Now()
	defer func() { nr.Wall = time.Since(start) }()

	inputs := map[string]artifacts.Output{}
	digests := map[string]string{}
	for _, d := range n.Deps {
		rec := e.res.by[d].Record
		for name, o := range rec.Outputs {
			inputs[d.Kind+"/"+name] = o
			digests[d.Kind+"/"+name] = string(o.Digest)
		}
	}
	nr.Key = n.Key(digests)
	base := Event{Stage: n.ID, Kind: n.Kind, Targets: targetStrings(n.Targets), Key: nr.Key}
	rerun := e.opts.Rerun != nil && e.opts.Rerun(n)

	if !rerun {
		if rec, err := e.st.GetRecord(nr.Key); err == nil {
			nr.Status, nr.Record, nr.Log = StatusCached, rec, rec.Log
			ev := base
			ev.Type, ev.Status, ev.Cached = EventFinish, string(StatusCached), true
			e.emit(ev)
			return
		}
	}
	kl, waited, err := e.st.LockKey(ctx, nr.Key)
	if err != nil {
		e.fail(nr, ctx, err, nil)
		return
	}
	defer kl.Unlock()
	if waited && !rerun {
		// Another process built this key while we waited.
		if rec, err := e.st.GetRecord(nr.Key); err == nil {
			nr.Status, nr.Record, nr.Log = StatusCached, rec, rec.Log
			ev := base
			ev.Type, ev.Status, ev.Cached = EventFinish, string(StatusCached), true
			e.emit(ev)
			return
		}
	}
	if ctx.Err() != nil {
		nr.Status, nr.Err = StatusCancelled, ctx.Err()
		return
	}
	if e.opts.Remote != nil && !rerun {
		if rec, ok := e.fetchRemote(ctx, n, nr.Key); ok {
			nr.Status, nr.Record, nr.Log, nr.Remote = StatusCached, rec, rec.Log, true
			ev := base
			ev.Type, ev.Status, ev.Cached = EventFinish, string(StatusCached), true
			e.emit(ev)
			return
		}
	}

	tmp, err := newTemp(e.st, n.Kind)
	if err != nil {
		e.fail(nr, ctx, err, nil)
		return
	}
	defer os.RemoveAll(tmp)
	logPath := filepath.Join(tmp, ".stage.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		e.fail(nr, ctx, err, nil)
		return
	}
	fileW := zerolog.ConsoleWriter{Out: logFile, NoColor: true, TimeFormat: time.RFC3339}
	var w io.Writer = fileW
	if e.opts.LogWriter != nil {
		w = zerolog.MultiLevelWriter(fileW, e.opts.LogWriter)
	}
	logger := zerolog.New(w).Level(e.opts.LogLevel).With().Timestamp().
		Str("stage", n.Kind).Str("targets", targetList(n.Targets)).Logger()

	rc := &RunContext{
		node: n, inputs: inputs, store: e.st, tmp: tmp,
		outputs: map[string]artifacts.Output{}, meta: map[string]json.RawMessage{},
		Log: logger, secret: e.opts.Secret,
	}
	var lastProgress time.Time
	rc.onProgress = func(done, total int64) {
		if now := time.Now(); now.Sub(lastProgress) >= 100*time.Millisecond || (total > 0 && done >= total) {
			lastProgress = now
			ev := base
			ev.Type, ev.Done, ev.Total = EventProgress, done, total
			e.emit(ev)
		}
	}
	ev := base
	ev.Type = EventStart
	e.emit(ev)
	logger.Info().Str("id", n.ID).Str("cache_key", nr.Key).Msg("running")

	runErr := safeRun(ctx, n.Stage, rc)
	if runErr == nil && ctx.Err() != nil {
		runErr = ctx.Err()
	}
	if runErr != nil {
		logger.Error().Err(runErr).Msg("failed")
	} else {
		logger.Info().Float64("wall_s", roundSeconds(time.Since(start))).Int64("bytes", rc.written).Msg("done")
	}
	logFile.Close()
	logDesc, lerr := e.st.AddFile(logPath, artifacts.MediaTypeLog)
	if runErr != nil {
		var ld *artifacts.Descriptor
		if lerr == nil {
			ld = &logDesc
		}
		e.fail(nr, ctx, runErr, ld)
		if nr.Status == StatusFailed && len(rc.outputs) > 0 {
			nr.Partial = rc.outputs
		}
		return
	}
	if lerr != nil {
		e.fail(nr, ctx, lerr, nil)
		return
	}
	inDigests := map[string]artifacts.Digest{}
	for k, v := range digests {
		inDigests[k] = artifacts.Digest(v)
	}
	rec := &artifacts.Record{
		Key: nr.Key, Kind: n.Kind, Version: n.Stage.Version(), Config: n.Config,
		Inputs: inDigests, Outputs: rc.outputs, Meta: rc.meta, ObjectSets: rc.objsets,
		Log: &logDesc, Started: start.UTC(), WallMillis: time.Since(start).Milliseconds(),
		BytesWritten: rc.written, Tool: e.opts.Tool,
	}
	if len(rec.Meta) == 0 {
		rec.Meta = nil
	}
	if err := e.st.PutRecord(rec); err != nil {
		e.fail(nr, ctx, err, &logDesc)
		return
	}
	nr.Status, nr.Record, nr.Log = StatusRan, rec, &logDesc
	if e.opts.Remote != nil {
		if err := e.opts.Remote.Push(ctx, e.st, rec); err != nil {
			e.remoteLog().Warn().Err(err).Str("stage", n.Kind).Str("key", nr.Key).Msg("remote cache: push failed")
		}
	}
	ev = base
	ev.Type, ev.Status, ev.Bytes = EventFinish, string(StatusRan), rc.written
	e.emit(ev)
}

// fetchRemote fills the local store from the remote cache for key and
// returns the record, or false on a miss or a refused entry (logged).
func (e *executor) fetchRemote(ctx context.Context, n *Node, key string) (*artifacts.Record, bool) {
	err := e.opts.Remote.Fetch(ctx, e.st, key)
	if err == nil {
		rec, gerr := e.st.GetRecord(key)
		if gerr == nil {
			return rec, true
		}
		err = gerr
	}
	if !errors.Is(err, ErrRemoteMiss) && ctx.Err() == nil {
		e.remoteLog().Warn().Err(err).Str("stage", n.Kind).Str("key", key).Msg("remote cache: entry not used, building the stage")
	}
	return nil, false
}

// remoteLog is the logger for remote cache problems (the log writer the
// stages log to).
func (e *executor) remoteLog() *zerolog.Logger {
	w := io.Discard
	if e.opts.LogWriter != nil {
		w = e.opts.LogWriter
	}
	l := zerolog.New(w).With().Timestamp().Logger()
	return &l
}

// fail records a stage failure (or a cancellation when ctx is done).
func (e *executor) fail(nr *NodeResult, ctx context.Context, err error, log *artifacts.Descriptor) {
	nr.Log = log
	ev := Event{Type: EventFinish, Stage: nr.Node.ID, Kind: nr.Node.Kind, Targets: targetStrings(nr.Node.Targets), Key: nr.Key}
	if ctx.Err() != nil {
		nr.Status, nr.Err = StatusCancelled, ctx.Err()
		ev.Status = string(StatusCancelled)
		e.emit(ev)
		return
	}
	se := &StageError{Kind: nr.Node.Kind, Targets: nr.Node.Targets, Err: err}
	if e.opts.LogDir != "" && len(nr.Node.Targets) > 0 {
		t := nr.Node.Targets[0]
		se.Log = filepath.Join(e.opts.LogDir, StageLogPath(t, nr.Node.Kind))
	} else if log != nil {
		se.Log = e.st.Path(*log)
	}
	nr.Status, nr.Err = StatusFailed, se
	ev.Status, ev.Error = string(StatusFailed), se.Error()
	e.emit(ev)
}

// StageLogPath is where a compose keeps a stage's log, relative to the
// compose directory.
func StageLogPath(t Target, kind string) string {
	return filepath.Join("logs", t.Name, t.Arch, kind+".log")
}

// safeRun runs a stage, turning a panic into an error.
func safeRun(ctx context.Context, s Stage, rc *RunContext) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return s.run(ctx, rc, rc.node.config)
}

func targetStrings(ts []Target) []string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = t.String()
	}
	return s
}

// roundSeconds is d in seconds with millisecond precision, for logs whose
// duration fields say their unit in their names (wall_s).
func roundSeconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }
