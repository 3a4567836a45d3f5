// Package testvm runs short QEMU boots for tests of the boot chain (UKIs,
// the builtin initramfs): TCG acceleration, serial console captured with a
// timestamp per line, a timeout that kills the process group, and the
// console printed on failure. It is test support, not the product's QEMU
// runner (that lives in testbed/).
//
// VMs skip the test under testing.Short() and when the QEMU binary is
// missing, with the reason.
package testvm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Line is one serial console line and when it arrived (since start).
type Line struct {
	At   time.Duration
	Text string
}

// Result is a finished (or killed) VM run.
type Result struct {
	Lines    []Line
	Elapsed  time.Duration
	TimedOut bool
	Err      error // qemu's exit status error, if any
}

// Console returns the console as text, one "[  1.23s] line" per line.
func (r *Result) Console() string {
	var b strings.Builder
	for _, l := range r.Lines {
		fmt.Fprintf(&b, "[%6.2fs] %s\n", l.At.Seconds(), l.Text)
	}
	return b.String()
}

// Find returns the first line containing s.
func (r *Result) Find(s string) (Line, bool) {
	for _, l := range r.Lines {
		if strings.Contains(l.Text, s) {
			return l, true
		}
	}
	return Line{}, false
}

// Require skips the test under -short or when a tool is missing.
func Require(tb testing.TB, tools ...string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("QEMU boot test skipped under -short")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			tb.Skipf("SKIP: %s is not installed (Makefile DEB_PACKAGES installs it): %v", t, err)
		}
	}
}

// Run starts qemu (binary and args), captures the serial console on
// stdout, and waits for it to exit or for timeout. stop, if non-nil, is
// called on each line; returning true kills qemu at once (for guests
// that hang instead of powering off). The console is logged to the test
// log and saved as console.log in dir.
func Run(tb testing.TB, dir string, timeout time.Duration, stop func(line string) bool, binary string, args ...string) *Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.Command(binary, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", binary, err)
	}
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	res := &Result{}
	var mu sync.Mutex
	done := make(chan struct{})
	stopped := make(chan struct{}, 1)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			text := strings.TrimRight(sc.Text(), "\r")
			mu.Lock()
			res.Lines = append(res.Lines, Line{time.Since(start), text})
			mu.Unlock()
			if stop != nil && stop(text) {
				select {
				case stopped <- struct{}{}:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	waitErr := make(chan error, 1)
	go func() { <-done; waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		res.Err = err
	case <-stopped:
		kill()
		<-waitErr
	case <-ctx.Done():
		res.TimedOut = true
		kill()
		<-waitErr
	}
	res.Elapsed = time.Since(start)
	if stderr.Len() > 0 {
		res.Lines = append(res.Lines, Line{res.Elapsed, "qemu stderr: " + strings.TrimSpace(stderr.String())})
	}
	os.WriteFile(filepath.Join(dir, "console.log"), []byte(res.Console()), 0o644)
	if testing.Verbose() && os.Getenv("TESTVM_CONSOLE") != "" {
		tb.Logf("console:\n%s", res.Console())
	}
	return res
}

// Fail reports a failed expectation with the console attached.
func (r *Result) Fail(tb testing.TB, format string, a ...any) {
	tb.Helper()
	tb.Errorf("%s\n--- console (%.2fs, timed out: %v) ---\n%s", fmt.Sprintf(format, a...), r.Elapsed.Seconds(), r.TimedOut, r.Console())
}
