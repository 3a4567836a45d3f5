// Command testgate reads `go test -json` output on stdin, prints the usual
// one line per package plus the output of every failed test, and exits
// non-zero when any test failed or was skipped: in CI every facility the
// tests need (root, loop devices, QEMU, fixtures) is installed, so a skip
// means a test silently did not run. For each skipped test it prints the
// test's own skip message, which names what is missing. Its last line is
// always the count "N passed, N failed, N skipped" (every test and subtest
// counts once).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

func main() {
	os.Exit(gate(os.Stdin, os.Stdout, os.Stderr))
}

// gate filters the events on r to w and returns the exit status.
func gate(r io.Reader, w, stderr io.Writer) int {
	output := map[string][]string{} // package/test -> output lines
	var failed, skipped []string
	reasons := map[string]string{} // skipped package/test -> skip message
	passed := 0
	buildFailed := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Fprintln(w, sc.Text()) // build errors and other plain text
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "build-output":
			fmt.Fprint(w, e.Output)
		case "build-fail":
			buildFailed = true
		case "output":
			if e.Test != "" {
				output[key] = append(output[key], e.Output)
			} else if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "PASS") && !strings.HasPrefix(e.Output, "ok ") && !strings.HasPrefix(e.Output, "FAIL\n") {
				fmt.Fprint(w, e.Output)
			}
		case "pass":
			if e.Test == "" {
				fmt.Fprintf(w, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			} else {
				passed++
			}
			delete(output, key)
		case "skip":
			if e.Test == "" {
				continue // a package without tests
			}
			skipped = append(skipped, key)
			reasons[key] = skipReason(output[key])
			fmt.Fprintf(w, "SKIP\t%s\n%s", key, strings.Join(output[key], ""))
			delete(output, key)
		case "fail":
			if e.Test == "" {
				fmt.Fprintf(w, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
				continue
			}
			failed = append(failed, key)
			fmt.Fprintf(w, "--- FAIL: %s\n%s", key, strings.Join(output[key], ""))
			delete(output, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, "testgate:", err)
		return 1
	}
	sort.Strings(failed)
	sort.Strings(skipped)
	if len(failed) > 0 {
		fmt.Fprintf(w, "\n%d tests failed:\n  %s\n", len(failed), strings.Join(failed, "\n  "))
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "\n%d tests skipped; a skip is not allowed here, so provide what each one says it is missing:\n", len(skipped))
		for _, k := range skipped {
			fmt.Fprintf(w, "  %s: %s\n", k, reasons[k])
		}
	}
	if buildFailed {
		fmt.Fprintln(w, "\nsome packages did not build")
	}
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", passed, len(failed), len(skipped))
	if len(failed)+len(skipped) > 0 || buildFailed {
		return 1
	}
	return 0
}

// skipReason extracts a skipped test's own message from its output: the
// last line it printed (t.Skip's message, or testscript's "skip" line),
// without go test's "=== RUN" and "--- SKIP" framing or the file:line
// prefix.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		t := strings.TrimSpace(lines[i])
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		// "file_test.go:12: message"
		if j := strings.Index(t, ": "); j > 0 && strings.Contains(t[:j], ".go:") {
			t = t[j+2:]
		}
		return t
	}
	return "(the test gave no reason)"
}
