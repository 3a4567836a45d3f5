// Package progress shows a compose's progress to people: on a terminal a
// live multi-line display (one line per running stage, with a bar, bytes/s
// and ETA when the stage reports sizes) with log lines printed cleanly
// above it; elsewhere plain log lines, one per stage event.
//
// The display is fed [pipeline.Event]s. Log output must go through
// [Display.Writer]: on a terminal it interleaves with the bars, and when
// the output is not a terminal it bypasses the bar library entirely
// (mpb silently drops lines written through it in that case).
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/cfs-compose/cfs-compose/pipeline"
)

// Display renders pipeline events.
type Display struct {
	out  io.Writer
	p    *mpb.Progress // nil unless on a terminal
	mu   sync.Mutex
	bars map[string]*mpb.Bar
	log  zerolog.Logger
	t0   map[string]time.Time
}

// New returns a display writing to out; tty selects the live display.
func New(out io.Writer, tty bool) *Display {
	d := &Display{out: out, bars: map[string]*mpb.Bar{}, t0: map[string]time.Time{}, log: zerolog.Nop()}
	if tty {
		d.p = mpb.New(mpb.WithOutput(out), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return d
}

// Writer returns where log output should go while the display runs.
func (d *Display) Writer() io.Writer {
	if d.p != nil {
		return d.p
	}
	return d.out
}

// SetLogger sets the logger used for per-stage summary lines; it should
// write through [Display.Writer].
func (d *Display) SetLogger(l zerolog.Logger) { d.log = l }

// Event consumes one pipeline event.
func (d *Display) Event(ev pipeline.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := ev.Kind
	if len(ev.Targets) > 0 {
		name += " " + strings.Join(ev.Targets, ",")
	}
	switch ev.Type {
	case pipeline.EventPlan:
		d.log.Info().Int64("stages", ev.Total).Msg("compose started")
	case pipeline.EventStart:
		d.t0[ev.Stage] = ev.Time
		if d.p != nil {
			d.bars[ev.Stage] = d.p.New(0, mpb.BarStyle().Lbound("[").Rbound("]"),
				mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.Elapsed(decor.ET_STYLE_MMSS, decor.WCSyncSpace)),
				mpb.AppendDecorators(
					decor.OnComplete(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace), ""),
					decor.OnComplete(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace), ""),
					decor.OnComplete(decor.AverageETA(decor.ET_STYLE_MMSS, decor.WCSyncSpace), ""),
				),
				mpb.BarRemoveOnComplete())
		} else {
			d.log.Info().Str("stage", ev.Kind).Strs("targets", ev.Targets).Msg("stage started")
		}
	case pipeline.EventProgress:
		if b := d.bars[ev.Stage]; b != nil && ev.Total > 0 {
			b.SetTotal(ev.Total, false)
			b.SetCurrent(ev.Done)
		}
	case pipeline.EventFinish:
		if b := d.bars[ev.Stage]; b != nil {
			b.SetTotal(-1, true)
			delete(d.bars, ev.Stage)
		}
		e := d.log.Info()
		if ev.Status == string(pipeline.StatusFailed) {
			e = d.log.Error().Str("error", ev.Error)
		}
		e = e.Str("stage", ev.Kind).Strs("targets", ev.Targets).Str("status", ev.Status)
		if t, ok := d.t0[ev.Stage]; ok {
			e = e.Float64("took_s", ev.Time.Sub(t).Round(time.Millisecond).Seconds())
		}
		if ev.Bytes > 0 {
			e = e.Str("written", humanBytes(ev.Bytes))
		}
		e.Msg("stage finished")
	}
}

// Close stops the live display, waiting for it to draw its last frame.
// Closing twice is harmless.
func (d *Display) Close() {
	d.mu.Lock()
	p := d.p
	d.p = nil
	for id, b := range d.bars {
		b.Abort(true)
		delete(d.bars, id)
	}
	d.mu.Unlock()
	if p != nil {
		p.Wait()
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
