package testbed

import (
	"encoding/xml"
	"fmt"
	"strings"
	"sync"
)

// JUnitReporter writes a JUnit XML file on Close: one <testsuite> per
// target, one <testcase> per check with <failure>/<skipped> elements and
// the check's own output in its <system-out>, and the console tail in the
// suite's <system-out> when it failed. The file is valid under the JUnit
// schema Jenkins' xunit plugin uses (junit-10.xsd; GitLab reads the same
// shape): <testsuites> carries tests, failures, errors and time but no
// skipped count (the schema rejects it; each <testsuite> has its own), and
// every <testsuite> has the required errors attribute (always 0: a check
// either passes, fails, warns or is skipped).
type JUnitReporter struct {
	path      string
	tailLines int
	mu        sync.Mutex
	suites    []junitSuite
}

// NewJUnitReporter returns a reporter that writes path on Close.
func NewJUnitReporter(path string) *JUnitReporter { return &JUnitReporter{path: path, tailLines: 50} }

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  string          `xml:"system-out,omitempty"`
	seconds    float64
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

// ReportCheck does nothing; checks are written per target.
func (j *JUnitReporter) ReportCheck(string, CheckResult) {}

// ReportTarget converts a target report into a test suite.
func (j *JUnitReporter) ReportTarget(r *TargetReport) {
	s := junitSuite{Name: r.Target, seconds: r.Boot.Duration.Seconds()}
	s.Properties = []junitProperty{
		{"outcome", r.Boot.Outcome.String()},
		{"verdict_seconds", fmt.Sprintf("%.2f", r.Boot.VerdictAt.Seconds())},
		{"console_log", r.Boot.ConsoleLog},
	}
	for _, f := range r.Features {
		s.Properties = append(s.Properties, junitProperty{"feature", string(f)})
	}
	for _, c := range r.Checks {
		jc := junitCase{Name: c.Name, Classname: "testbed." + r.Target, Time: fmt.Sprintf("%.3f", c.Duration.Seconds())}
		out := strings.Join(c.Output, "\n")
		first := out
		if i := strings.IndexByte(first, '\n'); i >= 0 {
			first = first[:i]
		}
		switch c.Result {
		case Fail:
			jc.Failure = &junitMessage{Message: first, Body: out}
			s.Failures++
		case Skip:
			jc.Skipped = &junitMessage{Message: first}
			s.Skipped++
		default:
			jc.SystemOut = out
		}
		s.Tests++
		s.Cases = append(s.Cases, jc)
		s.seconds += c.Duration.Seconds()
	}
	s.Time = fmt.Sprintf("%.3f", s.seconds)
	if r.Result == Fail {
		s.SystemOut = "last console lines:\n" + strings.Join(r.Boot.Tail(j.tailLines), "\n")
	}
	j.mu.Lock()
	j.suites = append(j.suites, s)
	j.mu.Unlock()
}

// Close writes the XML file atomically.
func (j *JUnitReporter) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	all := junitSuites{Suites: j.suites}
	var secs float64
	for _, s := range j.suites {
		all.Tests += s.Tests
		all.Failures += s.Failures
		all.Errors += s.Errors
		secs += s.seconds
	}
	all.Time = fmt.Sprintf("%.3f", secs)
	b, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JUnit report: %w", err)
	}
	return writeFile(j.path, append([]byte(xml.Header), append(b, '\n')...))
}

// rawSuites is a JUnit document whose suites are kept verbatim, for
// merging.
type rawSuites struct {
	XMLName  xml.Name   `xml:"testsuites"`
	Tests    int        `xml:"tests,attr"`
	Failures int        `xml:"failures,attr"`
	Errors   int        `xml:"errors,attr"`
	Time     string     `xml:"time,attr"`
	Suites   []rawSuite `xml:"testsuite"`
}

type rawSuite struct {
	Attrs []xml.Attr `xml:",any,attr"`
	Inner string     `xml:",innerxml"`
}

// MergeJUnit merges JUnit documents (each a <testsuites> element, as
// [JUnitReporter] writes them) into one: the suites in order, verbatim,
// with the tests, failures, errors and time totals summed.
func MergeJUnit(docs ...[]byte) ([]byte, error) {
	var all rawSuites
	var seconds float64
	for i, d := range docs {
		var doc rawSuites
		if err := xml.Unmarshal(d, &doc); err != nil {
			return nil, fmt.Errorf("testbed: JUnit report %d: %w", i+1, err)
		}
		all.Tests += doc.Tests
		all.Failures += doc.Failures
		all.Errors += doc.Errors
		var s float64
		if _, err := fmt.Sscan(doc.Time, &s); err == nil && s > 0 {
			seconds += s
		}
		all.Suites = append(all.Suites, doc.Suites...)
	}
	all.Time = fmt.Sprintf("%.3f", seconds)
	b, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("testbed: merging JUnit reports: %w", err)
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}
