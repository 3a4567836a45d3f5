package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// NodeState says whether a planned node is cached, as far as can be known
// before running anything: a node's key is computable once every upstream
// node is cached (its outputs' digests are then known).
type NodeState struct {
	Node   *Node
	Key    string // empty when not computable yet
	Cached bool
	Reason string // why it will run, for people
	// Outputs of the cached record.
	Outputs map[string]artifacts.Output
}

// State computes every node's cache state against a store (nil: no cache).
func (p *Plan) State(st *artifacts.Store) []NodeState {
	states := make([]NodeState, len(p.Nodes))
	by := map[*Node]*NodeState{}
	for i, n := range p.Nodes {
		s := &states[i]
		s.Node = n
		by[n] = s
		if n.PlanErr != nil {
			s.Reason = "unresolved: " + n.PlanErr.Error()
			continue
		}
		digests := map[string]string{}
		known := true
		for _, d := range n.Deps {
			ds := by[d]
			if !ds.Cached {
				known = false
				s.Reason = "input from " + d.Kind + " is not built yet"
				break
			}
			for name, o := range ds.Outputs {
				digests[d.Kind+"/"+name] = string(o.Digest)
			}
		}
		if !known {
			continue
		}
		s.Key = n.Key(digests)
		if st == nil {
			s.Reason = "no cache"
			continue
		}
		rec, err := st.GetRecord(s.Key)
		if err != nil {
			s.Reason = "not in the cache"
			continue
		}
		s.Cached, s.Outputs, s.Reason = true, rec.Outputs, "cached"
	}
	return states
}

// Change is how one (target, stage) differs from a previous compose.
type Change struct {
	Target  Target   `json:"target"`
	Kind    string   `json:"kind"`
	Change  string   `json:"change"`            // unchanged, rerun, new, removed
	Reasons []string `json:"reasons,omitempty"` // config fields, inputs or version that changed
	// Artifacts lists the published files this stage produced before and
	// that may change.
	Artifacts []string `json:"artifacts,omitempty"`
}

// Diff compares the plan with a previous compose record: which stages
// rerun, why, and which published artifacts may change.
func Diff(p *Plan, states []NodeState, old *artifacts.ComposeRecord) []Change {
	oldStage := map[string]*artifacts.StageRecord{}
	for i := range old.Stages {
		oldStage[old.Stages[i].ID] = &old.Stages[i]
	}
	oldByTarget := map[string]map[string]*artifacts.StageRecord{}
	for _, tr := range old.Targets {
		m := map[string]*artifacts.StageRecord{}
		for kind, id := range tr.Stages {
			if s := oldStage[id]; s != nil {
				m[kind] = s
			}
		}
		oldByTarget[tr.Target.String()] = m
	}
	stateOf := map[*Node]NodeState{}
	for _, s := range states {
		stateOf[s.Node] = s
	}
	var out []Change
	seen := map[string]bool{}
	for _, tn := range p.Targets {
		olds := oldByTarget[tn.Target.String()]
		changed := map[string]bool{}
		for _, n := range p.Nodes { // plan order: upstream first
			if tn.Nodes[n.Kind] != n {
				continue
			}
			seen[tn.Target.String()+"/"+n.Kind] = true
			c := Change{Target: tn.Target, Kind: n.Kind}
			o := olds[n.Kind]
			s := stateOf[n]
			switch {
			case o == nil:
				c.Change = "new"
			case s.Key != "" && s.Key == o.Key:
				c.Change = "unchanged"
			default:
				c.Change = "rerun"
				if o.Version != n.Stage.Version() {
					c.Reasons = append(c.Reasons, fmt.Sprintf("implementation version %s -> %s", o.Version, n.Stage.Version()))
				}
				c.Reasons = append(c.Reasons, configDiff(o.Config, n.Config)...)
				for _, d := range n.Deps {
					if changed[d.Kind] {
						c.Reasons = append(c.Reasons, "input from "+d.Kind+" may change ("+d.Kind+" reruns)")
					}
				}
				if len(c.Reasons) == 0 {
					c.Reasons = append(c.Reasons, "inputs differ from the previous compose")
				}
				c.Artifacts = publishedNames(o)
			}
			if c.Change != "unchanged" {
				changed[n.Kind] = true
			}
			out = append(out, c)
		}
	}
	for _, tr := range old.Targets {
		for kind := range tr.Stages {
			if !seen[tr.Target.String()+"/"+kind] {
				out = append(out, Change{Target: tr.Target, Kind: kind, Change: "removed", Artifacts: publishedNames(oldByTarget[tr.Target.String()][kind])})
			}
		}
	}
	return out
}

func publishedNames(s *artifacts.StageRecord) []string {
	if s == nil {
		return nil
	}
	var names []string
	for _, o := range s.Outputs {
		if o.Publish != nil {
			names = append(names, o.Publish.Filename)
		}
	}
	sort.Strings(names)
	return names
}

// configDiff lists the leaf paths whose values differ between two JSON
// configs, as "path: old -> new".
func configDiff(a, b json.RawMessage) []string {
	fa, fb := map[string]string{}, map[string]string{}
	flatten("", decodeAny(a), fa)
	flatten("", decodeAny(b), fb)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		va, oka := fa[k]
		vb, okb := fb[k]
		switch {
		case !oka:
			out = append(out, fmt.Sprintf("config %s: (unset) -> %s", k, vb))
		case !okb:
			out = append(out, fmt.Sprintf("config %s: %s -> (unset)", k, va))
		case va != vb:
			out = append(out, fmt.Sprintf("config %s: %s -> %s", k, va, vb))
		}
	}
	sort.Strings(out)
	return out
}

func decodeAny(b json.RawMessage) any {
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return nil
	}
	return v
}

func flatten(prefix string, v any, into map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, e, into)
		}
	default:
		b, _ := json.Marshal(x)
		if prefix == "" {
			prefix = "(config)"
		}
		into[prefix] = strings.TrimSpace(string(b))
	}
}
