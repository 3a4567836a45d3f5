package main

import (
	"strconv"

	"regexp"

	"github.com/cfs-compose/cfs-compose/internal/regcache"

	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/artifacts/composedir"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/pipeline/progress"
)

// composeFlags are the flags build and test share.
type composeFlags struct {
	variants []string
	arches   []string
	jobs     int
	out      string
	progress string
	offline  bool
	// cacheRegistry is the OCI repository of the shared stage cache.
	cacheRegistry string
	cachePlain    bool
}

// register adds the shared flags; verb ("build", "test") words the help.
func (o *composeFlags) register(f *pflag.FlagSet, verb string) {
	f.StringSliceVar(&o.variants, "variant", nil, verb+" only these variants (repeatable)")
	f.StringSliceVar(&o.arches, "arch", nil, verb+" only these arches (repeatable)")
	f.IntVarP(&o.jobs, "jobs", "j", 0, "stages to run in parallel (default: number of CPUs)")
	f.StringVar(&o.out, "out", "out", "directory to write the compose directory into")
	f.StringVar(&o.progress, "progress", "auto", "progress output: auto (live on a terminal, plain otherwise), plain, or json (one event per line on stdout)")
	f.BoolVar(&o.offline, "offline", false, "no network: images must be pinned by digest or local")
	f.StringVar(&o.cacheRegistry, "cache-registry", "", "shared stage cache in an OCI registry repository (HOST[:PORT]/PATH): pull stage results missing locally, push the ones built (credentials: $REGISTRY_AUTH_FILE, else the containers auth.json)")
	f.BoolVar(&o.cachePlain, "cache-registry-plain-http", false, "talk plain HTTP to the --cache-registry host (a registry on localhost only)")
}

func (o *composeFlags) validate() error {
	if o.progress != "auto" && o.progress != "plain" && o.progress != "json" {
		return usageError{fmt.Errorf("invalid --progress %q (want auto, plain or json)", o.progress)}
	}
	if o.jobs < 0 {
		return usageError{fmt.Errorf("invalid -j %d", o.jobs)}
	}
	if o.cachePlain && o.cacheRegistry == "" {
		return usageError{errors.New("--cache-registry-plain-http needs --cache-registry")}
	}
	return nil
}

// composeRun is what build and test set up before pipeline.Build: the
// manifests, the pre-flighted keys, the store and the progress display,
// and the build options wired to them.
type composeRun struct {
	m      *manifest.Manifest
	st     *artifacts.Store
	remote *regcache.Cache // nil without --cache-registry
	disp   *progress.Display
	events func(pipeline.Event)
	opts   *pipeline.BuildOptions
}

// startCompose validates the flags, loads the manifests, loads every key
// (nothing runs if one is bad), opens the store and starts the display.
// Call close when the build is done.
func (g *globals) startCompose(cmd *cobra.Command, o *composeFlags) (*composeRun, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	m, err := g.manifestSet(cmd)
	if err != nil {
		return nil, err
	}
	keys, err := g.loadBuildKeys(m, o.variants, o.arches)
	if err != nil {
		return nil, err
	}
	var remote *regcache.Cache
	if o.cacheRegistry != "" {
		// $REGISTRY_AUTH_FILE names the auth file, as for podman and skopeo.
		authFile, _ := g.getenv("REGISTRY_AUTH_FILE")
		if remote, err = regcache.New(o.cacheRegistry, regcache.Options{AuthFile: authFile, PlainHTTP: o.cachePlain}); err != nil {
			return nil, usageError{err}
		}
	}
	st, err := g.openStore(cmd.Context(), false)
	if err != nil {
		return nil, err
	}
	r := &composeRun{m: m, st: st, remote: remote, disp: progress.New(g.stderr, o.progress == "auto" && isTerminal(g.stderr))}
	log := g.newLogger(r.disp.Writer())
	r.disp.SetLogger(log)
	r.events = r.disp.Event
	if o.progress == "json" {
		r.events = pipeline.JSONEvents(g.stdout)
	}
	r.opts = &pipeline.BuildOptions{
		Out:     o.out,
		Resolve: pipeline.ResolveOptions{Variants: o.variants, Arches: o.arches, Offline: o.offline, Log: log},
		Exec: pipeline.ExecOptions{
			Jobs: o.jobs, LogWriter: g.logWriter(r.disp.Writer()), LogLevel: g.logLevelV,
			Events: r.events, Tool: "cfs-compose " + version, Secret: keys.secret,
		},
		ManifestFiles: m.Files(),
		Variables:     m.Variables(),
		Finalize: func(ctx context.Context, c *artifacts.Compose, rec *artifacts.ComposeRecord) error {
			return g.finalizeCompose(ctx, c, rec, keys, log)
		},
	}
	if remote != nil {
		r.opts.Exec.Remote = remote
	}
	return r, nil
}

