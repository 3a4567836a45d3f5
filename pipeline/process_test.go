package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// The tests in this file run compositions in separate processes (this test
// binary re-executed in helper mode) to check crash safety and sharing one
// cache between processes.

func TestMain(m *testing.M) {
	if mode := os.Getenv("CFS_PIPELINE_HELPER"); mode != "" {
		os.Exit(helperMain(mode))
	}
	os.Exit(m.Run())
}

// helperMain runs one Build against $CFS_DIR/cache and $CFS_DIR/out.
func helperMain(mode string) int {
	dir := os.Getenv("CFS_DIR")
	st, err := artifacts.Open(context.Background(), filepath.Join(dir, "cache"), false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close()
	h := newHooks()
	h.runsFile = filepath.Join(dir, "runs")
	stages := chain(h)
	switch mode {
	case "crash":
		// uki streams half an output, announces it, then hangs until killed.
		stages[3] = &crashStage{marker: filepath.Join(dir, "marker")}
	case "share":
		h.sleep = 30 * time.Millisecond
	}
	m := newFake(map[string][]string{"coreos": {"x86_64", "aarch64"}, "iot": {"aarch64"}})
	_, err = Build(context.Background(), m, stages, st, &BuildOptions{Out: filepath.Join(dir, "out"), Exec: ExecOptions{Jobs: 2}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type crashStage struct{ marker string }

func (crashStage) Kind() string     { return "uki" }
func (crashStage) Version() string  { return "1" }
func (crashStage) Inputs() []Dep    { return []Dep{{Kind: "cfs"}} }
func (crashStage) Used(*Facts) bool { return true }
func (crashStage) plan(context.Context, *PlanContext) (any, error) {
	return map[string]any{"cmdline": nil}, nil
}
func (s crashStage) run(ctx context.Context, rc *RunContext, _ any) error {
	w, err := Output{Kind: "uki", Name: "out", MediaType: "text/plain"}.Create(rc, nil)
	if err != nil {
		return err
	}
	w.Write([]byte(strings.Repeat("partial ", 4096)))
	os.WriteFile(filepath.Join(rc.TempDir(), "scratch"), []byte("x"), 0o644)
	os.WriteFile(s.marker, nil, 0o644)
	<-ctx.Done() // hang until SIGKILL
	return ctx.Err()
}

func helperCmd(t *testing.T, mode, dir string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "CFS_PIPELINE_HELPER="+mode, "CFS_DIR="+dir)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestCrashSafety kills a compose with SIGKILL in the middle of a stage that
// is writing its output, then checks that the cache holds no partial entry,
// that the next run cleans up and produces the same result as a clean run.
func TestCrashSafety(t *testing.T) {
	dir := t.TempDir()
	cmd := helperCmd(t, "crash", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "marker")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("helper never reached the crash point")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	// Before any cleanup: every stored record is complete and consistent.
	st := openStore(t, filepath.Join(dir, "cache"))
	vr, err := st.Verify(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(vr.Problems) != 0 {
		t.Fatalf("cache corrupt after SIGKILL: %+v", vr.Problems)
	}
	ents, _ := st.List()
	for _, e := range ents {
		if e.Kind == "uki" || e.Kind == "disk" {
			t.Errorf("record for %s exists although it never finished", e.Kind)
		}
	}
	// The dead session's scratch space was removed when the store opened.
	tmps, _ := os.ReadDir(filepath.Join(dir, "cache", "tmp"))
	if len(tmps) != 2 { // only our own session dir + lock
		names := []string{}
		for _, e := range tmps {
			names = append(names, e.Name())
		}
		t.Errorf("tmp after reopen: %v", names)
	}
	st.Close()

	// Rerun: completes, the crashed compose's working directory is gone,
	// and the artifacts equal those of a clean build in a fresh cache.
	cmd = helperCmd(t, "normal", dir)
	if err := cmd.Run(); err != nil {
		t.Fatalf("rerun after crash: %v", err)
	}
	out, _ := os.ReadDir(filepath.Join(dir, "out"))
	var names []string
	for _, e := range out {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != composeIDToday(0) {
		t.Errorf("output after rerun: %v", names)
	}
	clean := t.TempDir()
	if err := helperCmd(t, "normal", clean).Run(); err != nil {
		t.Fatal(err)
	}
	a, err := artifacts.LoadComposeRecord(filepath.Join(dir, "out", names[0]))
	if err != nil {
		t.Fatal(err)
	}
	b, err := artifacts.LoadComposeRecord(filepath.Join(clean, "out", composeIDToday(0)))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(a.Artifacts) != fmt.Sprint(b.Artifacts) {
		t.Errorf("artifacts after crash+rerun differ from a clean build:\n%v\n%v", a.Artifacts, b.Artifacts)
	}
	st = openStore(t, filepath.Join(dir, "cache"))
	if vr, err := st.Verify(nil); err != nil || len(vr.Problems) != 0 {
		t.Errorf("verify after rerun: %v %+v", err, vr.Problems)
	}
}

func composeIDToday(respin int) string {
	id, _ := artifacts.ComposeSpec{Product: "Fedora", Release: "41", Type: "nightly", Date: time.Now()}.ID(respin)
	return id
}

// TestTwoProcessesShareCache runs two composes of the same manifests at
// once on one cache: every stage runs exactly once in total, the other
// process waits and reuses, and both composes are complete.
func TestTwoProcessesShareCache(t *testing.T) {
	dir := t.TempDir()
	a, b := helperCmd(t, "share", dir), helperCmd(t, "share", dir)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	errA, errB := a.Wait(), b.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("helpers: %v / %v", errA, errB)
	}
	runs, err := os.ReadFile(filepath.Join(dir, "runs"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(runs)), "\n")
	sort.Strings(lines)
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			t.Errorf("stage ran twice: %s", l)
		}
		seen[l] = true
	}
	if len(lines) != 15 { // 3 targets x 5 stages
		t.Errorf("stage runs = %d, want 15:\n%s", len(lines), runs)
	}
	for _, id := range []string{composeIDToday(0), composeIDToday(1)} {
		r, err := artifacts.LoadComposeRecord(filepath.Join(dir, "out", id))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != artifacts.StatusFinished {
			t.Errorf("%s: %s", id, r.Status)
		}
	}
	st := openStore(t, filepath.Join(dir, "cache"))
	if vr, err := st.Verify(nil); err != nil || len(vr.Problems) != 0 {
		t.Errorf("verify: %v %+v", err, vr.Problems)
	}
	if _, err := st.GetRecord("nope"); !errors.Is(err, artifacts.ErrNotFound) {
		t.Errorf("GetRecord(nope) = %v", err)
	}
}
