package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.Begin()
	w.Fact("arch", "x86_64")
	w.Fact("cmdline", "console=ttyS0\tquiet\nnext")
	w.Check("composefs-root", Pass, "overlay on / with EROFS lower /run/cfs/erofs")
	w.Check("usr-readonly", Fail, "write succeeded")
	w.Check("secureboot", Skip, "")
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	r, err := Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Begun || !r.Ended || r.Version != Version || len(r.Errors) != 0 {
		t.Fatalf("report state: %+v", r)
	}
	if got := r.Facts["cmdline"]; got != "console=ttyS0 quiet next" {
		t.Errorf("cmdline fact = %q", got)
	}
	want := []CheckResult{
		{"composefs-root", Pass, "overlay on / with EROFS lower /run/cfs/erofs"},
		{"usr-readonly", Fail, "write succeeded"},
		{"secureboot", Skip, ""},
	}
	if len(r.Checks) != len(want) {
		t.Fatalf("checks = %+v", r.Checks)
	}
	for i := range want {
		if r.Checks[i] != want[i] {
			t.Errorf("check %d = %+v, want %+v", i, r.Checks[i], want[i])
		}
	}
	if r.Summary != "pass=1 fail=1 skip=1" {
		t.Errorf("summary = %q", r.Summary)
	}
	if w.Failed() != 1 {
		t.Errorf("Failed() = %d", w.Failed())
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		log     string
		checks  int
		ended   bool
		errSub  string // substring of the first entry of Report.Errors; "" = none
		factKey string
		factVal string
	}{
		{
			name:   "noise and carriage returns",
			log:    "[    1.2] random: crng init done\r\nCFS-TEST-BEGIN v1\r\n[    2.0] erofs: mounted CFS-FACT arch=aarch64\r\nCFS-CHECK a PASS ok\r\nCFS-TEST-END pass=1 fail=0 skip=0\r\n",
			checks: 1, ended: true, factKey: "arch", factVal: "aarch64",
		},
		{
			name:  "fact value with equals",
			log:   "CFS-TEST-BEGIN v1\nCFS-FACT cmdline=a=b c=d\nCFS-TEST-END pass=0 fail=0 skip=0\n",
			ended: true, factKey: "cmdline", factVal: "a=b c=d",
		},
		{name: "truncated report", log: "CFS-TEST-BEGIN v1\nCFS-CHECK a PASS\n", checks: 1},
		{name: "check before begin", log: "CFS-CHECK a PASS\n", errSub: "before CFS-TEST-BEGIN"},
		{name: "bad status", log: "CFS-TEST-BEGIN v1\nCFS-CHECK a MAYBE x\n", errSub: "status \"MAYBE\""},
		{name: "bad name", log: "CFS-TEST-BEGIN v1\nCFS-CHECK A/b PASS\n", errSub: "not a valid name"},
		{name: "duplicate check", log: "CFS-TEST-BEGIN v1\nCFS-CHECK a PASS\nCFS-CHECK a FAIL\n", checks: 1, errSub: "reported twice"},
		{name: "wrong version", log: "CFS-TEST-BEGIN v9\n", errSub: "unsupported protocol version"},
		{name: "lost lines", log: "CFS-TEST-BEGIN v1\nCFS-CHECK a PASS\nCFS-TEST-END pass=2 fail=0 skip=0\n", checks: 1, ended: true, errSub: "console lines lost"},
		{name: "after end", log: "CFS-TEST-BEGIN v1\nCFS-TEST-END\nCFS-FACT a=b\n", ended: true, errSub: "after CFS-TEST-END"},
		{name: "fact without equals", log: "CFS-TEST-BEGIN v1\nCFS-FACT novalue\n", errSub: "want KEY=VALUE"},
		{name: "unknown marker ignored", log: "CFS-INIT-START uptime=1\n"},
		{name: "long line", log: "CFS-TEST-BEGIN v1\nCFS-CHECK a PASS " + strings.Repeat("x", 10000) + "\nCFS-TEST-END pass=1 fail=0 skip=0\n", checks: 1, ended: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(strings.NewReader(tt.log))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Checks) != tt.checks || r.Ended != tt.ended {
				t.Errorf("checks=%d ended=%v, want %d %v (%+v)", len(r.Checks), r.Ended, tt.checks, tt.ended, r)
			}
			if tt.errSub == "" && len(r.Errors) > 0 {
				t.Errorf("unexpected errors %q", r.Errors)
			}
			if tt.errSub != "" && (len(r.Errors) == 0 || !strings.Contains(r.Errors[0], tt.errSub)) {
				t.Errorf("errors %q, want one containing %q", r.Errors, tt.errSub)
			}
			if tt.factKey != "" {
				if v, _ := r.Fact(tt.factKey); v != tt.factVal {
					t.Errorf("fact %s = %q, want %q", tt.factKey, v, tt.factVal)
				}
			}
			for _, c := range r.Checks {
				if len(c.Detail) > MaxLineLength {
					t.Errorf("detail not bounded: %d", len(c.Detail))
				}
			}
		})
	}
}

func TestWriterErrors(t *testing.T) {
	tests := []struct {
		name string
		do   func(w *Writer) error
		want error
	}{
		{"bad fact key", func(w *Writer) error { return w.Fact("Bad Key", "v") }, ErrName},
		{"bad status", func(w *Writer) error { return w.Check("x", Status("OK"), "") }, ErrMalformed},
		{"duplicate", func(w *Writer) error { w.Check("x", Pass, ""); return w.Check("x", Pass, "") }, ErrMalformed},
		{"double end", func(w *Writer) error { w.End(); return w.End() }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf)
			w.Begin()
			if err := tt.do(w); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			// sticky: later calls fail too and write nothing
			n := buf.Len()
			if err := w.Fact("later", "x"); !errors.Is(err, tt.want) {
				t.Errorf("sticky error lost: %v", err)
			}
			if buf.Len() != n {
				t.Errorf("wrote after error")
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("console gone") }

func TestWriterIOError(t *testing.T) {
	w := NewWriter(failWriter{})
	if err := w.Begin(); err == nil || !strings.Contains(err.Error(), "console gone") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("CFS-TEST-BEGIN v1\nCFS-FACT a=b\nCFS-CHECK x PASS ok\nCFS-TEST-END pass=1 fail=0 skip=0\n")
	f.Add("junk CFS-CHECK CFS-FACT =\r\n\x00CFS-TEST-END pass=x")
	f.Fuzz(func(t *testing.T, log string) {
		r, err := Parse(strings.NewReader(log))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, c := range r.Checks {
			if !c.Status.Valid() || ValidName(c.Name) != nil || seen[c.Name] {
				t.Fatalf("invalid check recorded: %+v", c)
			}
			seen[c.Name] = true
		}
		for k := range r.Facts {
			if ValidName(k) != nil {
				t.Fatalf("invalid fact key %q", k)
			}
		}
	})
}
