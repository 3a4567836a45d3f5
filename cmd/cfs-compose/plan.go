package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
)

type planOptions struct {
	variants []string
	arches   []string
	diff     bool
	against  string
	format   string
	offline  bool
}

func newPlanCmd(g *globals) *cobra.Command {
	o := &planOptions{}
	c := &cobra.Command{
		Use:   "plan [MANIFESTS_DIR]",
		Short: "Show the stage DAG and what is cached, or what a manifest edit changes",
		Long: `plan resolves the manifests into the stage DAG (per variant and arch,
stages shared where identical) and shows, for each stage, whether it is
cached. Nothing is built.

--diff compares with the last compose's record (or --against COMPOSE_DIR):
which stages rerun and why (config fields, inputs, implementation version)
and which published artifacts may change -- for example after
'cfs-compose set ... composefs.enabled=false'.`,
		Args: manifestsArg(g),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.format != "text" && o.format != "json" {
				return usageError{fmt.Errorf("invalid --format %q (want text or json)", o.format)}
			}
			m, err := g.manifestSet(cmd)
			if err != nil {
				return err
			}
			st, err := g.openStore(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer st.Close()
			p, err := pipeline.Resolve(cmd.Context(), m, g.stages(), &pipeline.ResolveOptions{
				Variants: o.variants, Arches: o.arches, Offline: o.offline, Lenient: true, Log: g.log,
			})
			if err != nil {
				return err
			}
			states := p.State(st)
			if !o.diff {
				if o.format == "json" {
					if err := writeJSON(g.stdout, planJSON(p, states)); err != nil {
						return err
					}
				} else {
					printPlan(g.stdout, p, states)
				}
				return unplanned(p)
			}
			old, err := previousCompose(st, o.against)
			if err != nil {
				return err
			}
			changes := pipeline.Diff(p, states, old)
			if o.format == "json" {
				return writeJSON(g.stdout, map[string]any{"against": old.ID, "changes": changes})
			}
			printDiff(g.stdout, old.ID, changes)
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&o.variants, "variant", nil, "plan only these variants (repeatable)")
	f.StringSliceVar(&o.arches, "arch", nil, "plan only these arches (repeatable)")
	f.BoolVar(&o.diff, "diff", false, "compare with the last compose's record")
	f.StringVar(&o.against, "against", "", "compose directory or compose.json to diff against (default: the last compose in the cache)")
	f.StringVar(&o.format, "format", "text", "output format: text or json")
	f.BoolVar(&o.offline, "offline", false, "no network: image tags that are not pinned show as unresolved")
	return c
}

func previousCompose(st *artifacts.Store, against string) (*artifacts.ComposeRecord, error) {
	if against != "" {
		return artifacts.LoadComposeRecord(against)
	}
	refs, err := st.ComposeRefs()
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		if r.Record == "" {
			continue
		}
		if rec, err := artifacts.LoadComposeRecord(r.Record); err == nil {
			return rec, nil
		}
	}
	return nil, fmt.Errorf("no previous compose recorded in %s: build once, or pass --against COMPOSE_DIR", st.Root())
}

type planNode struct {
	ID      string          `json:"id"`
	Kind    string          `json:"kind"`
	Targets []string        `json:"targets"`
	Deps    []string        `json:"deps"`
	Cached  bool            `json:"cached"`
	Key     string          `json:"key,omitempty"`
	Reason  string          `json:"reason"`
	Config  json.RawMessage `json:"config"`
}

func planJSON(p *pipeline.Plan, states []pipeline.NodeState) any {
	nodes := make([]planNode, 0, len(states))
	for _, s := range states {
		n := planNode{ID: s.Node.ID, Kind: s.Node.Kind, Cached: s.Cached, Key: s.Key, Reason: s.Reason, Config: s.Node.Config, Deps: []string{}}
		for _, t := range s.Node.Targets {
			n.Targets = append(n.Targets, t.String())
		}
		for _, d := range s.Node.Deps {
			n.Deps = append(n.Deps, d.ID)
		}
		nodes = append(nodes, n)
	}
	var targets []map[string]any
	for _, tn := range p.Targets {
		st := map[string]string{}
		for k, n := range tn.Nodes {
			st[k] = n.ID
		}
		targets = append(targets, map[string]any{"variant": tn.Target.Variant, "name": tn.Target.Name, "arch": tn.Target.Arch, "stages": st})
	}
	return map[string]any{"compose": p.Compose, "targets": targets, "stages": nodes}
}

func printPlan(w io.Writer, p *pipeline.Plan, states []pipeline.NodeState) {
	stateOf := map[*pipeline.Node]pipeline.NodeState{}
	cached := 0
	for _, s := range states {
		stateOf[s.Node] = s
		if s.Cached {
			cached++
		}
	}
	fmt.Fprintf(w, "Plan: %d stages (%d cached) for %d variant/arch targets\n", len(states), cached, len(p.Targets))
	printed := map[*pipeline.Node]bool{}
	for _, tn := range p.Targets {
		fmt.Fprintf(w, "\n%s (%s)\n", tn.Target, tn.Target.Name)
		for _, s := range states { // plan order
			n := s.Node
			if tn.Nodes[n.Kind] != n {
				continue
			}
			status := "run   "
			if s.Cached {
				status = "cached"
			}
			var deps []string
			for _, d := range n.Deps {
				deps = append(deps, d.Kind)
			}
			line := fmt.Sprintf("  %-10s %s  %s", n.Kind, status, n.ID)
			if len(deps) > 0 {
				line += "  <- " + strings.Join(deps, ", ")
			}
			if printed[n] {
				line += "  (shared, see above)"
			} else if !s.Cached {
				line += "  [" + s.Reason + "]"
			}
			if len(n.Targets) > 1 && !printed[n] {
				var others []string
				for _, t := range n.Targets {
					if t != tn.Target {
						others = append(others, t.String())
					}
				}
				line += "  (shared with " + strings.Join(others, ", ") + ")"
			}
			printed[n] = true
			fmt.Fprintln(w, line)
		}
	}
}

func printDiff(w io.Writer, against string, changes []pipeline.Change) {
	n := 0
	for _, c := range changes {
		if c.Change != "unchanged" {
			n++
		}
	}
	fmt.Fprintf(w, "Compared with %s: %d of %d stages change\n", against, n, len(changes))
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].Target.String() < changes[j].Target.String() })
	last := ""
	for _, c := range changes {
		if c.Target.String() != last {
			last = c.Target.String()
			fmt.Fprintf(w, "\n%s\n", last)
		}
		fmt.Fprintf(w, "  %-10s %s\n", c.Kind, c.Change)
		for _, r := range c.Reasons {
			fmt.Fprintf(w, "      %s\n", r)
		}
		if len(c.Artifacts) > 0 {
			fmt.Fprintf(w, "      artifacts that may change: %s\n", strings.Join(c.Artifacts, ", "))
		}
	}
}

// unplanned is the error for a plan with stages that could not be
// resolved: one line per target, naming the first stage that failed (the
// stages after it cannot be planned either).
func unplanned(p *pipeline.Plan) error {
	var errs []error
	for _, tn := range p.Targets {
		for _, n := range p.Nodes {
			if n.PlanErr != nil && tn.Nodes[n.Kind] == n {
				errs = append(errs, fmt.Errorf("%s cannot be planned: stage %s: %w", tn.Target, n.Kind, n.PlanErr))
				break
			}
		}
	}
	return errors.Join(errs...)
}
