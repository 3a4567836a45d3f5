package main

import (
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
}

// register adds the shared flags; verb ("build", "test") words the help.
func (o *composeFlags) register(f *pflag.FlagSet, verb string) {
	f.StringSliceVar(&o.variants, "variant", nil, verb+" only these variants (repeatable)")
	f.StringSliceVar(&o.arches, "arch", nil, verb+" only these arches (repeatable)")
	f.IntVarP(&o.jobs, "jobs", "j", 0, "stages to run in parallel (default: number of CPUs)")
	f.StringVar(&o.out, "out", "out", "directory to write the compose directory into")
	f.StringVar(&o.progress, "progress", "auto", "progress output: auto (live on a terminal, plain otherwise), plain, or json (one event per line on stdout)")
	f.BoolVar(&o.offline, "offline", false, "no network: images must be pinned by digest or local")
}

func (o *composeFlags) validate() error {
	if o.progress != "auto" && o.progress != "plain" && o.progress != "json" {
		return usageError{fmt.Errorf("invalid --progress %q (want auto, plain or json)", o.progress)}
	}
	if o.jobs < 0 {
		return usageError{fmt.Errorf("invalid -j %d", o.jobs)}
	}
	return nil
}

// composeRun is what build and test set up before pipeline.Build: the
// manifests, the pre-flighted keys, the store and the progress display,
// and the build options wired to them.
type composeRun struct {
	m      *manifest.Manifest
	st     *artifacts.Store
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
	st, err := g.openStore(cmd.Context(), false)
	if err != nil {
		return nil, err
	}
	r := &composeRun{m: m, st: st, disp: progress.New(g.stderr, o.progress == "auto" && isTerminal(g.stderr))}
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
	return r, nil
}

// close stops the display and releases the store.
func (r *composeRun) close() {
	r.disp.Close()
	r.st.Close()
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
	return c
}

func runBuild(cmd *cobra.Command, g *globals, o *buildOptions) error {
	r, err := g.startCompose(cmd, &o.composeFlags)
	if err != nil {
		return err
	}
	defer r.close()
	r.opts.Exec.KeepGoing = o.keepGoing
	rec, err := pipeline.Build(cmd.Context(), r.m, g.stages(), r.st, r.opts)
	r.disp.Close()
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
