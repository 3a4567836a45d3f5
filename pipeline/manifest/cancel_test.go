package manifest

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countdownCtx is a context that becomes cancelled after its Err has been
// asked a given number of times: it stops loading at a chosen point without
// depending on timing.
type countdownCtx struct {
	context.Context
	left atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestParseContextCancel pins that loading stops, with one "Loading
// cancelled" error, wherever the context is cancelled (issue 13 item 20).
func TestParseContextCancel(t *testing.T) {
	files := manyLocals(10_000)
	// How often a whole load asks the context.
	full := &countdownCtx{Context: context.Background()}
	full.left.Store(1 << 40)
	if _, diags := ParseContext(full, toBytes(files), &Options{WorkDir: "/work"}); diags.HasErrors() {
		t.Fatal(diags)
	}
	total := 1<<40 - full.left.Load()
	if total < 10_000 {
		t.Fatalf("a load asks the context only %d times", total)
	}
	tests := []struct {
		name  string
		after int64 // Err calls before the context is done
	}{
		{"before the first file", 0},
		{"between files", 1},
		{"among the locals", 5_000},
		{"among the attributes and variants", total - 2},
		{"just before the end", total - 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := &countdownCtx{Context: context.Background()}
			ctx.left.Store(tc.after)
			m, diags := ParseContext(ctx, toBytes(files), &Options{WorkDir: "/work"})
			if m != nil {
				t.Fatal("a manifest despite the cancellation")
			}
			var n int
			for _, d := range diags {
				if d.Summary == "Loading cancelled" {
					n++
					if !strings.Contains(d.Detail, "context canceled") {
						t.Errorf("detail %q does not give the cause", d.Detail)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d \"Loading cancelled\" diagnostics, want 1: %v", n, diags)
			}
			// It stopped where it was: nothing asked the context much more.
			if left := ctx.left.Load(); left < -20_000 {
				t.Errorf("loading went on after the cancellation (%d more checks)", -left)
			}
		})
	}
	t.Run("a real cancel stops a long load early", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(errors.New("interrupt"))
		start := time.Now()
		_, diags := ParseContext(ctx, toBytes(manyLocals(100_000)), &Options{WorkDir: "/work"})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), "Loading the manifests was cancelled: interrupt") {
			t.Fatalf("diags = %v", diags)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("took %v after the cancellation", took)
		}
	})
}
