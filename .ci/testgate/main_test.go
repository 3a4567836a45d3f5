package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// ev builds one `go test -json` line.
func ev(action, test, output string) string {
	out := ""
	if output != "" {
		out = `,"Output":` + quote(output)
	}
	t := ""
	if test != "" {
		t = `,"Test":"` + test + `"`
	}
	return `{"Action":"` + action + `","Package":"p"` + t + out + "}\n"
}

func quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, "\n", `\n`)
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// TestGate pins the last line and the skip advice (issue 13 item 13).
func TestGate(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantCode int
		wantLast string
		want     []string // substrings of the output
	}{
		{
			name:     "all pass",
			in:       ev("run", "TestA", "") + ev("pass", "TestA", "") + ev("pass", "TestA/sub", "") + ev("pass", "", ""),
			wantLast: "2 passed, 0 failed, 0 skipped",
		},
		{
			name: "a skip names its cause",
			in: ev("output", "TestQEMU", "=== RUN   TestQEMU\n") +
				ev("output", "TestQEMU", "    boot_test.go:42: qemu-system-x86_64 not found in PATH\n") +
				ev("output", "TestQEMU", "--- SKIP: TestQEMU (0.00s)\n") +
				ev("skip", "TestQEMU", "") + ev("pass", "TestB", "") + ev("pass", "", ""),
			wantCode: 1,
			wantLast: "1 passed, 0 failed, 1 skipped",
			want:     []string{"  p TestQEMU: qemu-system-x86_64 not found in PATH\n"},
		},
		{
			name: "a testscript skip names its skip line",
			in: ev("output", "TestScripts/pipeline", "    testscript.go:1: # comment (0.000s)\n") +
				ev("output", "TestScripts/pipeline", "        > [!fixtures] skip 'the fixture image is missing'\n") +
				ev("skip", "TestScripts/pipeline", ""),
			wantCode: 1,
			wantLast: "0 passed, 0 failed, 1 skipped",
			want:     []string{"  p TestScripts/pipeline: > [!fixtures] skip 'the fixture image is missing'\n"},
		},
		{
			name: "a failure",
			in: ev("output", "TestC", "    c_test.go:1: boom\n") + ev("fail", "TestC", "") +
				ev("fail", "", ""),
			wantCode: 1,
			wantLast: "0 passed, 1 failed, 0 skipped",
			want:     []string{"--- FAIL: p TestC\n    c_test.go:1: boom\n", "1 tests failed:"},
		},
		{
			name:     "a build failure",
			in:       `{"Action":"build-fail","ImportPath":"p"}` + "\n" + "FAIL\tp [build failed]\n",
			wantCode: 1,
			wantLast: "0 passed, 0 failed, 0 skipped",
			want:     []string{"some packages did not build"},
		},
		{
			name:     "a skip without a message",
			in:       ev("skip", "TestD", "") + ev("pass", "", ""),
			wantCode: 1,
			wantLast: "0 passed, 0 failed, 1 skipped",
			want:     []string{"p TestD: (the test gave no reason)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := gate(strings.NewReader(tc.in), &out, &errOut)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d", code, tc.wantCode)
			}
			lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
			if last := lines[len(lines)-1]; last != tc.wantLast {
				t.Errorf("last line %q, want %q\n%s", last, tc.wantLast, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestREADMEDescribesCI keeps the README's account of CI in step with
// .ci/run: make lint, then make test (issue 13 item 14).
func TestREADMEDescribesCI(t *testing.T) {
	run, err := os.ReadFile("../run")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lint, test := strings.Index(string(run), "\nmake lint\n"), strings.Index(string(run), "\nmake test\n")
	if lint < 0 || test < 0 || lint > test {
		t.Fatalf(".ci/run no longer runs make lint and then make test; update the README and this test:\n%s", run)
	}
	if !strings.Contains(string(readme), "runs `make lint` and then\n`make test`") {
		t.Error("README.md does not say that CI (.ci/run) runs `make lint` and then `make test`")
	}
}
