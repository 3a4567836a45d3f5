// Package protocol is the line protocol the in-guest test agent
// (testbed/agent) speaks on the serial console, and the host-side parser the
// testbed uses to turn a console log into results.
//
// Version 1 of the protocol is line based. Every protocol line starts with a
// marker; the host finds the marker anywhere in a console line, so a line
// the kernel prefixed with its own output (or a stray carriage return) still
// parses:
//
//	CFS-TEST-BEGIN v1
//	CFS-FACT <key>=<value>
//	CFS-CHECK <name> PASS|FAIL|SKIP <detail>
//	CFS-TEST-END pass=<n> fail=<n> skip=<n>
//
// Keys and check names are lower case: letters, digits, '.', '_' and '-'.
// Values and details are free text on one line (the writer replaces control
// characters with spaces). A report is complete when CFS-TEST-END was seen;
// a console log without it means the agent never finished (the guest hung,
// panicked or was refused by the firmware).
//
// The agent writes each line with a single write(2), so console lines do not
// interleave with kernel messages in the middle of a protocol line in
// practice; the parser still tolerates leading noise.
//
// # Security
//
// The parser reads guest output, which a broken or hostile guest controls.
// It never panics, bounds line length ([MaxLineLength]) and the number of
// checks and facts it records, and reports malformed protocol lines as
// errors in [Report.Errors] rather than guessing.
package protocol

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Version is the protocol version the agent announces and the parser
// understands.
const Version = "v1"

// Markers that start protocol lines.
const (
	MarkerBegin = "CFS-TEST-BEGIN"
	MarkerFact  = "CFS-FACT"
	MarkerCheck = "CFS-CHECK"
	MarkerEnd   = "CFS-TEST-END"
)

// Limits applied by the parser to untrusted guest output.
const (
	MaxLineLength = 4096 // longer protocol lines are truncated
	MaxEntries    = 1024 // facts and checks recorded at most (each)
)

// Status is the outcome of one guest check.
type Status string

// Guest check outcomes.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Valid reports whether s is one of the defined statuses.
func (s Status) Valid() bool { return s == Pass || s == Fail || s == Skip }

// Errors reported by the parser and the writer.
var (
	ErrMalformed = errors.New("protocol: malformed line")
	ErrName      = errors.New("protocol: invalid name")
)

// CheckResult is one CFS-CHECK line.
type CheckResult struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// Report is everything the agent reported during one boot.
type Report struct {
	Version string            `json:"version,omitempty"` // from CFS-TEST-BEGIN; empty if never seen
	Begun   bool              `json:"begun"`             // CFS-TEST-BEGIN seen
	Ended   bool              `json:"ended"`             // CFS-TEST-END seen: the report is complete
	Facts   map[string]string `json:"facts,omitempty"`
	Checks  []CheckResult     `json:"checks,omitempty"`  // in the order reported
	Summary string            `json:"summary,omitempty"` // text after CFS-TEST-END
	Errors  []string          `json:"errors,omitempty"`  // malformed or out-of-order protocol lines
}

// Check returns the result of the named check and whether it was reported.
func (r *Report) Check(name string) (CheckResult, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return CheckResult{}, false
}

// Fact returns the value of the named fact and whether it was reported.
func (r *Report) Fact(key string) (string, bool) {
	v, ok := r.Facts[key]
	return v, ok
}

