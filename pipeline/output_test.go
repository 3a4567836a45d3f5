package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// digestSchema is a JSON output schema with a validation.
type digestSchema struct {
	Digest string `json:"digest"`
}

func (d *digestSchema) Validate() error {
	if len(d.Digest) != 4 {
		return errors.New("digest must have 4 characters")
	}
	return nil
}

var (
	outDigest = NewJSON[digestSchema]("src", "digest")
	outBlob   = Output{Kind: "src", Name: "blob", MediaType: "text/plain"}
)

// typedConfig carries a value JSON cannot: Run must receive Plan's value
// itself, not a decoded copy.
type typedConfig struct {
	Value string `json:"value"`
	hook  func() string
}

// TestTypedStages runs a producer and a consumer defined with Define: the
// consumer reads the producer's outputs through their declarations, Run
// receives Plan's typed value, a stage cannot write another kind's output,
// and schemas are validated on both sides.
func TestTypedStages(t *testing.T) {
	var got []string
	producer := Define(Spec[typedConfig]{
		Kind: "src", Version: "1",
		Plan: func(_ context.Context, pc *PlanContext) (*typedConfig, error) {
			return &typedConfig{Value: pc.Facts.Arch.Name, hook: func() string { return "planned in this process" }}, nil
		},
		Run: func(_ context.Context, rc *RunContext, c *typedConfig) error {
			if c.hook == nil {
				return errors.New("Run got a decoded copy of the config, not Plan's value")
			}
			got = append(got, c.hook())
			if err := outDigest.Set(rc, &digestSchema{Digest: "toolong"}, nil); err == nil || !strings.Contains(err.Error(), "4 characters") {
				return errors.New("an invalid value was written")
			}
			if err := (Output{Kind: "other", Name: "x"}).Put(rc, []byte("x"), nil); err == nil || !strings.Contains(err.Error(), "an output of stage other") {
				return errors.New("a stage wrote another kind's output")
			}
			if err := outBlob.Put(rc, []byte("hello"), nil); err != nil {
				return err
			}
			return outDigest.Set(rc, &digestSchema{Digest: "abcd"}, nil)
		},
	})
	consumer := Define(Spec[struct{}]{
		Kind: "use", Version: "1", Inputs: []Dep{{Kind: "src"}},
		When: func(f *Facts) bool { return f.Composefs },
		Plan: func(context.Context, *PlanContext) (*struct{}, error) { return &struct{}{}, nil },
		Run: func(_ context.Context, rc *RunContext, _ *struct{}) error {
			d, err := outDigest.Get(rc)
			if err != nil {
				return err
			}
			b, err := outBlob.Read(rc)
			if err != nil {
				return err
			}
			got = append(got, d.Digest, string(b))
			return nil
		},
	})
	for _, composefs := range []bool{true, false} {
		got = nil
		m := newFake(map[string][]string{"coreos": {"x86_64"}})
		m.configs["coreos"]["x86_64"].Composefs.Enabled = composefs
		st, err := artifacts.Open(context.Background(), t.TempDir(), false)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Resolve(context.Background(), m, []Stage{producer, consumer}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Targets[0].Nodes["use"]; ok != composefs {
			t.Errorf("composefs=%v: consumer planned = %v (When decides from the facts)", composefs, ok)
		}
		if _, err := Execute(context.Background(), p, st, nil); err != nil {
			t.Fatal(err)
		}
		want := "planned in this process"
		if composefs {
			want += " abcd hello"
		}
		if strings.Join(got, " ") != want {
			t.Errorf("composefs=%v: got %q, want %q", composefs, strings.Join(got, " "), want)
		}
		st.Close()
	}
	if _, err := outDigest.Decode([]byte(`{"digest":"xy"}`)); err == nil {
		t.Error("Decode accepted an invalid value")
	}
}

func TestDefineIncomplete(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Define accepted a spec without Run")
		}
	}()
	Define(Spec[struct{}]{Kind: "x", Version: "1", Plan: func(context.Context, *PlanContext) (*struct{}, error) { return nil, nil }})
}
