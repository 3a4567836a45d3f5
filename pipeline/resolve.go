package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/rs/zerolog"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// Manifests is what Resolve needs from a loaded manifest set
// (*manifest.Manifest implements it).
type Manifests interface {
	Variants() []string
	Arches(variant string) []string
	Config(variant, arch string) (*manifest.Config, error)
	Compose() manifest.Compose
}

// Target is one variant built for one arch. The type is
// [artifacts.Target]: compose.json records targets, and a reader of a
// compose does not need the pipeline.
type Target = artifacts.Target

// Node is one stage instance in the plan. Identical instances (same kind,
// version, config and upstream nodes) are shared between targets.
type Node struct {
	ID     string          // short identity: first 16 hex of Identity
	Kind   string          //
	Stage  Stage           //
	Config json.RawMessage // canonical JSON of the resolved config
	// config is the typed config Plan returned; Run receives it.
	config any
	// KeyConfig is the canonical JSON that enters the cache key: Config,
	// or the config's CacheKey() when it implements [Keyer].
	KeyConfig json.RawMessage
	Deps      []*Node  // upstream nodes, in Stage.Inputs order (absent optional deps omitted)
	Targets   []Target // targets served, sorted
	// PlanErr is set when the stage could not be resolved (for example an
	// image tag that cannot be pinned offline). Execute refuses such plans;
	// `plan` shows them.
	PlanErr error

	identity string
}

// Plan is the resolved DAG.
type Plan struct {
	// Nodes in a topological order (dependencies first), deterministic.
	Nodes []*Node
	// Targets in variant, arch order, each with its nodes by kind.
	Targets []TargetNodes
	Compose manifest.Compose
}

// TargetNodes maps one target's stage kinds to nodes.
type TargetNodes struct {
	Target Target
	Facts  *Facts
	Nodes  map[string]*Node
}

// ResolveOptions select what to plan.
type ResolveOptions struct {
	Variants []string // empty: all
	Arches   []string // empty: all the variant declares
	// Offline forbids network look-ups in Stage.Plan.
	Offline bool
	// Lenient keeps a stage's planning error on its node (Node.PlanErr)
	// instead of failing: `plan` shows such nodes as unresolved, Execute
	// refuses them.
	Lenient bool
	Log     zerolog.Logger
}

// ErrNothingToDo reports a filter that matches no target.
var ErrNothingToDo = errors.New("pipeline: no variant/arch matches")

