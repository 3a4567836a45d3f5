package main

// The scale-out fan-out (issue 15, docs/scale-out.md): the testbed compose
// run as several worker processes - the real cfs-compose binary, each with
// its own local cache, standing in for builders - that share nothing but
// an OCI registry (Debian's docker-registry on 127.0.0.1, with htpasswd
// authentication), their compose units merged and compared with a
// one-process compose.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/regcache/regtest"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
)

// scaleOutID is the compose ID every unit of the fan-out shares.
const scaleOutID = "Fedora-43-20261206.n.0"

// scaleOutEnv is what the fan-out tests and benchmark share: the binary,
// manifests without boot tests, a registry and an isolated environment.
type scaleOutEnv struct {
	bin, manifests, dir string
	reg                 *regtest.Registry
	env                 []string
	seq                 int // rounds so far: unique directory and repository names
}

// remoteStats is the cache-registry line a build prints on stderr.
type remoteStats struct {
	Fetched, Pushed, Misses, Refused, Failures int
	BytesPulled, BytesPushed                   int64
}

var statsLine = regexp.MustCompile(`cache-registry \S+: fetched=(\d+) pushed=(\d+) misses=(\d+) refused=(\d+) failures=(\d+) bytes_pulled=(\d+) bytes_pushed=(\d+)`)

