package testbed

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// xmllint returns the path of xmllint, skipping loudly without it (make
// deps installs libxml2-utils).
func xmllint(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("xmllint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("xmllint not found: install libxml2-utils (make deps does)")
		}
		t.Skip("SKIPPING JUnit schema validation: xmllint not found; install libxml2-utils (make deps does)")
	}
	return p
}

// validate runs xmllint --schema testdata/junit.xsd on doc.
func validate(t *testing.T, lint string, doc []byte) error {
	t.Helper()
	p := filepath.Join(t.TempDir(), "doc.xml")
	if err := os.WriteFile(p, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(lint, "--noout", "--schema", "testdata/junit.xsd", p).CombinedOutput()
	if err != nil {
		return &schemaError{string(out)}
	}
	return nil
}

type schemaError struct{ out string }

func (e *schemaError) Error() string { return e.out }

// TestJUnitSchema validates our JUnit reports, single and merged, against
// the JUnit schema CI systems use (issue 13 item 4: the skipped attribute
// on <testsuites> and a missing errors attribute on <testsuite> were
// rejected), and checks that the schema file does reject those.
func TestJUnitSchema(t *testing.T) {
	lint := xmllint(t)
	report := func(target string, results ...Result) []byte {
		p := filepath.Join(t.TempDir(), "junit.xml")
		r := NewJUnitReporter(p)
		rep := &TargetReport{Target: target, Features: []Feature{FeatureUEFI}, Result: Pass,
			Boot: &BootResult{Duration: 3 * time.Second, Outcome: OutcomePoweredOff, ConsoleLog: "console.log",
				Lines: []ConsoleLine{{Text: "Power down \x1b[0m <&> \x00"}}}}
		for i, res := range results {
			rep.Checks = append(rep.Checks, CheckResult{Name: "check" + string(rune('a'+i)), Result: res,
				Duration: 1500 * time.Millisecond, Output: []string{"line one <&>", "line two"}})
			rep.Result = worse(rep.Result, res)
		}
		r.ReportTarget(rep)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := report("Fedora-Testbed-43.x86_64", Pass, Fail, Skip, Warn)
	b := report("Fedora-Testbed-43.aarch64", Pass, Pass)
	merged, err := MergeJUnit(a, b)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		doc   []byte
		valid bool
	}{
		{"a report with every result", a, true},
		{"a passing report", b, true},
		{"an empty report", report("empty"), true},
		{"a merged report", merged, true},
		// The schema encodes the facts: what CI rejects, it rejects.
		{"skipped on testsuites", []byte(`<testsuites skipped="1"><testsuite name="a" tests="0" failures="0" errors="0"/></testsuites>`), false},
		{"testsuite without errors", []byte(`<testsuites><testsuite name="a" tests="0" failures="0"/></testsuites>`), false},
		{"testcase without name", []byte(`<testsuites><testsuite name="a" tests="1" failures="0" errors="0"><testcase/></testsuite></testsuites>`), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(t, lint, tc.doc)
			if tc.valid && err != nil {
				t.Fatalf("invalid JUnit: %v\n%s", err, tc.doc)
			}
			if !tc.valid && (err == nil || !strings.Contains(err.Error(), "fails to validate")) {
				t.Fatalf("the schema accepts it: %v", err)
			}
		})
	}
}
