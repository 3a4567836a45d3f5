package testbed

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

// ConsoleLine is one serial console line with the time since QEMU started.
type ConsoleLine struct {
	At   time.Duration `json:"at_ns"`
	Text string        `json:"text"`
}

// Console patterns the runner acts on. Refusals and initramfs failures
// never power the machine off (the firmware waits at "Press any key", the
// initramfs halts), so QEMU is stopped as soon as they appear.
var (
	// refusalPatterns are firmware messages that mean the image was
	// refused. OVMF's "Secure boot image verification failed" for a
	// -kernel image is not one: trixie's OVMF then falls back to its legacy
	// kernel loader.
	refusalPatterns = []string{
		"Access Denied",
		"No bootable option or device was found",
	}
	// initFatalPattern is printed by the builtin initramfs before it halts.
	initFatalPattern = "cfs-init: FATAL"
	// panicPattern is the kernel's panic message.
	panicPattern = "Kernel panic - not syncing"
)

// consoleEvent is something on the console the runner reacts to.
type consoleEvent struct {
	kind eventKind
	at   time.Duration
	line string
}

type eventKind int

const (
	eventReportEnd eventKind = iota + 1
	eventRefused
	eventInitFatal
	eventPanic
	eventStop // Machine.StopAt appeared
)

// ansiEscape matches terminal control sequences the firmware prints.
var ansiEscape = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[@-Z\\-_])`)

// console turns the raw serial byte stream into timestamped lines: it
// writes them to the log, feeds the protocol parser and emits events. It is
// an io.Writer so that exec.Cmd can copy QEMU's stdout into it.
type console struct {
	mu      sync.Mutex
	start   time.Time
	now     func() time.Time
	log     *bufio.Writer
	parser  protocol.Parser
	lines   []ConsoleLine
	partial []byte
	events  chan consoleEvent
	matched map[eventKind]bool // events already sent for the partial line
	stopAt  string             // Machine.StopAt; empty: none
}

const (
	maxConsoleLine = 16 << 10 // longer lines are split
	maxPartialScan = 512      // unterminated lines are scanned for refusals up to this length
)

func newConsole(log io.Writer, start time.Time) *console {
	return &console{start: start, now: time.Now, log: bufio.NewWriter(log), events: make(chan consoleEvent, 16), matched: map[eventKind]bool{}}
}

// Write consumes serial output.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.now().Sub(c.start)
	for _, b := range p {
		if b == '\n' || len(c.partial) >= maxConsoleLine {
			c.line(string(c.partial), at)
			c.partial = c.partial[:0]
			c.matched = map[eventKind]bool{}
			continue
		}
		c.partial = append(c.partial, b)
	}
	// Firmware prompts ("Press any key") may never end their line: look
	// for refusals in the partial line too (bounded: QEMU may hand over one
	// byte at a time, and rescanning a long line for each is quadratic).
	if len(c.partial) > 0 && len(c.partial) <= maxPartialScan {
		c.scanRefusal(clean(string(c.partial)), at)
	}
	return len(p), nil
}

// flush ends a trailing partial line (at EOF) and flushes the log.
func (c *console) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.partial) > 0 {
		c.line(string(c.partial), c.now().Sub(c.start))
		c.partial = nil
	}
	return c.log.Flush()
}

func (c *console) line(raw string, at time.Duration) {
	text := clean(raw)
	c.lines = append(c.lines, ConsoleLine{At: at, Text: text})
	fmt.Fprintf(c.log, "[%8.3f] %s\n", at.Seconds(), text)
	if c.parser.Feed(text) == protocol.KindEnd {
		c.send(consoleEvent{eventReportEnd, at, text})
	}
	c.scan(text, at)
}

// scan looks for every pattern in a complete line.
func (c *console) scan(text string, at time.Duration) {
	c.scanRefusal(text, at)
	if strings.Contains(text, initFatalPattern) {
		c.sendOnce(consoleEvent{eventInitFatal, at, text})
	}
	if strings.Contains(text, panicPattern) {
		c.sendOnce(consoleEvent{eventPanic, at, text})
	}
}

// scanRefusal looks for firmware refusals, which may sit on a line the
// firmware never ends. Initramfs and kernel messages end their lines, so
// they are only matched complete (the reason then carries the whole line).
func (c *console) scanRefusal(text string, at time.Duration) {
	for _, p := range refusalPatterns {
		if strings.Contains(text, p) {
			c.sendOnce(consoleEvent{eventRefused, at, text})
		}
	}
	if c.stopAt != "" && strings.Contains(text, c.stopAt) {
		c.sendOnce(consoleEvent{eventStop, at, text})
	}
}

func (c *console) sendOnce(ev consoleEvent) {
	if c.matched[ev.kind] {
		return
	}
	c.matched[ev.kind] = true
	c.send(ev)
}

func (c *console) send(ev consoleEvent) {
	select {
	case c.events <- ev:
	default: // the runner already reacts to an earlier event
	}
}

// clean removes terminal escapes, carriage returns and other control
// characters from a console line.
func clean(s string) string {
	s = ansiEscape.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func (c *console) snapshot() ([]ConsoleLine, protocol.Report) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]ConsoleLine(nil), c.lines...), c.parser.Report()
}
