package testbed

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

// H is the handle a check runs with, in the manner of testing.T: it logs,
// records failures and skips, and gives access to the boot being checked
// (the agent's report, the console, the output directory).
//
// Fatalf, Skip and Skipf stop the check by calling runtime.Goexit, so they
// must be called from the goroutine running the check.
type H struct {
	ctx    context.Context
	name   string
	target *Target
	boot   *BootResult

	mu     sync.Mutex
	logs   []string
	result Result
}

// Name returns the check's name.
func (h *H) Name() string { return h.name }

// Context returns a context that is cancelled when the check times out.
func (h *H) Context() context.Context { return h.ctx }

// Target returns the target being checked.
func (h *H) Target() *Target { return h.target }

// Boot returns the result of the boot being checked.
func (h *H) Boot() *BootResult { return h.boot }

// Report returns the agent's report parsed from the console.
func (h *H) Report() *protocol.Report { return &h.boot.Report }

// OutputDir returns the directory holding the boot's console log, QEMU
// command line and firmware variables.
func (h *H) OutputDir() string { return h.boot.OutputDir }

// ConsoleLog returns the path of the timestamped serial console log.
func (h *H) ConsoleLog() string { return h.boot.ConsoleLog }

// Has reports whether the target has feature f.
func (h *H) Has(f Feature) bool { return h.target.Has(f) }

// Log records a line in the check's output.
func (h *H) Log(args ...any) { h.addLog(fmt.Sprintln(args...)) }

// Logf records a formatted line in the check's output.
func (h *H) Logf(format string, args ...any) { h.addLog(fmt.Sprintf(format, args...)) }

// Errorf logs and marks the check failed; the check continues.
func (h *H) Errorf(format string, args ...any) {
	h.addLog(fmt.Sprintf(format, args...))
	h.mu.Lock()
	h.result = Fail
	h.mu.Unlock()
}

// Fatalf logs, marks the check failed and stops it.
func (h *H) Fatalf(format string, args ...any) {
	h.Errorf(format, args...)
	runtime.Goexit()
}

// Warnf logs and marks the check WARN unless it already failed; the check
// continues.
func (h *H) Warnf(format string, args ...any) {
	h.addLog("warning: " + fmt.Sprintf(format, args...))
	h.mu.Lock()
	if h.result == Pass {
		h.result = Warn
	}
	h.mu.Unlock()
}

// Skip logs and marks the check skipped (unless it already failed), and
// stops it.
func (h *H) Skip(args ...any) {
	h.addLog(fmt.Sprintln(args...))
	h.skipNow()
}

// Skipf is Skip with a format.
func (h *H) Skipf(format string, args ...any) {
	h.addLog(fmt.Sprintf(format, args...))
	h.skipNow()
}

func (h *H) skipNow() {
	h.mu.Lock()
	if h.result != Fail {
		h.result = Skip
	}
	h.mu.Unlock()
	runtime.Goexit()
}

// Failed reports whether the check has failed.
func (h *H) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.result == Fail
}

func (h *H) addLog(s string) {
	h.mu.Lock()
	h.logs = append(h.logs, strings.TrimRight(s, "\n"))
	h.mu.Unlock()
}

// Fact returns a fact the agent reported, failing the check when the agent
// did not report it.
func (h *H) Fact(key string) string {
	v, ok := h.boot.Report.Fact(key)
	if !ok {
		h.Fatalf("the agent reported no fact %q", key)
	}
	return v
}

// GuestCheck returns the agent's result for a guest check, failing the
// check when the agent did not report it.
func (h *H) GuestCheck(name string) protocol.CheckResult {
	c, ok := h.boot.Report.Check(name)
	if !ok {
		h.Fatalf("the agent did not report check %s (report complete: %v)", name, h.boot.Report.Ended)
	}
	return c
}

// RequireGuestPass fails the check unless the agent reported the guest
// check name as PASS; the agent's detail is logged either way.
func (h *H) RequireGuestPass(name string) protocol.CheckResult {
	c := h.GuestCheck(name)
	if c.Status != protocol.Pass {
		h.Errorf("guest check %s: %s: %s", name, c.Status, c.Detail)
	} else {
		h.Logf("guest check %s: %s", name, c.Detail)
	}
	return c
}

// RequireBooted stops the check with a failure unless the guest powered
// off after a complete agent report.
func (h *H) RequireBooted() {
	b := h.boot
	if b.Outcome != OutcomePoweredOff || !b.Report.Ended {
		h.Fatalf("the guest did not complete its report: outcome %s (%s); report begun=%v ended=%v",
			b.Outcome, b.Reason, b.Report.Begun, b.Report.Ended)
	}
}