// Resolve builds the plan for the selected targets. Stages are given in
// pipeline order; each stage's inputs must come earlier in the list.
func Resolve(ctx context.Context, m Manifests, stages []Stage, opts *ResolveOptions) (*Plan, error) {
	if opts == nil {
		opts = &ResolveOptions{}
	}
	if err := checkStages(stages); err != nil {
		return nil, err
	}
	known := m.Variants()
	for _, v := range opts.Variants {
		if !slices.Contains(known, v) {
			return nil, fmt.Errorf("unknown variant %q (have %v)", v, known)
		}
	}
	p := &Plan{Compose: m.Compose()}
	byIdentity := map[string]*Node{}
	var errs []error
	for _, v := range known {
		if len(opts.Variants) > 0 && !slices.Contains(opts.Variants, v) {
			continue
		}
		for _, arch := range m.Arches(v) {
			if len(opts.Arches) > 0 && !slices.Contains(opts.Arches, arch) {
				continue
			}
			cfg, err := m.Config(v, arch)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s/%s: %w", v, arch, err))
				continue
			}
			t := Target{Variant: v, Name: cfg.Name, Arch: arch}
			facts, err := FactsOf(t, cfg)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			tn := TargetNodes{Target: t, Facts: facts, Nodes: map[string]*Node{}}
			pc := &PlanContext{Config: cfg, Facts: facts, Compose: m.Compose(), Offline: opts.Offline, Log: opts.Log}
			// failed holds the kinds that could not be planned for this
			// target: their consumers are not planned either, and the
			// error is reported once, for the stage that failed.
			failed := map[string]bool{}
			for _, st := range stages {
				if !st.Used(facts) {
					continue
				}
				if dependsOnFailed(st, failed) {
					failed[st.Kind()] = true
					continue
				}
				n, err := planNode(ctx, st, pc, tn.Nodes, opts.Lenient)
				if err != nil {
					failed[st.Kind()] = true
					errs = append(errs, fmt.Errorf("%s: %w", t, err))
					continue
				}
				if old, ok := byIdentity[n.identity]; ok {
					n = old
				} else {
					byIdentity[n.identity] = n
					p.Nodes = append(p.Nodes, n)
				}
				n.Targets = append(n.Targets, t)
				tn.Nodes[st.Kind()] = n
			}
			p.Targets = append(p.Targets, tn)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(p.Targets) == 0 {
		return nil, fmt.Errorf("%w (variants %v, arches %v)", ErrNothingToDo, opts.Variants, opts.Arches)
	}
	for _, n := range p.Nodes {
		sort.Slice(n.Targets, func(i, j int) bool { return n.Targets[i].String() < n.Targets[j].String() })
	}
	return p, nil
}

// dependsOnFailed reports whether one of st's inputs could not be planned.
func dependsOnFailed(st Stage, failed map[string]bool) bool {
	for _, d := range st.Inputs() {
		if failed[d.Kind] {
			return true
		}
	}
	return false
}

// checkStages checks the stage table: kinds are unique and every input
// comes before its consumer. An optional input whose kind is not in the
// table at all is allowed (it is simply never present), so a stage can be
// registered before every stage it may consume exists.
func checkStages(stages []Stage) error {
	all := map[string]bool{}
	for _, st := range stages {
		all[st.Kind()] = true
	}
	seen := map[string]bool{}
	for _, st := range stages {
		if seen[st.Kind()] {
			return fmt.Errorf("pipeline: stage kind %q registered twice", st.Kind())
		}
		for _, d := range st.Inputs() {
			if !seen[d.Kind] && (all[d.Kind] || !d.Optional) {
				return fmt.Errorf("pipeline: stage %q consumes %q, which does not come before it", st.Kind(), d.Kind)
			}
		}
		seen[st.Kind()] = true
	}
	return nil
}

// planNode resolves one stage for one target. With lenient, a resolution
// error is kept on the node (plan shows it).
func planNode(ctx context.Context, st Stage, pc *PlanContext, upstream map[string]*Node, lenient bool) (*Node, error) {
	n := &Node{Kind: st.Kind(), Stage: st}
	for _, d := range st.Inputs() {
		u, ok := upstream[d.Kind]
		if !ok {
			if d.Optional {
				continue
			}
			return nil, fmt.Errorf("stage %s needs stage %s, which this variant does not use", st.Kind(), d.Kind)
		}
		n.Deps = append(n.Deps, u)
	}
	cfg, err := st.plan(ctx, pc)
	switch {
	case err != nil && lenient:
		n.PlanErr = err
		n.Config = json.RawMessage("null")
		n.KeyConfig = n.Config
	case err != nil:
		return nil, fmt.Errorf("planning stage %s: %w", st.Kind(), err)
	default:
		b, err := canonicalJSON(cfg)
		if err != nil {
			return nil, fmt.Errorf("planning stage %s: encoding config: %w", st.Kind(), err)
		}
		n.Config, n.KeyConfig, n.config = b, b, cfg
		if k, ok := cfg.(Keyer); ok {
			if n.KeyConfig, err = canonicalJSON(k.CacheKey()); err != nil {
				return nil, fmt.Errorf("planning stage %s: encoding cache key config: %w", st.Kind(), err)
			}
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "kind=%s\nversion=%s\nconfig=%s\n", n.Kind, st.Version(), n.Config)
	if n.PlanErr != nil {
		fmt.Fprintf(h, "unresolved=%p\n", n) // never shared
	}
	for _, d := range n.Deps {
		fmt.Fprintf(h, "dep=%s:%s\n", d.Kind, d.identity)
	}
	n.identity = hex.EncodeToString(h.Sum(nil))
	n.ID = n.identity[:16]
	return n, nil
}

// canonicalJSON encodes v as compact JSON with object keys sorted at every
// level (struct fields keep no order dependence on declaration), so the
// encoding is a function of the value alone.
func canonicalJSON(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&generic); err != nil {
		return nil, err
	}
	// encoding/json sorts map keys; numbers stay as written.
	return json.Marshal(generic)
}

// Key computes a node's cache key from its config and the digests of the
// artifacts it consumes ("kind/name" -> digest).
func (n *Node) Key(inputs map[string]string) string {
	h := sha256.New()
	kc := n.KeyConfig
	if kc == nil {
		kc = n.Config
	}
	fmt.Fprintf(h, "cfs-compose stage cache key v1\nkind=%s\nversion=%s\nconfig=%s\n", n.Kind, n.Stage.Version(), kc)
	names := make([]string, 0, len(inputs))
	for k := range inputs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(h, "input %s=%s\n", k, inputs[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
