package main

import (
	"context"
	"testing"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/boottest"
)

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
