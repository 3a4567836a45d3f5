package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/boottest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/testbed"
)

type testOptions struct {
	composeFlags
	junit string
	list  bool
}

func newTestCmd(g *globals) *cobra.Command {
	o := &testOptions{}
	c := &cobra.Command{
		Use:   "test [MANIFESTS_DIR]",
		Short: "Boot the compose's disk images in QEMU and run the checks",
		Long: `test boots the disk image of every selected variant and arch in QEMU (TCG
unless the host has hardware virtualisation) and runs the testbed checks
that apply: composefs or plain root, /usr read-only, /etc and /var
writable, the composefs digest, the verity mode, and Secure Boot when the
manifest says test { secureboot = true }.

It is a build whose boottest stages always run, as if every selected
variant said test { boot = true }: every other stage comes from the cache
when its inputs are unchanged (and is built first otherwise), so the
images booted are exactly the ones build produces for the manifests. The
results are published in a new compose directory under --out
(<Variant>/<arch>/tests/: results JSON, JUnit XML, console log).

--junit FILE writes one JUnit XML file with a test suite per boot,
including the boots that failed. Exit status 1 when any check failed.`,
		Args: manifestsArg(g),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.list {
				return listChecks(g.stdout)
			}
			return runTest(cmd, g, o)
		},
	}
	f := c.Flags()
	o.register(f, "test")
	f.StringVar(&o.junit, "junit", "", "write a JUnit XML report of every boot to this file")
	f.BoolVar(&o.list, "list", false, "list the boot-test checks (names for test { checks = [...] }) and exit")
	return c
}

// bootForced is a manifest set in which every variant has test.boot set.
type bootForced struct{ *manifest.Manifest }

func (m bootForced) Config(variant, arch string) (*manifest.Config, error) {
	c, err := m.Manifest.Config(variant, arch)
	if err != nil {
		return nil, err
	}
	c.Test.Boot = true
	return c, nil
}

// testCollector keeps every boot test's outcome, passed or failed.
type testCollector struct {
	mu       sync.Mutex
	outcomes []collected
}

type collected struct {
	results *artifacts.BootTestResults
	junit   []byte
	err     error
}

func (c *testCollector) report(o *boottest.Outcome) {
	b, err := os.ReadFile(filepath.Join(o.Dir, boottest.JUnitFile))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outcomes = append(c.outcomes, collected{results: o.Results, junit: b, err: err})
}

func runTest(cmd *cobra.Command, g *globals, o *testOptions) error {
	r, err := g.startCompose(cmd, &o.composeFlags)
	if err != nil {
		return err
	}
	defer r.close()
	col := &testCollector{}
	stageList, err := withBootReport(g.stages(), col.report)
	if err != nil {
		return err
	}
	r.opts.Exec.KeepGoing = true
	r.opts.Exec.Rerun = func(n *pipeline.Node) bool { return n.Kind == contract.BootTest }
	rec, buildErr := pipeline.Build(cmd.Context(), bootForced{r.m}, stageList, r.st, r.opts)
	g.printRemoteStats(r)
	r.disp.Close()
	sort.Slice(col.outcomes, func(i, j int) bool { return col.outcomes[i].results.Target < col.outcomes[j].results.Target })
	if o.progress != "json" {
		printTestSummary(g.stdout, col.outcomes)
	}
	if rec != nil {
		summarize(g.stdout, o.progress == "json", rec, r.events)
	}
	if o.junit != "" {
		if err := writeJUnit(o.junit, col.outcomes); err != nil {
			return errors.Join(buildErr, err)
		}
	}
	if buildErr != nil {
		return g.buildError(rec, buildErr)
	}
	if len(col.outcomes) == 0 {
		return fmt.Errorf("no boot test ran")
	}
	return nil
}

// withBootReport returns the stage table with the boottest stage reporting
// each outcome to report.
func withBootReport(stages []pipeline.Stage, report func(*boottest.Outcome)) ([]pipeline.Stage, error) {
	out := make([]pipeline.Stage, len(stages))
	found := false
	for i, s := range stages {
		out[i] = s
		if s.Kind() == contract.BootTest {
			out[i], found = boottest.NewWithReport(report), true
		}
	}
	if !found {
		return nil, fmt.Errorf("this cfs-compose has no %s stage", contract.BootTest)
	}
	return out, nil
}

// printBootVerdicts prints the verdict of every boot test of a build, from
// the stage records (build's summary; test prints its own).
func printBootVerdicts(w io.Writer, rec *artifacts.ComposeRecord) {
	for _, s := range rec.Stages {
		if s.Kind != contract.BootTest {
			continue
		}
		targets := strings.Join(s.Targets, ", ")
		switch pipeline.Status(s.Status) {
		case pipeline.StatusRan, pipeline.StatusCached:
			var m struct {
				Result  string  `json:"result"`
				Verdict float64 `json:"verdict_seconds"`
				Accel   string  `json:"accel"`
			}
			raw, _ := json.Marshal(s.Meta)
			if err := json.Unmarshal(raw, &m); err != nil || m.Result == "" {
				continue
			}
			cached := ""
			if pipeline.Status(s.Status) == pipeline.StatusCached {
				cached = ", cached"
			}
			fmt.Fprintf(w, "Boot test %s: %s, verdict at %.1fs (%s%s)\n", targets, m.Result, m.Verdict, m.Accel, cached)
		case pipeline.StatusFailed:
			fmt.Fprintf(w, "Boot test %s: FAILED (below)\n", targets)
		}
	}
}

// printTestSummary prints one line per boot: verdict, check counts, time.
func printTestSummary(w io.Writer, outcomes []collected) {
	for _, c := range outcomes {
		r := c.results
		n := map[string]int{}
		var failed []string
		for _, ch := range r.Checks {
			n[ch.Result]++
			if ch.Result == "FAIL" {
				failed = append(failed, ch.Name)
			}
		}
		fmt.Fprintf(w, "%s %s: %d passed, %d failed, %d skipped, %d warned; boot %s, verdict at %.1fs (%s)\n",
			r.Result, r.Target, n["PASS"], n["FAIL"], n["SKIP"], n["WARN"], r.Outcome, r.VerdictSeconds, r.Accel)
		if len(failed) > 0 {
			fmt.Fprintf(w, "    failed: %s\n", strings.Join(failed, ", "))
		}
	}
}

// writeJUnit writes the merged JUnit report of the outcomes to path.
func writeJUnit(path string, outcomes []collected) error {
	var docs [][]byte
	for _, c := range outcomes {
		if c.err != nil {
			return fmt.Errorf("reading the JUnit report of %s: %w", c.results.Target, c.err)
		}
		docs = append(docs, c.junit)
	}
	b, err := testbed.MergeJUnit(docs...)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o644)
}

// listChecks prints the registered checks: name, tags, what they need.
func listChecks(w io.Writer) error {
	for _, c := range testbed.DefaultRegistry.Checks() {
		line := fmt.Sprintf("%-22s %s", c.Name, c.Description)
		if len(c.Tags) > 0 {
			line += "  [tags: " + strings.Join(c.Tags, ", ") + "]"
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// checkNames lists the registered check names, for manifest validation.
func checkNames() []string {
	var names []string
	for _, c := range testbed.DefaultRegistry.Checks() {
		names = append(names, c.Name)
	}
	return names
}
