package testbed

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// ConsoleReporter prints results as they come, go-test style, and the last
// console lines of a target whose checks failed.
type ConsoleReporter struct {
	w         io.Writer
	tailLines int
	mu        sync.Mutex
}

// NewConsoleReporter returns a reporter writing to w that shows the last
// tailLines console lines of failed targets (0 means 30).
func NewConsoleReporter(w io.Writer, tailLines int) *ConsoleReporter {
	if tailLines <= 0 {
		tailLines = 30
	}
	return &ConsoleReporter{w: w, tailLines: tailLines}
}

// ReportCheck prints one result line and the check's output, indented.
func (c *ConsoleReporter) ReportCheck(target string, r CheckResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "--- %s: %s/%s (%.2fs)\n", r.Result, target, r.Name, r.Duration.Seconds())
	for _, l := range r.Output {
		for _, s := range strings.Split(l, "\n") {
			fmt.Fprintf(c.w, "        %s\n", s)
		}
	}
}

// ReportTarget prints the target's verdict, timings and, when it failed,
// the tail of the console.
func (c *ConsoleReporter) ReportTarget(r *TargetReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	counts := map[Result]int{}
	for _, ch := range r.Checks {
		counts[ch.Result]++
	}
	b := r.Boot
	fmt.Fprintf(c.w, "%s %s: %d passed, %d failed, %d skipped, %d warned; boot %s, verdict at %.2fs, qemu ran %.2fs\n",
		r.Result, r.Target, counts[Pass], counts[Fail], counts[Skip], counts[Warn], b.Outcome, b.VerdictAt.Seconds(), b.Duration.Seconds())
	if r.Result == Fail {
		fmt.Fprintf(c.w, "    last console lines (%s):\n", b.ConsoleLog)
		for _, l := range b.Tail(c.tailLines) {
			fmt.Fprintf(c.w, "    | %s\n", l)
		}
	}
}

// Close does nothing; console output is written as it happens.
func (c *ConsoleReporter) Close() error { return nil }