// close stops the display and releases the store.
func (r *composeRun) close() {
	r.disp.Close()
	r.st.Close()
}

// printRemoteStats prints, on stderr, what the shared stage cache moved:
// one line of key=value fields (the scale-out figures in
// docs/scale-out.md are read from it).
func (g *globals) printRemoteStats(r *composeRun) {
	if r.remote == nil {
		return
	}
	s := r.remote.Stats()
	fmt.Fprintf(g.stderr, "cache-registry %s: fetched=%d pushed=%d misses=%d refused=%d failures=%d bytes_pulled=%d bytes_pushed=%d\n",
		r.remote.Ref(), s.Fetched, s.Pushed, s.Misses, s.Refused, s.Failures, s.BytesPulled, s.BytesPushed)
}

// buildError turns a build's error into the command's: stage failures
// (already in the compose record and the logs) are printed once here.
func (g *globals) buildError(rec *artifacts.ComposeRecord, err error) error {
	if err == nil {
		return nil
	}
	var se *pipeline.StageError
	if errors.As(err, &se) || rec != nil {
		g.printError(err, false)
		return errReported
	}
	return err
}

type buildOptions struct {
	composeFlags
	keepGoing bool
	// Compose units (docs/scale-out.md).
	partial   bool
	composeID string
	date      string
	respin    int
}

func newBuildCmd(g *globals) *cobra.Command {
	o := &buildOptions{}
	c := &cobra.Command{
		Use:   "build [MANIFESTS_DIR]",
		Short: "Run the pipeline and write a compose directory",
		Long: `build resolves the manifests into a plan and runs it: stages run in
parallel (-j), cached stages are reused, and the compose directory
(Fedora-41-20261127.n.0) is written under --out when everything is done.

A rerun with nothing changed runs no stage. A failing stage stops its
dependents and names the stage, variant, arch and its log; --keep-going lets
independent branches finish. Ctrl-C cancels cleanly: running stages stop
and nothing half-written is left in the cache or the output.

Before any stage runs, every signing key the selected variants configure is
loaded: cosign keys (signing.key, decrypted with $CFS_SIGNING_PASSWORD or a
passphrase asked for on the terminal, and checked against signing.pub) and
Secure Boot key pairs (secureboot.key and .cert). A key that cannot be read
or decrypted is an error naming the file, and nothing runs. When every
variant signs with the same key, SHA256SUMS is signed too
(SHA256SUMS.sig, SHA256SUMS.sigstore.json); compose.json records the keys.`,
		Args: manifestsArg(g),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBuild(cmd, g, o)
		},
	}
	o.register(c.Flags(), "build")
	c.Flags().BoolVar(&o.keepGoing, "keep-going", false, "after a failure, finish the stages that do not depend on it")
	c.Flags().BoolVar(&o.partial, "partial", false, "write a compose unit: the selected targets of a compose that 'compose merge' completes (needs --compose-id, or --date and --respin)")
	c.Flags().StringVar(&o.composeID, "compose-id", "", "the compose ID to write (Product-Release-YYYYMMDD[.type].RESPIN): pins the date to that day and the respin")
	c.Flags().StringVar(&o.date, "date", "", "pin the compose date and every time compose.json and images.json record: YYYY-MM-DD, RFC 3339 or @UNIX_SECONDS (default $SOURCE_DATE_EPOCH when set)")
	c.Flags().IntVar(&o.respin, "respin", -1, "the respin number (-1: the next free one in --out)")
	return c
}

// unitOptions sets the pinned date, respin and compose ID of the build.
func (g *globals) unitOptions(o *buildOptions, opts *pipeline.BuildOptions) error {
	date := o.date
	if date == "" {
		if v, ok := g.getenv("SOURCE_DATE_EPOCH"); ok && v != "" {
			date = "@" + v
		}
	}
	if date != "" {
		t, err := parseDate(date)
		if err != nil {
			return usageError{err}
		}
		opts.Date = t
	}
	if o.respin >= 0 {
		r := o.respin
		opts.Respin = &r
	}
	if o.composeID != "" {
		day, respin, err := parseComposeID(o.composeID)
		if err != nil {
			return usageError{err}
		}
		if opts.Date.IsZero() {
			opts.Date = day
		} else if opts.Date.UTC().Format("20060102") != day.Format("20060102") {
			return usageError{fmt.Errorf("--date %s is not the day of --compose-id %s", date, o.composeID)}
		}
		if opts.Respin != nil && *opts.Respin != respin {
			return usageError{fmt.Errorf("--respin %d is not the respin of --compose-id %s", *opts.Respin, o.composeID)}
		}
		opts.Respin, opts.ID = &respin, o.composeID
	}
	if o.partial && (opts.Date.IsZero() || opts.Respin == nil) {
		return usageError{errors.New("--partial needs the compose ID fixed, so that all units agree on it: give --compose-id, or --date (or $SOURCE_DATE_EPOCH) and --respin")}
	}
	opts.Partial = o.partial
	return nil
}

