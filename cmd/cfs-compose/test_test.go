package main

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/boottest"
	"github.com/cfs-compose/cfs-compose/testbed"
)

// junitOf writes a JUnit report of a target with the given check results
// through the testbed's reporter and returns it.
func junitOf(t *testing.T, target string, results ...testbed.Result) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "junit.xml")
	r := testbed.NewJUnitReporter(p)
	rep := &testbed.TargetReport{Target: target, Boot: &testbed.BootResult{Duration: 3 * time.Second}}
	for i, res := range results {
		rep.Checks = append(rep.Checks, testbed.CheckResult{Name: "check" + string(rune('a'+i)), Result: res, Output: []string{"detail <&>"}})
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
	a := junitOf(t, "Fedora-Testbed-41.x86_64", testbed.Pass, testbed.Fail, testbed.Skip)
	b := junitOf(t, "Fedora-Testbed-41.aarch64", testbed.Pass, testbed.Pass)
	merged, err := mergeJUnit([][]byte{a, b})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int    `xml:"tests,attr"`
		Failures int    `xml:"failures,attr"`
		Skipped  int    `xml:"skipped,attr"`
		Time     string `xml:"time,attr"`
		Suites   []struct {
			Name  string `xml:"name,attr"`
			Tests int    `xml:"tests,attr"`
			Cases []struct {
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
	if doc.Tests != 5 || doc.Failures != 1 || doc.Skipped != 1 || doc.Time != "6.00" || len(doc.Suites) != 2 {
		t.Errorf("totals: %+v", doc)
	}
	if doc.Suites[0].Name != "Fedora-Testbed-41.x86_64" || doc.Suites[0].Tests != 3 || len(doc.Suites[0].Cases) != 3 ||
		doc.Suites[1].Name != "Fedora-Testbed-41.aarch64" || len(doc.Suites[1].Cases) != 2 {
		t.Errorf("suites: %+v", doc.Suites)
	}
	if f := doc.Suites[0].Cases[1].Failure; f == nil || f.Body != "detail <&>" {
		t.Errorf("failure kept as %+v", f)
	}
	if _, err := mergeJUnit([][]byte{a, []byte("<testsuites><oops")}); err == nil || !strings.Contains(err.Error(), "JUnit report 2") {
		t.Errorf("broken report: %v", err)
	}
}

// fakeStage is a stage kind with no behaviour, for the stage table.
type fakeStage string

func (f fakeStage) Kind() string                                                 { return string(f) }
func (f fakeStage) Version() string                                              { return "0" }
func (f fakeStage) Inputs() []pipeline.Dep                                       { return nil }
func (f fakeStage) Plan(_ context.Context, _ *pipeline.PlanContext) (any, error) { return nil, nil }
func (f fakeStage) Run(_ context.Context, _ *pipeline.RunContext) error          { return nil }

func TestWithBootReport(t *testing.T) {
	called := 0
	out, err := withBootReport([]pipeline.Stage{fakeStage("disk"), boottest.New()}, func(*boottest.Outcome) { called++ })
	if err != nil {
		t.Fatal(err)
	}
	bt, ok := out[1].(*boottest.Stage)
	if !ok || bt.Report == nil || out[0] != fakeStage("disk") {
		t.Fatalf("stages %#v", out)
	}
	bt.Report(&boottest.Outcome{})
	if called != 1 {
		t.Errorf("report called %d times", called)
	}
	if _, err := withBootReport([]pipeline.Stage{fakeStage("disk")}, nil); err == nil {
		t.Error("no boottest stage accepted")
	}
}
