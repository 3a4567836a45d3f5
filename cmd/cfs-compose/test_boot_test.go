package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/debfetch"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
)

// cli runs one cfs-compose command line and returns its exit code, stdout
// and stderr.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	g := &globals{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, environ: os.Environ()}
	root := newRootCmd(g)
	root.SetArgs(normalizeArgs(args))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	code := exitOK
	if err := root.ExecuteContext(context.Background()); err != nil {
		code = exitError
		if !errors.Is(err, errReported) {
			stderr.WriteString("Error: " + err.Error() + "\n")
		}
	}
	return code, stdout.String(), stderr.String()
}

// TestTestCommand runs `cfs-compose test` on the shipped testbed manifest
// for x86_64 with cfs-compose's stage table: the boot passes, the JUnit
// file and the published test outputs are there; `build` afterwards has
// nothing to do, and `test` again boots again and takes everything else
// from the cache.
func TestTestCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("real QEMU boot test; skipped with -short")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING REAL BOOT TEST: %s is not installed (make deps installs it)", tool)
		}
	}
	layout, err := fixtures.DefaultLayoutDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err != nil {
		t.Fatalf("the fixture image is missing (%v): run make fixtures", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING REAL BOOT TEST: the disk stage needs root (device nodes and owners in the root partition); CI runs as root")
	}
	ctx := context.Background()
	cache, err := debfetch.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	lock, err := fixtures.Fetch(ctx, fixtures.FetchOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	tools, err := fixtures.ExtractTools(ctx, cache, lock)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("CFS_FIRMWARE_DIRS", tools.OVMFDir)
	dir := t.TempDir()
	junit := filepath.Join(dir, "report.xml")
	base := []string{"--manifests", "../../manifests", "--cache-dir", filepath.Join(dir, "cache"), "--log-level", "warn"}
	args := append(append([]string{}, base...), "test", "--variant", "testbed", "--arch", "x86_64",
		"--out", filepath.Join(dir, "out"), "--junit", junit, "--progress", "plain")

	code, stdout, stderr := cli(t, args...)
	if code != exitOK {
		t.Fatalf("test exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Logf("stdout:\n%s", stdout)
	if !strings.Contains(stdout, "PASS Fedora-Testbed-43.x86_64: ") || !strings.Contains(stdout, " 0 failed") {
		t.Errorf("no passing summary line:\n%s", stdout)
	}
	var ju struct {
		Tests  int `xml:"tests,attr"`
		Suites []struct {
			Name string `xml:"name,attr"`
		} `xml:"testsuite"`
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &ju); err != nil || ju.Tests == 0 || len(ju.Suites) != 1 || ju.Suites[0].Name != "Fedora-Testbed-43.x86_64" {
		t.Errorf("JUnit %v: %s", err, b)
	}
	composes, _ := filepath.Glob(filepath.Join(dir, "out", "Fedora-43-*"))
	if len(composes) != 1 {
		t.Fatalf("composes %v", composes)
	}
	tests := filepath.Join(composes[0], "Testbed", "x86_64", "tests")
	var r artifacts.BootTestResults
	b, err = os.ReadFile(filepath.Join(tests, "Fedora-Testbed-43.x86_64.boottest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Result != "PASS" || r.Outcome != "powered-off" {
		t.Errorf("results %v: %+v", err, r)
	}
	for _, f := range []string{"Fedora-Testbed-43.x86_64.junit.xml", "Fedora-Testbed-43.x86_64.console.log"} {
		if _, err := os.Stat(filepath.Join(tests, f)); err != nil {
			t.Error(err)
		}
	}
	t.Logf("BOOT TIME cfs-compose test: verdict at %.2fs, QEMU exited at %.2fs", r.VerdictSeconds, r.QEMUSeconds)

	// build: the boot test result is cached like every stage.
	code, stdout, stderr = cli(t, append(append([]string{}, base...), "build", "--variant", "testbed", "--arch", "x86_64",
		"--out", filepath.Join(dir, "out"), "--progress", "plain")...)
	if code != exitOK || !strings.Contains(stdout, "Nothing to do: all 6 stages cached.") ||
		!strings.Contains(stdout, "Boot test testbed/x86_64: PASS, verdict at ") || !strings.Contains(stdout, ", cached)") {
		t.Errorf("build after test: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// test again: only boottest runs.
	code, stdout, stderr = cli(t, args...)
	if code != exitOK || !strings.Contains(stdout, "(1 ran, 5 cached)") {
		t.Errorf("second test: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}
