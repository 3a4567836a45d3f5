package protocol

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Writer emits protocol lines. Each line is written with exactly one Write
// call on the underlying writer, so that a console shared with the kernel
// does not split it. Writer keeps a sticky error: after the first failure
// every method returns it and writes nothing.
type Writer struct {
	w                io.Writer
	err              error
	pass, fail, skip int
	begun, ended     bool
	names            map[string]bool
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, names: map[string]bool{}} }

// Begin writes the CFS-TEST-BEGIN line. It must be called first, once.
func (w *Writer) Begin() error {
	if w.err == nil && w.begun {
		w.err = fmt.Errorf("%w: Begin called twice", ErrMalformed)
	}
	w.begun = true
	return w.line(MarkerBegin + " " + Version)
}

// Fact writes a CFS-FACT line. The key must satisfy [ValidName]; control
// characters in the value are replaced by spaces.
func (w *Writer) Fact(key, value string) error {
	if w.err == nil {
		if err := ValidName(key); err != nil {
			w.err = err
		}
	}
	return w.line(MarkerFact + " " + key + "=" + Clean(value))
}

// Check writes a CFS-CHECK line. Each name may be reported once.
func (w *Writer) Check(name string, st Status, detail string) error {
	if w.err == nil {
		switch {
		case ValidName(name) != nil:
			w.err = ValidName(name)
		case !st.Valid():
			w.err = fmt.Errorf("%w: check %s: status %q", ErrMalformed, name, st)
		case w.names[name]:
			w.err = fmt.Errorf("%w: check %s reported twice", ErrMalformed, name)
		}
	}
	if w.err != nil {
		return w.err
	}
	w.names[name] = true
	switch st {
	case Pass:
		w.pass++
	case Fail:
		w.fail++
	case Skip:
		w.skip++
	}
	l := MarkerCheck + " " + name + " " + string(st)
	if d := Clean(detail); d != "" {
		l += " " + d
	}
	return w.line(l)
}

// End writes the CFS-TEST-END line with the counts of the checks written.
func (w *Writer) End() error {
	if w.err == nil && w.ended {
		w.err = fmt.Errorf("%w: End called twice", ErrMalformed)
	}
	w.ended = true
	return w.line(fmt.Sprintf("%s pass=%d fail=%d skip=%d", MarkerEnd, w.pass, w.fail, w.skip))
}

// Failed reports how many checks were written with status Fail.
func (w *Writer) Failed() int { return w.fail }

func (w *Writer) line(s string) error {
	if w.err != nil {
		return w.err
	}
	if _, err := io.WriteString(w.w, s+"\n"); err != nil {
		w.err = fmt.Errorf("writing protocol line: %w", err)
	}
	return w.err
}

// Clean makes s safe for one protocol line: control characters become
// spaces, surrounding space is trimmed, and the result is cut to fit
// [MaxLineLength] with room for the marker and name.
func Clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if max := MaxLineLength - 128; len(s) > max {
		s = s[:max]
	}
	return s
}

// eachLine calls fn for every line of r, without the line terminator. Lines
// longer than MaxLineLength are cut; the rest of such a line is discarded.
func eachLine(r io.Reader, fn func(string)) error {
	br := bufio.NewReaderSize(r, MaxLineLength)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 || (err == nil && !isPrefix) {
			fn(string(line))
		}
		for isPrefix && err == nil {
			_, isPrefix, err = br.ReadLine()
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading console log: %w", err)
		}
	}
}
