package main

import (
	"context"
	"testing"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/boottest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// fakeStage is a stage kind with no behaviour, for the stage table.
func fakeStage(kind string) pipeline.Stage {
	return pipeline.Define(pipeline.Spec[struct{}]{Kind: kind, Version: "0",
		Plan: func(context.Context, *pipeline.PlanContext) (*struct{}, error) { return &struct{}{}, nil },
		Run:  func(context.Context, *pipeline.RunContext, *struct{}) error { return nil },
	})
}

func TestWithBootReport(t *testing.T) {
	disk, bt := fakeStage("disk"), boottest.New()
	out, err := withBootReport([]pipeline.Stage{disk, bt}, func(*boottest.Outcome) {})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0] != disk || out[1] == bt || out[1].Kind() != contract.BootTest {
		t.Fatalf("stages %#v", out)
	}
	if _, err := withBootReport([]pipeline.Stage{fakeStage("disk")}, nil); err == nil {
		t.Error("no boottest stage accepted")
	}
}