// parseDate reads YYYY-MM-DD, RFC 3339 or @UNIX_SECONDS.
func parseDate(s string) (time.Time, error) {
	if secs, ok := strings.CutPrefix(s, "@"); ok {
		n, err := strconv.ParseInt(secs, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("invalid date %q: %w", s, err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	for _, layout := range []string{time.DateOnly, time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid date %q (want YYYY-MM-DD, RFC 3339 or @UNIX_SECONDS)", s)
}

// composeIDPattern is a productmd compose ID: its date and respin.
var composeIDPattern = regexp.MustCompile(`^.+-(\d{8})(?:\.n|\.t|\.ci)?\.(\d+)$`)

// parseComposeID returns the day (00:00 UTC) and respin of a compose ID.
func parseComposeID(id string) (time.Time, int, error) {
	m := composeIDPattern.FindStringSubmatch(id)
	if m == nil {
		return time.Time{}, 0, fmt.Errorf("invalid --compose-id %q (want Product-Release-YYYYMMDD[.n|.t|.ci].RESPIN)", id)
	}
	day, err := time.Parse("20060102", m[1])
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("invalid --compose-id %q: %w", id, err)
	}
	respin, err := strconv.Atoi(m[2])
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("invalid --compose-id %q: %w", id, err)
	}
	return day, respin, nil
}

func runBuild(cmd *cobra.Command, g *globals, o *buildOptions) error {
	probe := &pipeline.BuildOptions{}
	if err := g.unitOptions(o, probe); err != nil {
		return err
	}
	r, err := g.startCompose(cmd, &o.composeFlags)
	if err != nil {
		return err
	}
	defer r.close()
	r.opts.Exec.KeepGoing = o.keepGoing
	r.opts.Date, r.opts.Respin, r.opts.ID, r.opts.Partial = probe.Date, probe.Respin, probe.ID, probe.Partial
	rec, err := pipeline.Build(cmd.Context(), r.m, g.stages(), r.st, r.opts)
	r.disp.Close()
	g.printRemoteStats(r)
	if rec != nil {
		if o.progress != "json" {
			printBootVerdicts(g.stdout, rec)
		}
		summarize(g.stdout, o.progress == "json", rec, r.events)
	}
	return g.buildError(rec, err)
}

// summarize prints what a build did: counts, the compose directory, and
// "nothing to do" when every stage was cached.
func summarize(w io.Writer, jsonOut bool, rec *artifacts.ComposeRecord, events func(pipeline.Event)) {
	counts := map[pipeline.Status]int{}
	for _, s := range rec.Stages {
		counts[pipeline.Status(s.Status)]++
	}
	if jsonOut {
		events(pipeline.Event{Time: time.Now().UTC(), Type: pipeline.EventCompose, Status: rec.Status, Compose: rec.Dir, Total: int64(len(rec.Stages))})
		return
	}
	var parts []string
	for _, s := range []pipeline.Status{pipeline.StatusRan, pipeline.StatusCached, pipeline.StatusFailed, pipeline.StatusSkipped} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	if counts[pipeline.StatusRan] == 0 && counts[pipeline.StatusFailed] == 0 && len(rec.Stages) > 0 {
		fmt.Fprintf(w, "Nothing to do: all %d stages cached.\n", len(rec.Stages))
	}
	fmt.Fprintf(w, "Compose %s: %s (%s)\n", rec.ID, rec.Status, strings.Join(parts, ", "))
	printDisks(w, rec.Dir)
	fmt.Fprintln(w, rec.Dir)
}

// printDisks lists a compose's disk images and how to boot one (the line
// after them, the last of build's output, is the compose directory).
func printDisks(w io.Writer, dir string) {
	c, err := openCompose(dir)
	if err != nil {
		return
	}
	var first *composedir.Target
	for i := range c.Targets {
		t := &c.Targets[i]
		for _, p := range []string{t.Raw, t.Qcow2} {
			if p == "" {
				continue
			}
			fmt.Fprintf(w, "  disk image: %s\n", filepath.Join(dir, filepath.FromSlash(p)))
			if first == nil {
				first = t
			}
		}
	}
	if first != nil {
		fmt.Fprintf(w, "Boot one (serial console, Ctrl-A X quits): cfs-compose boot %s --variant %s --arch %s\n", dir, first.Variant, first.Arch)
	}
}
