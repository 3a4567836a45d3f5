// Command testgate reads `go test -json` output on stdin, prints the usual
// one line per package plus the output of every failed test, and exits
// non-zero when any test failed or was skipped: in CI every facility the
// tests need (root, loop devices, QEMU, fixtures) is installed, so a skip
// means a test silently did not run.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
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
	output := map[string][]string{} // package/test -> output lines
	var failed, skipped []string
	buildFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // build errors and other plain text
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "build-output":
			fmt.Print(e.Output)
		case "build-fail":
			buildFailed = true
		case "output":
			if e.Test != "" {
				output[key] = append(output[key], e.Output)
			} else if !strings.HasPrefix(e.Output, "=== ") && !strings.HasPrefix(e.Output, "PASS") && !strings.HasPrefix(e.Output, "ok ") && !strings.HasPrefix(e.Output, "FAIL\n") {
				fmt.Print(e.Output)
			}
		case "pass":
			if e.Test == "" {
				fmt.Printf("ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
			}
			delete(output, key)
		case "skip":
			if e.Test == "" {
				continue // a package without tests
			}
			skipped = append(skipped, key)
			fmt.Printf("SKIP\t%s\n%s", key, strings.Join(output[key], ""))
			delete(output, key)
		case "fail":
			if e.Test == "" {
				fmt.Printf("FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
				continue
			}
			failed = append(failed, key)
			fmt.Printf("--- FAIL: %s\n%s", key, strings.Join(output[key], ""))
			delete(output, key)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "testgate:", err)
		os.Exit(1)
	}
	sort.Strings(failed)
	sort.Strings(skipped)
	if len(failed) > 0 {
		fmt.Printf("\n%d tests failed:\n  %s\n", len(failed), strings.Join(failed, "\n  "))
	}
	if len(skipped) > 0 {
		fmt.Printf("\n%d tests skipped (not allowed here: install what they need):\n  %s\n", len(skipped), strings.Join(skipped, "\n  "))
	}
	if buildFailed {
		fmt.Println("\nsome packages did not build")
	}
	if len(failed)+len(skipped) > 0 || buildFailed {
		os.Exit(1)
	}
}
