package manifest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// doubling is a locals block of n locals, each built from the one before
// by step (which refers to it as PREV), after the first, first.
func doubling(n int, first, step string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "locals {\n  v0 = %s\n", first)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "  v%d = %s\n", i, strings.ReplaceAll(step, "PREV", fmt.Sprintf("local.v%d", i-1)))
	}
	b.WriteString("}\n")
	return b.String()
}

// TestValueBounds pins the bounds on value sizes during evaluation (issue
// 13 item 21): values that double from local to local stop at the bound
// with a diagnostic at the expression, in little time and memory.
func TestValueBounds(t *testing.T) {
	tests := []struct {
		name      string
		locals    string
		line, col int    // of the diagnostic's subject in locals.hcl
		summary   string // diagnostic summary
		detail    string // substring of its detail
	}{
		{
			name:   "concat doubling a list",
			locals: doubling(40, `["x"]`, "concat(PREV, PREV)"),
			line:   19, col: 9, // v17: two arguments of 2^16 elements
			summary: "Error in function call",
			detail:  `Call to function "concat" failed: its arguments hold more than 100000 elements`,
		},
		{
			name:   "template doubling a string",
			locals: doubling(40, `"0123456789abcdef"`, `"${PREV}${PREV}"`),
			line:   21, col: 9, // v19: 16 B * 2^19 = 8 MiB
			summary: "Value too large",
			detail:  "local.v19 would hold more than 4 MiB of text",
		},
		{
			name:   "format doubling a string",
			locals: doubling(40, `"0123456789abcdef"`, `format("%s%s", PREV, PREV)`),
			line:   20, col: 9, // v18: two arguments of 2 MiB and the format
			summary: "Error in function call",
			detail:  `Call to function "format" failed: its arguments hold more than 4 MiB of text`,
		},
		{
			name:   "tuple doubling a nested list",
			locals: doubling(40, `"x"`, "[PREV, PREV]"),
			line:   18, col: 9, // v16: 2^16+2^15+… elements
			summary: "Value too large",
			detail:  "local.v16 would hold more than 100000 elements",
		},
		{
			name: "join of many references to one big string",
			locals: "locals {\n  s = \"" + strings.Repeat("x", 1<<20) + "\"\n  l = [for i in split(\",\", \"" + strings.Repeat(",", 99) + "\") : local.s]\n" +
				"  j = join(\"\", local.l)\n}\n",
			line: 3, col: 7, // l: a list of 100 MiB-sized references
			summary: "Value too large",
			detail:  "local.l would hold more than 4 MiB of text",
		},
		{
			name:   "a function result over the bound",
			locals: "locals {\n  s = \"" + strings.Repeat("x", 2<<20) + "\"\n  r = format(\"%[1]s%[1]s%[1]s\", local.s)\n}\n",
			line:   3, col: 7,
			summary: "Error in function call",
			detail:  `Call to function "format" failed: its result would hold more than 4 MiB of text`,
		},
		{
			name:   "replace with a large replacement",
			locals: "locals {\n  s = \"" + strings.Repeat("a", 1<<20) + "\"\n  r = replace(local.s, \"a\", \"aaaaa\")\n}\n",
			line:   3, col: 7,
			summary: "Error in function call",
			detail:  `Call to function "replace" failed: its result could hold more than 4 MiB of text`,
		},
		{
			name:   "regex_replace repeating the match",
			locals: "locals {\n  s = \"" + strings.Repeat("a", 1<<20) + "\"\n  r = regex_replace(local.s, \"a+\", \"$0$0$0$0$0\")\n}\n",
			line:   3, col: 7,
			summary: "Error in function call",
			detail:  `Call to function "regex_replace" failed: its result could hold more than 4 MiB of text`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, diags := parse(t, map[string]string{"a.hcl": base + simpleVariant, "locals.hcl": tc.locals}, nil)
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v", took)
			}
			if !diags.HasErrors() {
				t.Fatal("no error")
			}
			d := diags[0]
			for _, e := range diags {
				if strings.Contains(e.Detail, tc.detail) {
					d = e
					break
				}
			}
			if d.Subject == nil || d.Subject.Filename != "locals.hcl" || d.Subject.Start.Line != tc.line || d.Subject.Start.Column != tc.col ||
				d.Summary != tc.summary || !strings.Contains(d.Detail, tc.detail) {
				t.Fatalf("got %s: %s: %.300s\nwant locals.hcl:%d:%d: %s: %s", d.Subject, d.Summary, d.Detail, tc.line, tc.col, tc.summary, tc.detail)
			}
		})
	}
}

// TestValueBoundsAllowOrdinary keeps ordinary large-ish values working: a
// 1 MiB file-sized string used a few times, a list of 10,000 names.
func TestValueBoundsAllowOrdinary(t *testing.T) {
	locals := "locals {\n  s = \"" + strings.Repeat("x", 1<<20) + "\"\n  twice = \"${local.s}${local.s}\"\n" +
		"  names = [for i in split(\",\", \"" + strings.Repeat(",", 9_999) + "\") : \"n\"]\n  all = concat(local.names, [\"z\"])\n}\n"
	if _, diags := parse(t, map[string]string{"a.hcl": base + simpleVariant, "locals.hcl": locals}, nil); diags.HasErrors() {
		t.Fatal(diags)
	}
}
