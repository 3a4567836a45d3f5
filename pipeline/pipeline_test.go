package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

func openStore(t testing.TB, dir string) *artifacts.Store {
	t.Helper()
	st, err := artifacts.Open(context.Background(), dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestResolveGraph(t *testing.T) {
	m := newFake(map[string][]string{"coreos": {"aarch64", "x86_64"}, "iot": {"x86_64"}})
	p, err := Resolve(context.Background(), m, chain(newHooks()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(p.Targets); got != 3 {
		t.Fatalf("targets = %d, want 3", got)
	}
	// 3 targets x 5 stages, nothing shared: configs differ per arch or image.
	if got := len(p.Nodes); got != 15 {
		t.Fatalf("nodes = %d, want 15", got)
	}
	pos := map[*Node]int{}
	for i, n := range p.Nodes {
		pos[n] = i
	}
	for _, n := range p.Nodes {
		for _, d := range n.Deps {
			if pos[d] >= pos[n] {
				t.Errorf("node %s comes before its dependency %s", n.Kind, d.Kind)
			}
		}
	}
	disk := p.Targets[0].Nodes["disk"]
	if len(disk.Deps) != 2 || disk.Deps[0].Kind != "uki" || disk.Deps[1].Kind != "cfs" {
		t.Errorf("disk deps = %v", disk.Deps)
	}
}

func TestResolveSharesIdenticalStages(t *testing.T) {
	m := newFake(map[string][]string{"a": {"x86_64"}, "b": {"x86_64"}})
	// Same image for both variants: src, cfs, uki, lint are identical.
	m.configs["b"]["x86_64"].Source.Image = m.configs["a"]["x86_64"].Source.Image
	m.configs["b"]["x86_64"].Kernel.Cmdline = []string{"quiet"} // uki differs
	p, err := Resolve(context.Background(), m, chain(newHooks()), nil)
	if err != nil {
		t.Fatal(err)
	}
	shared := map[string]int{}
	for _, n := range p.Nodes {
		shared[n.Kind] = len(n.Targets)
	}
	want := map[string]int{"src": 2, "cfs": 2, "lint": 2, "uki": 1, "disk": 1}
	for k, v := range want {
		if shared[k] != v {
			t.Errorf("%s serves %d targets, want %d", k, shared[k], v)
		}
	}
	if len(p.Nodes) != 7 {
		t.Errorf("nodes = %d, want 7", len(p.Nodes))
	}
}

// TestResolveOptionalUnregistered: an optional input of a kind the table
// does not have is never present; the consumer still plans.
func TestResolveOptionalUnregistered(t *testing.T) {
	h := newHooks()
	m := newFake(map[string][]string{"coreos": {"x86_64"}})
	p, err := Resolve(context.Background(), m, []Stage{
		&fakeStage{kind: "src", h: h},
		&fakeStage{kind: "sign", h: h, inputs: []Dep{{Kind: "src"}, {Kind: "disk", Optional: true}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := p.Targets[0].Nodes["sign"]; n == nil || len(n.Deps) != 1 || n.Deps[0].Kind != "src" {
		t.Fatalf("sign node %+v", n)
	}
}

func TestResolveErrors(t *testing.T) {
	h := newHooks()
	m := newFake(map[string][]string{"coreos": {"x86_64"}})
	tests := []struct {
		name   string
		stages []Stage
		opts   *ResolveOptions
		want   string
	}{
		{"duplicate kind", []Stage{&fakeStage{kind: "src", h: h}, &fakeStage{kind: "src", h: h}}, nil, `registered twice`},
		{"input after consumer", []Stage{&fakeStage{kind: "cfs", h: h, inputs: []Dep{{Kind: "src"}}}, &fakeStage{kind: "src", h: h}}, nil, `does not come before it`},
		{"optional input after consumer", []Stage{&fakeStage{kind: "cfs", h: h, inputs: []Dep{{Kind: "src", Optional: true}}}, &fakeStage{kind: "src", h: h}}, nil, `does not come before it`},
		{"required input not registered", []Stage{&fakeStage{kind: "cfs", h: h, inputs: []Dep{{Kind: "src"}}}}, nil, `does not come before it`},
		{"unknown variant", chain(h), &ResolveOptions{Variants: []string{"silverblue"}}, `unknown variant "silverblue"`},
		{"no arch match", chain(h), &ResolveOptions{Arches: []string{"ppc64le"}}, `no variant/arch matches`},
		{"required dep skipped", []Stage{
			&fakeStage{kind: "src", h: h, unused: true},
			&fakeStage{kind: "cfs", h: h, inputs: []Dep{{Kind: "src"}}},
		}, nil, `needs stage src`},
		{"plan error", []Stage{&fakeStage{kind: "src", h: h, planFn: func(*manifest.Config) (any, error) { return nil, errors.New("tag not found") }}}, nil, `coreos/x86_64: planning stage src: tag not found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(context.Background(), m, tc.stages, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestPlanErrorOncePerTarget: when a stage cannot be planned, its
// consumers are not planned either and the error names only the stage that
// failed, once per target.
func TestPlanErrorOncePerTarget(t *testing.T) {
	h := newHooks()
	m := newFake(map[string][]string{"coreos": {"x86_64", "aarch64"}})
	stages := chain(h)
	stages[0] = &fakeStage{kind: "src", h: h, planFn: func(*manifest.Config) (any, error) { return nil, errors.New("registry unreachable") }}
	_, err := Resolve(context.Background(), m, stages, nil)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.Count(msg, "registry unreachable") != 2 || strings.Contains(msg, "needs stage") || strings.Count(msg, "\n") != 1 {
		t.Errorf("want one line per target naming the failed stage, got:\n%s", msg)
	}
}

func TestOfflinePlanKeepsUnresolvedNodes(t *testing.T) {
	h := newHooks()
	m := newFake(map[string][]string{"coreos": {"x86_64"}})
	stages := []Stage{&fakeStage{kind: "src", h: h, planFn: func(*manifest.Config) (any, error) { return nil, errors.New("registry unreachable") }}}
	p, err := Resolve(context.Background(), m, stages, &ResolveOptions{Offline: true, Lenient: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Nodes[0].PlanErr == nil {
		t.Fatal("want PlanErr on the node")
	}
	st := openStore(t, t.TempDir())
	if _, err := Execute(context.Background(), p, st, nil); err == nil || !strings.Contains(err.Error(), "registry unreachable") {
		t.Fatalf("Execute err = %v", err)
	}
	if s := p.State(st)[0]; s.Cached || !strings.HasPrefix(s.Reason, "unresolved") {
		t.Errorf("state = %+v", s)
	}
}

// TestKeyStable pins the cache key of a fixed node: it must not change
// between runs, machines or Go versions (a change invalidates every cache).
func TestKeyStable(t *testing.T) {
	n := &Node{Kind: "composefs", Stage: &fakeStage{kind: "composefs", version: "3"}, Config: json.RawMessage(`{"enabled":true,"verity":"none"}`)}
	in := map[string]string{"source/tree": "sha256:" + strings.Repeat("ab", 32), "source/info": "sha256:" + strings.Repeat("01", 32)}
	// Computed independently of this code:
	//   printf 'cfs-compose stage cache key v1\nkind=composefs\nversion=3\nconfig={"enabled":true,"verity":"none"}\ninput source/info=sha256:0101…\ninput source/tree=sha256:abab…\n' | sha256sum
	const want = "b752769b8a6fa22ff5a0995062035ce03a76984d49af3c757d6d06f10e905b65"
	got := n.Key(in)
	if got != n.Key(in) {
		t.Fatal("key not deterministic")
	}
	if got != want {
		t.Errorf("key = %s, want %s (the key derivation changed: that invalidates every cache)", got, want)
	}
	variants := []struct {
		name string
		mut  func() string
	}{
		{"config", func() string {
			m := *n
			m.Config = json.RawMessage(`{"enabled":false,"verity":"none"}`)
			return m.Key(in)
		}},
		{"version", func() string {
			m := *n
			m.Stage = &fakeStage{kind: "composefs", version: "4"}
			return m.Key(in)
		}},
		{"kind", func() string {
			m := *n
			m.Kind = "uki"
			return m.Key(in)
		}},
		{"input digest", func() string {
			in2 := map[string]string{"source/tree": "sha256:" + strings.Repeat("ac", 32), "source/info": in["source/info"]}
			return n.Key(in2)
		}},
		{"input name", func() string {
			in2 := map[string]string{"source/tree2": in["source/tree"], "source/info": in["source/info"]}
			return n.Key(in2)
		}},
	}
	for _, v := range variants {
		if v.mut() == got {
			t.Errorf("changing the %s did not change the key", v.name)
		}
	}
}

type localCfg struct {
	Path   string `json:"path"`
	Digest string `json:"digest"`
}

func (c localCfg) CacheKey() any { return map[string]string{"digest": c.Digest} }

// TestKeyerKeepsPathsOutOfKeys checks that a config's machine-local parts
// do not change the cache key while Run still sees them.
func TestKeyerKeepsPathsOutOfKeys(t *testing.T) {
	h := newHooks()
	key := func(path string) string {
		m := newFake(map[string][]string{"coreos": {"x86_64"}})
		stages := []Stage{&fakeStage{kind: "src", h: h, planFn: func(*manifest.Config) (any, error) {
			return localCfg{Path: path, Digest: "sha256:1234"}, nil
		}}}
		p, err := Resolve(context.Background(), m, stages, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(p.Nodes[0].Config), path) {
			t.Errorf("config lost the path: %s", p.Nodes[0].Config)
		}
		return p.Nodes[0].Key(nil)
	}
	if a, b := key("/home/a/oci"), key("/srv/b/oci"); a != b {
		t.Error("a local path changed the cache key")
	}
}

func TestCanonicalJSONIgnoresFieldOrder(t *testing.T) {
	type a struct {
		X int    `json:"x"`
		Y string `json:"y"`
	}
	type b struct {
		Y string `json:"y"`
		X int    `json:"x"`
	}
	ja, _ := canonicalJSON(a{1, "q"})
	jb, _ := canonicalJSON(b{"q", 1})
	if !bytes.Equal(ja, jb) {
		t.Errorf("%s != %s", ja, jb)
	}
}

func execPlan(t *testing.T, m Manifests, h *hooks, st *artifacts.Store, opts *ExecOptions) (*Result, error) {
	t.Helper()
	p, err := Resolve(context.Background(), m, chain(h), nil)
	if err != nil {
		t.Fatal(err)
	}
	return Execute(context.Background(), p, st, opts)
}

func TestExecuteCachesAndRerunsOnlyDependents(t *testing.T) {
	st := openStore(t, t.TempDir())
	m := newFake(map[string][]string{"coreos": {"x86_64", "aarch64"}})
	h := newHooks()
	res, err := execPlan(t, m, h, st, &ExecOptions{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Counts(); c[StatusRan] != 10 {
		t.Fatalf("first run counts = %v", c)
	}
	// Nothing changed: nothing runs.
	h2 := newHooks()
	res, err = execPlan(t, m, h2, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Counts(); c[StatusCached] != 10 || c[StatusRan] != 0 {
		t.Fatalf("second run counts = %v", c)
	}
	for _, k := range []string{"src", "cfs", "lint", "uki", "disk"} {
		if h2.count(k) != 0 {
			t.Errorf("%s ran on a fully cached plan", k)
		}
	}
	// The contingency flip on one arch: cfs and everything below it rerun
	// for that arch only; src and lint stay cached.
	m.configs["coreos"]["x86_64"].Composefs.Enabled = false
	h3 := newHooks()
	res, err = execPlan(t, m, h3, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"src": 0, "lint": 0, "cfs": 1, "uki": 1, "disk": 1}
	for k, v := range want {
		if h3.count(k) != v {
			t.Errorf("%s ran %d times, want %d", k, h3.count(k), v)
		}
	}
	if c := res.Counts(); c[StatusRan] != 3 || c[StatusCached] != 7 {
		t.Errorf("counts = %v", c)
	}
}

func TestExecuteParallelism(t *testing.T) {
	st := openStore(t, t.TempDir())
	m := newFake(map[string][]string{"a": {"x86_64", "aarch64"}, "b": {"x86_64", "aarch64"}})
	for _, jobs := range []int{1, 3} {
		h := newHooks()
		h.sleep = 20 * time.Millisecond
		m.compose.Release = "j" + string(rune('0'+jobs)) // different configs per round: no cache hits
		for _, v := range m.configs {
			for _, c := range v {
				c.Source.Image += "-" + m.compose.Release
			}
		}
		if _, err := execPlan(t, m, h, st, &ExecOptions{Jobs: jobs}); err != nil {
			t.Fatal(err)
		}
		if got := int(h.maxPar.Load()); got != jobs {
			t.Errorf("jobs=%d: max concurrent stages = %d", jobs, got)
		}
	}
}

func TestExecuteFailurePropagation(t *testing.T) {
	m := newFake(map[string][]string{"coreos": {"x86_64"}})
	t.Run("stop", func(t *testing.T) {
		st := openStore(t, t.TempDir())
		h := newHooks()
		h.fail["cfs"] = true
		res, err := execPlan(t, m, h, st, &ExecOptions{Jobs: 1})
		var se *StageError
		if !errors.As(err, &se) || se.Kind != "cfs" || se.Targets[0].String() != "coreos/x86_64" {
			t.Fatalf("err = %v", err)
		}
		if !strings.Contains(err.Error(), "stage cfs (coreos/x86_64) failed: fake failure; log: ") {
			t.Errorf("message = %q", err)
		}
		if h.count("uki") != 0 || h.count("disk") != 0 {
			t.Error("dependents of a failed stage ran")
		}
		for _, nr := range res.Nodes {
			if (nr.Node.Kind == "uki" || nr.Node.Kind == "disk") && nr.Status != StatusSkipped {
				t.Errorf("%s status %s", nr.Node.Kind, nr.Status)
			}
		}
		// lint is independent; with Jobs 1 it is scheduled after cfs
		// (plan order) and not started once the compose stops.
		if h.count("lint") != 0 {
			t.Error("lint started after a failure without keep-going")
		}
		var fr *NodeResult
		for _, nr := range res.Nodes {
			if nr.Node.Kind == "cfs" {
				fr = nr
			}
		}
		if fr.Log == nil {
			t.Fatal("failed stage has no log")
		}
		b, _ := os.ReadFile(st.Path(*fr.Log))
		if !strings.Contains(string(b), "fake stage working") || !strings.Contains(string(b), "fake failure") {
			t.Errorf("log = %q", b)
		}
	})
	t.Run("keep-going", func(t *testing.T) {
		st := openStore(t, t.TempDir())
		h := newHooks()
		h.fail["cfs"] = true
		res, err := execPlan(t, m, h, st, &ExecOptions{Jobs: 1, KeepGoing: true})
		if err == nil {
			t.Fatal("want error")
		}
		if h.count("lint") != 1 {
			t.Error("keep-going did not finish the independent lint stage")
		}
		if c := res.Counts(); c[StatusRan] != 2 || c[StatusFailed] != 1 || c[StatusSkipped] != 2 {
			t.Errorf("counts = %v", c)
		}
	})
	t.Run("panic", func(t *testing.T) {
		st := openStore(t, t.TempDir())
		h := newHooks()
		stages := []Stage{&panicStage{}}
		p, err := Resolve(context.Background(), m, stages, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Execute(context.Background(), p, st, nil)
		if err == nil || !strings.Contains(err.Error(), "panic: boom") {
			t.Fatalf("err = %v", err)
		}
		_ = h
	})
}

type panicStage struct{}

func (panicStage) Kind() string                                    { return "src" }
func (panicStage) Version() string                                 { return "1" }
func (panicStage) Inputs() []Dep                                   { return nil }
func (panicStage) Used(*Facts) bool                                { return true }
func (panicStage) plan(context.Context, *PlanContext) (any, error) { return 1, nil }
func (panicStage) run(context.Context, *RunContext, any) error     { panic("boom") }

func TestExecuteCancel(t *testing.T) {
	st := openStore(t, t.TempDir())
	m := newFake(map[string][]string{"coreos": {"x86_64"}})
	h := newHooks()
	h.block["cfs"] = make(chan struct{}) // never closed: only cancellation ends it
	h.started = make(chan string, 10)
	p, err := Resolve(context.Background(), m, chain(h), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for k := range h.started {
			if k == "cfs" {
				cancel()
				return
			}
		}
	}()
	res, err := Execute(ctx, p, st, &ExecOptions{Jobs: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	c := res.Counts()
	if c[StatusCancelled] != 4 || c[StatusRan] != 1 {
		t.Errorf("counts = %v", c)
	}
	// No record for the interrupted stage; scratch space is gone.
	for _, nr := range res.Nodes {
		if nr.Node.Kind == "cfs" {
			if _, err := st.GetRecord(nr.Key); !errors.Is(err, artifacts.ErrNotFound) {
				t.Errorf("record for cancelled stage: %v", err)
			}
		}
	}
	ents, _ := os.ReadDir(filepath.Join(st.Root(), "tmp"))
	for _, e := range ents {
		if e.IsDir() {
			sub, _ := os.ReadDir(filepath.Join(st.Root(), "tmp", e.Name()))
			if len(sub) != 0 {
				t.Errorf("scratch left behind: %v", sub)
			}
		}
	}
}

func TestBuildCompose(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, filepath.Join(dir, "cache"))
	m := newFake(map[string][]string{"coreos": {"x86_64", "aarch64"}})
	h := newHooks()
	var events bytes.Buffer
	date := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	opts := &BuildOptions{
		Out: filepath.Join(dir, "out"), Now: func() time.Time { return date },
		Exec:          ExecOptions{Events: JSONEvents(&events), Tool: "cfs-compose test"},
		ManifestFiles: map[string][]byte{"coreos.hcl": []byte("variant \"coreos\" {}\n")},
		Variables:     map[string]string{"release": "41"},
	}
	rec, err := Build(context.Background(), m, chain(h), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != "Fedora-41-20261127.n.0" || rec.Status != artifacts.StatusFinished {
		t.Fatalf("id %s status %s", rec.ID, rec.Status)
	}
	cd := rec.Dir
	for _, p := range []string{
		"Coreos/x86_64/images/disk-x86_64.raw", "Coreos/aarch64/images/disk-aarch64.raw",
		"SHA256SUMS", "STATUS", "compose.json", "metadata/composeinfo.json", "metadata/images.json",
		"logs/Coreos/x86_64/cfs.log", "logs/Coreos/aarch64/disk.log",
	} {
		if _, err := os.Stat(filepath.Join(cd, p)); err != nil {
			t.Errorf("missing %s", p)
		}
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
	cmd.Dir = cd
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "disk-x86_64.raw: OK") {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
	var images struct {
		Header  map[string]string `json:"header"`
		Payload struct {
			Compose map[string]any                         `json:"compose"`
			Images  map[string]map[string][]map[string]any `json:"images"`
		} `json:"payload"`
	}
	readJSON(t, filepath.Join(cd, "metadata/images.json"), &images)
	if images.Header["type"] != "productmd.images" || images.Header["version"] != "1.2" {
		t.Errorf("header = %v", images.Header)
	}
	img := images.Payload.Images["Coreos"]["x86_64"][0]
	for _, k := range []string{"path", "size", "checksums", "format", "type", "arch", "subvariant", "bootable", "mtime", "disc_number", "disc_count", "implant_md5", "volume_id"} {
		if _, ok := img[k]; !ok {
			t.Errorf("images.json entry lacks %q", k)
		}
	}
	if img["path"] != "Coreos/x86_64/images/disk-x86_64.raw" || img["bootable"] != true {
		t.Errorf("image entry = %v", img)
	}
	var ci map[string]any
	readJSON(t, filepath.Join(cd, "metadata/composeinfo.json"), &ci)
	if ci["payload"].(map[string]any)["compose"].(map[string]any)["id"] != rec.ID {
		t.Errorf("composeinfo = %v", ci)
	}
	var cj artifacts.ComposeRecord
	readJSON(t, filepath.Join(cd, "compose.json"), &cj)
	if len(cj.Stages) != 10 || cj.Manifests["coreos.hcl"] == "" || cj.Variables["release"] != "41" || cj.Tool != "cfs-compose test" {
		t.Errorf("compose.json = %+v", cj)
	}
	for _, s := range cj.Stages {
		if s.Key == "" || s.CacheHit || Status(s.Status) != StatusRan || s.Log == "" || len(s.Outputs) != 1 || s.Meta["len"] == nil {
			t.Errorf("stage record %+v", s)
		}
	}
	evs := strings.Split(strings.TrimSpace(events.String()), "\n")
	var first, last Event
	json.Unmarshal([]byte(evs[0]), &first)
	json.Unmarshal([]byte(evs[len(evs)-1]), &last)
	if first.Type != EventPlan || first.Total != 10 || last.Type != EventFinish {
		t.Errorf("events: first %+v last %+v", first, last)
	}

	// A second build with nothing changed: respin 1, every stage a cache hit.
	rec2, err := Build(context.Background(), m, chain(newHooks()), st, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rec2.ID != "Fedora-41-20261127.n.1" {
		t.Errorf("second id %s", rec2.ID)
	}
	for _, s := range rec2.Stages {
		if !s.CacheHit || s.BytesWritten != 0 {
			t.Errorf("second build stage %s: hit %v bytes %d", s.Kind, s.CacheHit, s.BytesWritten)
		}
	}
	if a, b := rec.Artifacts, rec2.Artifacts; len(a) != len(b) || a["Coreos/x86_64/images/disk-x86_64.raw"] != b["Coreos/x86_64/images/disk-x86_64.raw"] {
		t.Errorf("artifacts differ between identical composes")
	}
	refs, _ := st.ComposeRefs()
	if len(refs) != 2 || refs[0].ID != rec2.ID {
		t.Errorf("compose refs = %+v", refs)
	}
}

func TestBuildFailedComposeKeepsLogs(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, filepath.Join(dir, "cache"))
	m := newFake(map[string][]string{"coreos": {"x86_64"}})
	h := newHooks()
	h.fail["uki"] = true
	rec, err := Build(context.Background(), m, chain(h), st, &BuildOptions{Out: filepath.Join(dir, "out")})
	if err == nil {
		t.Fatal("want error")
	}
	if rec == nil || rec.Status != artifacts.StatusDoomed {
		t.Fatalf("rec = %+v", rec)
	}
	wantLog := filepath.Join(rec.Dir, "logs/Coreos/x86_64/uki.log")
	if !strings.Contains(err.Error(), "log: "+wantLog) {
		t.Errorf("error %q does not point to %s", err, wantLog)
	}
	b, rerr := os.ReadFile(wantLog)
	if rerr != nil || !strings.Contains(string(b), "fake failure") {
		t.Errorf("log %s: %v %q", wantLog, rerr, b)
	}
	status, _ := os.ReadFile(filepath.Join(rec.Dir, "STATUS"))
	if string(status) != "DOOMED\n" {
		t.Errorf("STATUS = %q", status)
	}
}

// TestBuildFailedComposePublishesReports: outputs a stage added before it
// failed (a boot test's report and JUnit) are published into the DOOMED
// compose, though not cached (issue 13 item 4).
func TestBuildFailedComposePublishesReports(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, filepath.Join(dir, "cache"))
	m := newFake(map[string][]string{"coreos": {"x86_64"}})
	h := newHooks()
	h.failLate["disk"] = true
	rec, err := Build(context.Background(), m, chain(h), st, &BuildOptions{Out: filepath.Join(dir, "out")})
	if err == nil || !strings.Contains(err.Error(), "fake failure after the report") {
		t.Fatalf("err = %v", err)
	}
	if rec == nil || rec.Status != artifacts.StatusDoomed {
		t.Fatalf("rec = %+v", rec)
	}
	b, rerr := os.ReadFile(filepath.Join(rec.Dir, "Coreos/x86_64/tests/disk-report.txt"))
	if rerr != nil || string(b) != "disk report" {
		t.Errorf("the failed stage's report is not in the compose: %v %q", rerr, b)
	}
	// Nothing of the failed run is cached: the next build runs it again.
	h2 := newHooks()
	if _, err := Build(context.Background(), m, chain(h2), st, &BuildOptions{Out: filepath.Join(dir, "out")}); err != nil {
		t.Fatal(err)
	}
	if h2.count("disk") != 1 {
		t.Errorf("disk ran %d times in the second build, want 1", h2.count("disk"))
	}
}

func TestBuildCancelLeavesNoOutput(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, filepath.Join(dir, "cache"))
	m := newFake(map[string][]string{"coreos": {"x86_64"}})
	h := newHooks()
	h.block["uki"] = make(chan struct{})
	h.started = make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for k := range h.started {
			if k == "uki" {
				cancel()
			}
		}
	}()
	_, err := Build(ctx, m, chain(h), st, &BuildOptions{Out: filepath.Join(dir, "out")})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "out"))
	for _, e := range ents {
		t.Errorf("output left behind: %s", e.Name())
	}
}

func readJSON(t *testing.T, p string, v any) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

func TestPlanStateAndDiff(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, filepath.Join(dir, "cache"))
	m := newFake(map[string][]string{"coreos": {"x86_64"}})
	p, _ := Resolve(context.Background(), m, chain(newHooks()), nil)
	states := p.State(st)
	if states[0].Key == "" || states[0].Cached || states[1].Key != "" {
		t.Errorf("cold states: %+v %+v", states[0], states[1])
	}
	rec, err := Build(context.Background(), m, chain(newHooks()), st, &BuildOptions{Out: filepath.Join(dir, "out")})
	if err != nil {
		t.Fatal(err)
	}
	p, _ = Resolve(context.Background(), m, chain(newHooks()), nil)
	for _, s := range p.State(st) {
		if !s.Cached {
			t.Errorf("%s not cached after build: %s", s.Node.Kind, s.Reason)
		}
	}
	for _, c := range Diff(p, p.State(st), rec) {
		if c.Change != "unchanged" {
			t.Errorf("unchanged manifest: %+v", c)
		}
	}
	m.configs["coreos"]["x86_64"].Composefs.Enabled = false
	p, _ = Resolve(context.Background(), m, chain(newHooks()), nil)
	got := map[string]Change{}
	for _, c := range Diff(p, p.State(st), rec) {
		got[c.Kind] = c
	}
	if got["src"].Change != "unchanged" || got["lint"].Change != "unchanged" {
		t.Errorf("src/lint: %+v %+v", got["src"], got["lint"])
	}
	if c := got["cfs"]; c.Change != "rerun" || len(c.Reasons) != 1 || c.Reasons[0] != "config enabled: true -> false" {
		t.Errorf("cfs: %+v", c)
	}
	if c := got["uki"]; c.Change != "rerun" || c.Reasons[0] != "input from cfs may change (cfs reruns)" {
		t.Errorf("uki: %+v", c)
	}
	if c := got["disk"]; c.Change != "rerun" || len(c.Artifacts) != 1 || c.Artifacts[0] != "disk-x86_64.raw" {
		t.Errorf("disk: %+v", c)
	}
}
