package boottest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/rs/zerolog"
)

// Media types of the outputs.
const (
	mediaTypeJUnit   = "application/xml"
	mediaTypeConsole = "text/plain"
)

// Run implements pipeline.Stage: it boots the "disk/raw" input with
// [Test] and stores the results, the JUnit report and the console log as
// outputs published under <Variant>/<arch>/tests/. A failed check fails
// the stage after the outputs are added, so the failed compose still
// carries the report (the pipeline publishes a failed stage's outputs
// without caching them).
func (s *Stage) Run(ctx context.Context, rc *pipeline.RunContext) error {
	var c Config
	if err := rc.DecodeConfig(&c); err != nil {
		return err
	}
	disk, err := rc.InputPath("disk", "raw")
	if err != nil {
		return err
	}
	var digest string
	if c.Expect.Composefs {
		if digest, err = readDigest(rc); err != nil {
			return err
		}
	}
	rc.Log.Info().Str("firmware", c.Firmware.Code).Bool("secureboot", c.SecureBoot != nil).
		Bool("composefs", c.Expect.Composefs).Msg("booting the disk image")
	lw := &logWriter{log: rc.Log}
	out, err := Test(ctx, &c, disk, digest, filepath.Join(rc.TempDir(), "boottest"), lw)
	lw.Flush()
	if err != nil {
		return err
	}
	if s.Report != nil {
		s.Report(out)
	}
	// The reports are outputs whether or not the checks passed: a failed
	// boot test's report and JUnit reach the (DOOMED) compose.
	for _, o := range []struct{ name, file, media, suffix string }{
		{"results", ResultsFile, artifacts.MediaTypeJSON, "boottest.json"},
		{"junit", JUnitFile, mediaTypeJUnit, "junit.xml"},
		{"console", ConsoleFile, mediaTypeConsole, ConsoleFile},
	} {
		pub := &artifacts.Publish{Dir: "tests", Filename: c.Name + "." + o.suffix}
		if err := rc.AddFile(o.name, filepath.Join(out.Dir, o.file), o.media, pub); err != nil {
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
	for k, v := range map[string]any{"result": r.Result, "outcome": r.Outcome, "checks": checks,
		"verdict_seconds": r.VerdictSeconds, "qemu_seconds": r.QEMUSeconds, "accel": r.Accel} {
		if err := rc.SetMeta(k, v); err != nil {
			return err
		}
	}
	return nil
}

// readDigest reads the composefs stage's digest output.
func readDigest(rc *pipeline.RunContext) (string, error) {
	if !rc.HasInput("composefs", "digest") {
		return "", fmt.Errorf("boottest: composefs is enabled but the composefs stage produced no digest")
	}
	b, err := rc.ReadInput("composefs", "digest")
	if err != nil {
		return "", err
	}
	var d struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return "", fmt.Errorf("boottest: composefs/digest: %w", err)
	}
	if len(d.Digest) != 64 || strings.Trim(d.Digest, "0123456789abcdef") != "" {
		return "", fmt.Errorf("boottest: composefs/digest: %q is not a 64-digit lower-case hex digest", d.Digest)
	}
	return d.Digest, nil
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
