package boottest

import (
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// run boots the disk image with [Test] and stores the results, the JUnit
// report and the console log as outputs published under
// <Variant>/<arch>/tests/. A failed check fails the stage after the
// outputs are added, so the failed compose still carries the report (the
// pipeline publishes a failed stage's outputs without caching them).
func run(ctx context.Context, rc *pipeline.RunContext, c *Config, report func(*Outcome)) error {
	disk, err := contract.DiskRaw.Path(rc)
	if err != nil {
		return err
	}
	im := Image{Disk: disk}
	switch {
	case c.Expect.Ostree:
		d, err := contract.OstreeDeployment.Get(rc)
		if err != nil {
			return err
		}
		// The deployment directory ends in CHECKSUM.SERIAL, as `ostree
		// admin status` names it.
		im.OstreeDeployment = d.Stateroot + " " + path.Base(d.Dir)
		// With composefs the root is the deployment's .ostree.cfs (the
		// ostree stage's digest; no composefs stage runs).
		if c.Expect.Composefs {
			im.ComposefsDigest = d.ComposefsDigest
		}
	case c.Expect.Composefs:
		d, err := contract.ComposefsDigest.Get(rc)
		if err != nil {
			return err
		}
		im.ComposefsDigest = d.Digest
	}
	tree, err := contract.SourceTree.Path(rc)
	if err != nil {
		return err
	}
	f, err := os.Open(tree)
	if err != nil {
		return err
	}
	agent, err := AgentMode(f)
	f.Close()
	if err != nil {
		return err
	}
	rc.Log.Info().Str("firmware", c.Firmware.Code).Bool("secureboot", c.SecureBoot != nil).
		Bool("composefs", c.Expect.Composefs).Str("agent", agent).Msg("booting the disk image")
	lw := &logWriter{log: rc.Log}
	out, err := Test(ctx, c, im, agent, filepath.Join(rc.TempDir(), "boottest"), lw)
	lw.Flush()
	if err != nil {
		return err
	}
	if report != nil {
		report(out)
	}
	// The reports are outputs whether or not the checks passed: a failed
	// boot test's report and JUnit reach the (DOOMED) compose.
	for _, o := range []struct {
		out          pipeline.Output
		file, suffix string
	}{
		{contract.BootTestResults.Output, ResultsFile, "boottest.json"},
		{contract.BootTestJUnit, JUnitFile, "junit.xml"},
		{contract.BootTestConsole, ConsoleFile, ConsoleFile},
	} {
		pub := &artifacts.Publish{Dir: "tests", Filename: c.Name + "." + o.suffix}
		if err := o.out.AddFile(rc, filepath.Join(out.Dir, o.file), pub); err != nil {
			return err
		}
	}
	if err := out.Err(); err != nil {
		return err
	}
	r := out.Results
	rc.Log.Info().Str("result", r.Result).Float64("verdict_seconds", r.VerdictSeconds).
		Float64("qemu_seconds", r.QEMUSeconds).Str("accel", r.Accel).Msg("boot test passed")
	checks := map[string]string{}
	for _, ch := range r.Checks {
		checks[ch.Name] = ch.Result
	}
	for k, v := range map[string]any{"result": r.Result, "outcome": r.Outcome, "checks": checks, "agent": agent,
		"verdict_seconds": r.VerdictSeconds, "qemu_seconds": r.QEMUSeconds, "accel": r.Accel} {
		if err := rc.SetMeta(k, v); err != nil {
			return err
		}
	}
	return nil
}

// logWriter turns the console reporter's lines into stage log events.
type logWriter struct {
	log zerolog.Logger
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line) // incomplete: keep for the next write
			return len(p), nil
		}
		w.log.Info().Msg(strings.TrimRight(line, "\n"))
	}
}

// Flush logs a trailing incomplete line.
func (w *logWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		w.log.Info().Msg(w.buf.String())
		w.buf.Reset()
	}
}
