package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// Pin the default containers policy: the host's
	// /etc/containers/policy.json must not decide (issue 13 item 12).
	if os.Getenv("CONTAINERS_POLICY_JSON") == "" {
		os.Setenv("CONTAINERS_POLICY_JSON", noPolicyPath)
	}
	testscript.Main(testMain{m}, map[string]func(){
		"cfs-compose": func() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// noPolicyPath is the default containers policy of the tests: a file that
// never exists.
const noPolicyPath = "/nonexistent/cfs-compose-tests/policy.json"

// testMain removes the shared fixtures after the tests ran.
type testMain struct{ m *testing.M }

func (t testMain) Run() int {
	code := t.m.Run()
	for _, d := range fixtureDirs {
		os.RemoveAll(d)
	}
	return code
}

// TestScripts runs the CLI behaviour tests in testdata/script/*.txtar.
// $REPO is the repository root, so scripts can use the shipped manifests.
func TestScripts(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("REPO", wd+"/../..")
			env.Setenv("CONTAINERS_POLICY_JSON", os.Getenv("CONTAINERS_POLICY_JSON"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"exits": cmdExits, "mkuki": cmdMkUKI},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "fixtures": // make fixtures has built the testbed image
				_, err := os.Stat(filepath.Join(wd, "..", "..", "testbed", "fixtures", "build", "oci", "index.json"))
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		RequireExplicitExec: true,
	})
}

// cmdExits implements "exits CODE PROGRAM [ARGS...]": run a program and
// require a specific exit status (testscript's exec only knows zero/non-zero).
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with %d, want %d", args[1], got, want)
	}
}