func parseStats(stderr string) (remoteStats, bool) {
	m := statsLine.FindStringSubmatch(stderr)
	if m == nil {
		return remoteStats{}, false
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
	return remoteStats{Fetched: int(n(1)), Pushed: int(n(2)), Misses: int(n(3)), Refused: int(n(4)), Failures: int(n(5)),
		BytesPulled: n(6), BytesPushed: n(7)}, true
}

// newScaleOutEnv builds cfs-compose, writes the testbed manifests with a
// 160 MiB disk instead of 512 MiB (less to push through the registry) and,
// unless boot, the boot test turned off (the benchmark measures building
// and sharing), and starts the registry.
func newScaleOutEnv(t testing.TB, variants int, boot bool) *scaleOutEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPING SCALE-OUT FAN-OUT: the disk stage needs root (device nodes and owners in the root partition); CI runs as root")
	}
	layout, err := fixtures.DefaultLayoutDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(layout, "index.json")); err != nil {
		t.Fatalf("the fixture image is missing (%v): run make fixtures", err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build cfs-compose for the worker processes: %v", err)
	}
	e := &scaleOutEnv{dir: t.TempDir()}
	e.bin = filepath.Join(e.dir, "cfs-compose")
	build := exec.Command(goTool, "build", "-o", e.bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e.manifests = filepath.Join(e.dir, "manifests")
	if err := os.Mkdir(e.manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"defaults.hcl", "variables.hcl"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "manifests", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.manifests, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tb, err := os.ReadFile(filepath.Join("..", "..", "manifests", "testbed.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(tb)
	for _, r := range [][2]string{
		{`image = "oci:../testbed/fixtures/build/oci:testbed"`, `image = "oci:` + layout + `:testbed"`},
		{`boot    = true`, `boot    = ` + strconv.FormatBool(boot)},
		{`size    = "512MiB"`, `size    = "160MiB"`},
	} {
		if !strings.Contains(src, r[0]) {
			t.Fatalf("manifests/testbed.hcl no longer says %s", r[0])
		}
		src = strings.Replace(src, r[0], r[1], 1)
	}
	if err := os.WriteFile(filepath.Join(e.manifests, "testbed.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if variants == 2 {
		// A second variant, so that four units exist: its kernel command
		// line differs, so its initramfs, UKI and disk are its own while
		// the source and composefs stages are shared with testbed.
		second := strings.Replace(src, `variant "testbed" {`, `variant "testbed2" {`, 1)
		second = strings.Replace(second, `  initramfs {`, "  kernel {\n    cmdline = [\"quiet\"]\n  }\n\n  initramfs {", 1)
		if err := os.WriteFile(filepath.Join(e.manifests, "testbed2.hcl"), []byte(second), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.reg = regtest.Start(t, true)
	home := filepath.Join(e.dir, "home")
	conf := filepath.Join(e.dir, "registries.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_RUNTIME_DIR=" + home, "DOCKER_CONFIG=" + home,
		"REGISTRY_AUTH_FILE=" + e.reg.AuthFile, "CONTAINERS_REGISTRIES_CONF=" + conf,
		"CONTAINERS_POLICY_JSON=" + noPolicyPath, "TMPDIR=" + os.TempDir(),
	}
	return e
}

// unit is one worker's share of the compose: the targets it builds.
type unit struct {
	variant string
	arches  []string
}

// worker runs one cfs-compose build process and returns its compose
// directory and what it moved through the registry.
type workerResult struct {
	dir    string
	stats  remoteStats
	stderr string
}

func (e *scaleOutEnv) run(t testing.TB, name string, repo string, u unit, partial bool) workerResult {
	t.Helper()
	base := filepath.Join(e.dir, name)
	args := []string{"-m", e.manifests, "--cache-dir", filepath.Join(base, "cache"), "--log-level", "info",
		"build", "--variant", u.variant, "--out", filepath.Join(base, "out"), "--progress", "plain", "--compose-id", scaleOutID,
		"--cache-registry", e.reg.Host + "/" + repo, "--cache-registry-plain-http"}
	for _, a := range u.arches {
		args = append(args, "--arch", a)
	}
	if partial {
		args = append(args, "--partial")
	}
	cmd := exec.Command(e.bin, args...)
	cmd.Env = e.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: cfs-compose %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	st, ok := parseStats(stderr.String())
	if !ok {
		t.Fatalf("%s: no cache-registry line on stderr:\n%s", name, stderr.String())
	}
	return workerResult{dir: filepath.Join(base, "out", scaleOutID), stats: st, stderr: stderr.String()}
}

// fanOut runs the units as concurrent worker processes, fresh local
// caches each, and returns their results in unit order and the wall time.
func (e *scaleOutEnv) fanOut(t testing.TB, round, repo string, units []unit) ([]workerResult, time.Duration) {
	t.Helper()
	res := make([]workerResult, len(units))
	var wg sync.WaitGroup
	start := time.Now()
	for i, u := range units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = e.run(t, fmt.Sprintf("%s-w%d", round, i), repo, u, len(units) > 1)
		}()
	}
	wg.Wait()
	return res, time.Since(start)
}

func (e *scaleOutEnv) merge(t testing.TB, name string, parts []string) string {
	t.Helper()
	out := filepath.Join(e.dir, name)
	args := append([]string{"-m", e.manifests, "compose", "merge", "--out", out}, parts...)
	cmd := exec.Command(e.bin, args...)
	cmd.Env = e.env
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("merge: %v\n%s", err, b)
	}
	return filepath.Join(out, scaleOutID)
}

// stageRuns counts, per stage cache key, how many of the composes ran the
// stage (rather than taking it from a cache).
func stageRuns(t testing.TB, dirs []string) (runs map[string]int, kinds map[string]string) {
	t.Helper()
	runs, kinds = map[string]int{}, map[string]string{}
	for _, d := range dirs {
		rec, err := artifacts.LoadComposeRecord(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range rec.Stages {
			kinds[s.Key] = s.Kind
			if s.Status == "ran" {
				runs[s.Key]++
			} else if _, ok := runs[s.Key]; !ok {
				runs[s.Key] = 0
			}
		}
	}
	return runs, kinds
}

// composeFiles reads every file of a compose directory.
func composeFiles(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// diffComposes lists the files that differ between two composes; with
// runFacts, compose.json is compared with each stage's run facts (status,
// cacheHit, bytesWritten: whether this process ran the stage or took it
// from a cache) set aside.
func diffComposes(t testing.TB, a, b string, runFacts bool) []string {
	t.Helper()
	fa, fb := composeFiles(t, a), composeFiles(t, b)
	var d []string
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for k := range fa {
			if !yield(k) {
				return
			}
		}
	}) {
		x, y := fa[p], fb[p]
		if p == artifacts.ComposeRecordFile && runFacts {
			x, y = withoutRunFacts(t, x), withoutRunFacts(t, y)
		}
		if _, ok := fb[p]; !ok {
			d = append(d, p+": only in "+a)
		} else if !bytes.Equal(x, y) {
			d = append(d, p+": differs")
		}
	}
	for p := range fb {
		if _, ok := fa[p]; !ok {
			d = append(d, p+": only in "+b)
		}
	}
	return d
}

func withoutRunFacts(t testing.TB, b []byte) []byte {
	t.Helper()
	var rec artifacts.ComposeRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	for i := range rec.Stages {
		rec.Stages[i].Status, rec.Stages[i].CacheHit, rec.Stages[i].BytesWritten = "", false, 0
	}
	out, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestScaleOutFanOut: two workers (one per arch) build the testbed
// compose through a registry, each stage exactly once; their merged units
// equal, byte for byte, a one-process compose that built every stage
// too; a second fan-out against the warm registry builds nothing and its
// merge equals the one-process compose byte for byte.
func TestScaleOutFanOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the testbed compose four times as separate processes; skipped with -short")
	}
	// The testbed compose without its boot test, 5 stages per arch: boot
	// reports carry the boots' timings (console timestamps, verdict
	// seconds, their sizes in compose.json and SHA256SUMS), so two
	// composes that each booted can never be byte-identical; a boot
	// test's outputs travel through the registry like any other stage's.
	e := newScaleOutEnv(t, 1, false)
	const perArch = 5
	units := []unit{{"testbed", []string{"x86_64"}}, {"testbed", []string{"aarch64"}}}

	cold, _ := e.fanOut(t, "cold", "cfs/cache", units)
	var parts []string
	for i, w := range cold {
		parts = append(parts, w.dir)
		if w.stats.Pushed == 0 || w.stats.Fetched != 0 || w.stats.Failures != 0 || w.stats.Refused != 0 {
			t.Errorf("cold worker %d: %+v, want pushes only\n%s", i, w.stats, w.stderr)
		}
		rec, err := artifacts.LoadComposeRecord(w.dir)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Partial == nil || len(rec.Targets) != 1 || rec.ID != scaleOutID {
			t.Errorf("cold worker %d: partial %v targets %v id %s", i, rec.Partial, rec.Targets, rec.ID)
		}
	}
	runs, kinds := stageRuns(t, parts)
	if len(runs) != 2*perArch {
		t.Errorf("the units record %d stages, want %d (%d per arch)", len(runs), 2*perArch, perArch)
	}
	for key, n := range runs {
		if n != 1 {
			t.Errorf("stage %s %s built %d times across the workers, want exactly once", kinds[key], key[:12], n)
		}
	}
	merged := e.merge(t, "merged-cold", parts)

	// The warm fan-out: fresh local caches, the registry holds everything.
	warm, _ := e.fanOut(t, "warm", "cfs/cache", units)
	var warmParts []string
	for i, w := range warm {
		warmParts = append(warmParts, w.dir)
		if w.stats.Pushed != 0 || w.stats.Fetched != perArch || w.stats.Misses != 0 {
			t.Errorf("warm worker %d: %+v, want %d fetched and nothing pushed", i, w.stats, perArch)
		}
	}
	runs, _ = stageRuns(t, warmParts)
	for key, n := range runs {
		if n != 0 {
			t.Errorf("warm fan-out built stage %s %s %d times, want none", kinds[key], key[:12], n)
		}
	}
	// Merging in the other order gives the same compose.
	slices.Reverse(warmParts)
	mergedWarm := e.merge(t, "merged-warm", warmParts)

	// One process, all targets, fresh local cache, warm registry.
	single := e.run(t, "single", "cfs/cache", unit{"testbed", []string{"x86_64", "aarch64"}}, false)
	if single.stats.Fetched != 2*perArch || single.stats.Pushed != 0 {
		t.Errorf("one-process compose: %+v, want %d fetched", single.stats, 2*perArch)
	}
	if d := diffComposes(t, single.dir, mergedWarm, false); len(d) > 0 {
		t.Errorf("merged warm units differ from the one-process compose:\n%s", strings.Join(d, "\n"))
	}
	if d := diffComposes(t, single.dir, merged, true); len(d) > 0 {
		t.Errorf("merged cold units differ from the one-process compose (beyond the stages' run facts):\n%s", strings.Join(d, "\n"))
	}
	// The cold merge differs from the warm one-process compose only in
	// the run facts of compose.json: the workers ran what the single
	// process fetched.
	if d := diffComposes(t, single.dir, merged, false); !slices.Equal(d, []string{"compose.json: differs"}) {
		t.Errorf("cold merge vs one-process compose: %v, want only compose.json's run facts to differ", d)
	}
	// A cold one-process compose (its own empty registry repository, so
	// it builds every stage as the workers did) equals the cold merge
	// byte for byte, compose.json's run facts included; only the stage
	// logs differ, which carry the wall-clock times of each run.
	singleCold := e.run(t, "single-cold", "cfs/single-cold", unit{"testbed", []string{"x86_64", "aarch64"}}, false)
	if singleCold.stats.Fetched != 0 || singleCold.stats.Pushed == 0 {
		t.Errorf("cold one-process compose: %+v, want pushes only", singleCold.stats)
	}
	d := slices.DeleteFunc(diffComposes(t, singleCold.dir, merged, false), func(l string) bool { return strings.HasPrefix(l, "logs/") })
	if len(d) > 0 {
		t.Errorf("merged cold units differ from the cold one-process compose:\n%s", strings.Join(d, "\n"))
	}
	files := composeFiles(t, mergedWarm)
	for _, p := range []string{"Testbed/x86_64/images/Fedora-Testbed-43.x86_64.raw", "Testbed/aarch64/images/Fedora-Testbed-43.aarch64.raw",
		"SHA256SUMS", "metadata/images.json", "logs/Testbed/aarch64/disk.log", "logs/Testbed/x86_64/source.log"} {
		if len(files[p]) == 0 {
			t.Errorf("merged compose lacks %s", p)
		}
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", "--quiet", "SHA256SUMS")
	cmd.Dir = mergedWarm
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c in the merged compose: %v\n%s", err, out)
	}
	// cfs-compose verify checks the merged compose end to end (artifacts
	// against SHA256SUMS, the UKI's composefs digest, the disk's objects).
	verify := exec.Command(e.bin, "verify", merged)
	verify.Env = e.env
	if out, err := verify.CombinedOutput(); err != nil {
		t.Errorf("cfs-compose verify of the merged compose: %v\n%s", err, out)
	}
}

// BenchmarkScaleOut measures the fan-out figures of docs/scale-out.md on
// a four-target compose (testbed and testbed2, x86_64 and aarch64; boot
// tests off): the cold fan-out's wall time (ns/op) with 1, 2 (one per
// arch) and 4 (one per target) worker processes, each with an empty local
// cache, sharing an empty registry repository; the bytes they pushed and
// pulled; how many stage runs that took (stage_runs; testbed2 shares its
// source and composefs stages with testbed, so concurrent workers may both
// build those); and the wall time of a warm fan-out
// (fresh local caches, the registry full) and of the merge.
//
//	go test -run '^$' -bench BenchmarkScaleOut -benchtime 1x ./cmd/cfs-compose
func BenchmarkScaleOut(b *testing.B) {
	e := newScaleOutEnv(b, 2, false)
	splits := map[int][]unit{
		1: {{"testbed,testbed2", []string{"x86_64", "aarch64"}}},
		2: {{"testbed,testbed2", []string{"x86_64"}}, {"testbed,testbed2", []string{"aarch64"}}},
		4: {{"testbed", []string{"x86_64"}}, {"testbed", []string{"aarch64"}}, {"testbed2", []string{"x86_64"}}, {"testbed2", []string{"aarch64"}}},
	}
	for _, n := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			var pushed, pulled, warmPulled, runs, stages int64
			var warm, merge time.Duration
			for range b.N {
				e.seq++
				repo := fmt.Sprintf("bench/w%d-%d", n, e.seq)
				round := fmt.Sprintf("b%d-%d", n, e.seq)
				b.StartTimer()
				cold, _ := e.fanOut(b, round+"-cold", repo, splits[n])
				b.StopTimer()
				var dirs []string
				for _, w := range cold {
					pushed += w.stats.BytesPushed
					pulled += w.stats.BytesPulled
					dirs = append(dirs, w.dir)
				}
				r, _ := stageRuns(b, dirs)
				for _, c := range r {
					runs += int64(c)
				}
				stages += int64(len(r))
				again, d := e.fanOut(b, round+"-warm", repo, splits[n])
				warm += d
				for _, w := range again {
					warmPulled += w.stats.BytesPulled
					if w.stats.Pushed != 0 {
						b.Errorf("warm fan-out pushed %d entries", w.stats.Pushed)
					}
					os.RemoveAll(filepath.Dir(filepath.Dir(w.dir)))
				}
				if n > 1 {
					start := time.Now()
					e.merge(b, round+"-merged", dirs)
					merge += time.Since(start)
				}
				for _, w := range cold {
					os.RemoveAll(filepath.Dir(filepath.Dir(w.dir)))
				}
			}
			b.ReportMetric(float64(pushed)/float64(b.N), "bytes_pushed/op")
			b.ReportMetric(float64(pulled)/float64(b.N), "bytes_pulled/op")
			b.ReportMetric(float64(runs)/float64(b.N), "stage_runs/op")
			b.ReportMetric(float64(stages)/float64(b.N), "stages/op")
			b.ReportMetric(float64(warmPulled)/float64(b.N), "warm_bytes_pulled/op")
			b.ReportMetric(warm.Seconds()/float64(b.N), "warm_s/op")
			b.ReportMetric(merge.Seconds()/float64(b.N), "merge_s/op")
		})
	}
}