// FactKeys returns the fact keys in sorted order.
func (r *Report) FactKeys() []string {
	keys := make([]string, 0, len(r.Facts))
	for k := range r.Facts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Kind says which protocol line [Parser.Feed] recognised.
type Kind int

// Kinds of console lines.
const (
	KindNone  Kind = iota // not a protocol line
	KindBegin             // CFS-TEST-BEGIN
	KindFact              // CFS-FACT
	KindCheck             // CFS-CHECK
	KindEnd               // CFS-TEST-END
	KindError             // a malformed protocol line (recorded in Report.Errors)
)

// Parser accumulates a [Report] from console lines. The zero value is ready
// to use.
type Parser struct {
	r Report
}

// Report returns the report parsed so far. The returned value shares no
// memory with the parser.
func (p *Parser) Report() Report {
	r := p.r
	if p.r.Facts != nil {
		r.Facts = make(map[string]string, len(p.r.Facts))
		for k, v := range p.r.Facts {
			r.Facts[k] = v
		}
	}
	r.Checks = append([]CheckResult(nil), p.r.Checks...)
	r.Errors = append([]string(nil), p.r.Errors...)
	return r
}

// Feed parses one console line (without its newline) and returns what kind
// of protocol line it was. Lines that carry no marker return KindNone.
func (p *Parser) Feed(line string) Kind {
	i := strings.Index(line, "CFS-")
	if i < 0 {
		return KindNone
	}
	line = strings.TrimRight(line[i:], "\r\n")
	if len(line) > MaxLineLength {
		line = line[:MaxLineLength]
	}
	marker, rest, _ := strings.Cut(line, " ")
	switch marker {
	case MarkerBegin:
		if p.r.Begun {
			return p.errorf("second %s", MarkerBegin)
		}
		v := strings.TrimSpace(rest)
		if v != Version {
			p.r.Begun = true
			p.r.Version = v
			return p.errorf("unsupported protocol version %q (want %s)", v, Version)
		}
		p.r.Begun, p.r.Version = true, v
		return KindBegin
	case MarkerFact:
		if err := p.order(marker); err != nil {
			return p.errorf("%v", err)
		}
		k, v, ok := strings.Cut(rest, "=")
		if !ok || ValidName(k) != nil {
			return p.errorf("fact %q: want KEY=VALUE with a lower-case key", rest)
		}
		if p.r.Facts == nil {
			p.r.Facts = map[string]string{}
		}
		if _, dup := p.r.Facts[k]; !dup && len(p.r.Facts) >= MaxEntries {
			return p.errorf("more than %d facts", MaxEntries)
		}
		p.r.Facts[k] = v
		return KindFact
	case MarkerCheck:
		if err := p.order(marker); err != nil {
			return p.errorf("%v", err)
		}
		name, rest2, _ := strings.Cut(rest, " ")
		st, detail, _ := strings.Cut(rest2, " ")
		if ValidName(name) != nil {
			return p.errorf("check name %q is not a valid name", name)
		}
		if !Status(st).Valid() {
			return p.errorf("check %s: status %q is not PASS, FAIL or SKIP", name, st)
		}
		if _, dup := p.r.Check(name); dup {
			return p.errorf("check %s reported twice", name)
		}
		if len(p.r.Checks) >= MaxEntries {
			return p.errorf("more than %d checks", MaxEntries)
		}
		p.r.Checks = append(p.r.Checks, CheckResult{Name: name, Status: Status(st), Detail: detail})
		return KindCheck
	case MarkerEnd:
		if err := p.order(marker); err != nil {
			return p.errorf("%v", err)
		}
		p.r.Ended = true
		p.r.Summary = strings.TrimSpace(rest)
		if err := p.checkSummary(); err != nil {
			return p.errorf("%v", err)
		}
		return KindEnd
	}
	return KindNone
}

// order checks that a line comes between BEGIN and END.
func (p *Parser) order(marker string) error {
	if !p.r.Begun {
		return fmt.Errorf("%s before %s", marker, MarkerBegin)
	}
	if p.r.Ended {
		return fmt.Errorf("%s after %s", marker, MarkerEnd)
	}
	return nil
}

// checkSummary verifies the counts on the END line against the checks seen,
// which catches lost console lines.
func (p *Parser) checkSummary() error {
	want := map[string]int{}
	for _, c := range p.r.Checks {
		want[strings.ToLower(string(c.Status))]++
	}
	for _, f := range strings.Fields(p.r.Summary) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("summary field %q: want KEY=N", f)
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("summary field %q: %w", f, err)
		}
		if k != "pass" && k != "fail" && k != "skip" {
			continue
		}
		if n != want[k] {
			return fmt.Errorf("summary says %s=%d but %d such checks were received (console lines lost?)", k, n, want[k])
		}
	}
	return nil
}

func (p *Parser) errorf(format string, args ...any) Kind {
	if len(p.r.Errors) < MaxEntries {
		p.r.Errors = append(p.r.Errors, fmt.Sprintf(format, args...))
	}
	return KindError
}

// Parse reads a whole console log and returns the report found in it.
func Parse(r io.Reader) (Report, error) {
	var p Parser
	err := eachLine(r, func(line string) { p.Feed(line) })
	return p.Report(), err
}

// ValidName reports whether s may be used as a check name or fact key:
// 1 to 64 characters from [a-z0-9._-], starting with a letter or digit.
func ValidName(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%w: %q: length must be 1..64", ErrName, s)
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("%w: %q: character %q at %d", ErrName, s, c, i)
		}
	}
	return nil
}
