package testbed

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// junitOf writes a JUnit report of a target with the given check results
// through the testbed's reporter and returns it.
func junitOf(t *testing.T, target string, results ...Result) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "junit.xml")
	r := NewJUnitReporter(p)
	rep := &TargetReport{Target: target, Boot: &BootResult{Duration: 3 * time.Second}}
	for i, res := range results {
		rep.Checks = append(rep.Checks, CheckResult{Name: "check" + string(rune('a'+i)), Result: res, Output: []string{"detail <&>"}})
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

func TestMergeJUnit(t *testing.T) {
	a := junitOf(t, "Fedora-Testbed-41.x86_64", Pass, Fail, Skip)
	b := junitOf(t, "Fedora-Testbed-41.aarch64", Pass, Pass)
	merged, err := MergeJUnit(a, b)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Errors   *int   `xml:"errors,attr"`
		Time     string `xml:"time,attr"`
		Suites   []struct {
			Name    string `xml:"name,attr"`
			Tests   int    `xml:"tests,attr"`
			Skipped int    `xml:"skipped,attr"`
			Cases   []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Body string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(merged, &doc); err != nil {
		t.Fatalf("merged report does not parse: %v\n%s", err, merged)
	}
	if doc.Tests != 5 || doc.Failures != 1 || doc.Errors == nil || *doc.Errors != 0 || doc.Time != "6.000" || len(doc.Suites) != 2 || doc.Suites[0].Skipped != 1 {
		t.Errorf("totals: %+v", doc)
	}
	if doc.Suites[0].Name != "Fedora-Testbed-41.x86_64" || doc.Suites[0].Tests != 3 || len(doc.Suites[0].Cases) != 3 ||
		doc.Suites[1].Name != "Fedora-Testbed-41.aarch64" || len(doc.Suites[1].Cases) != 2 {
		t.Errorf("suites: %+v", doc.Suites)
	}
	if f := doc.Suites[0].Cases[1].Failure; f == nil || f.Body != "detail <&>" {
		t.Errorf("failure kept as %+v", f)
	}
	if _, err := MergeJUnit(a, []byte("<testsuites><oops")); err == nil || !strings.Contains(err.Error(), "JUnit report 2") {
		t.Errorf("broken report: %v", err)
	}
}

// FuzzMergeJUnit feeds arbitrary documents to the JUnit merger: it must
// not panic, and what it writes must parse again with the totals it
// claims.
func FuzzMergeJUnit(f *testing.F) {
	f.Add([]byte(`<testsuites tests="1" failures="0" skipped="0" time="1.5"><testsuite name="a" tests="1"><testcase name="x"></testcase></testsuite></testsuites>`))
	f.Add([]byte(`<testsuites><testsuite name="b" x:y="z" xmlns:x="urn:x"><system-out>&lt;&amp;</system-out></testsuite></testsuites>`))
	f.Add([]byte(`<testsuites tests="-3" time="NaN">`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		out, err := MergeJUnit(doc, doc)
		if err != nil {
			return
		}
		var again rawSuites
		if err := xml.Unmarshal(out, &again); err != nil {
			t.Fatalf("merged output does not parse: %v\n%s", err, out)
		}
		var in rawSuites
		xml.Unmarshal(doc, &in)
		if again.Tests != 2*in.Tests || len(again.Suites) != 2*len(in.Suites) {
			t.Fatalf("merged %d tests in %d suites from 2 x (%d tests, %d suites)", again.Tests, len(again.Suites), in.Tests, len(in.Suites))
		}
	})
}
