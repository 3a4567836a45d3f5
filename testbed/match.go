package testbed

import (
	"fmt"
	"path"
	"strings"
)

// Selected is a check chosen for a target, with the reason it will be
// skipped without running (empty when it runs).
type Selected struct {
	Check      Check
	SkipReason string
}

// Select returns the checks of r that match patterns (shell globs on the
// name, or "tag:NAME" for a tag; none means all), each with a skip reason
// when the target's features do not satisfy its Requires/Conflicts. It is
// an error when a pattern matches no check, so a typo in a manifest's
// check list is caught.
func Select(r *Registry, patterns []string, features []Feature) ([]Selected, error) {
	has := map[Feature]bool{}
	for _, f := range features {
		has[f] = true
	}
	all := r.Checks()
	used := make([]bool, len(patterns))
	var out []Selected
	for _, c := range all {
		if len(patterns) > 0 {
			matched := false
			for i, p := range patterns {
				ok, err := matches(p, c)
				if err != nil {
					return nil, err
				}
				if ok {
					matched, used[i] = true, true
				}
			}
			if !matched {
				continue
			}
		}
		s := Selected{Check: c}
		for _, f := range c.Requires {
			if !has[f] {
				s.SkipReason = fmt.Sprintf("target lacks feature %q", f)
				break
			}
		}
		for _, f := range c.Conflicts {
			if s.SkipReason == "" && has[f] {
				s.SkipReason = fmt.Sprintf("not applicable to a target with feature %q", f)
			}
		}
		out = append(out, s)
	}
	for i, p := range patterns {
		if !used[i] {
			return nil, fmt.Errorf("testbed: check pattern %q matches no registered check", p)
		}
	}
	return out, nil
}

func matches(pattern string, c Check) (bool, error) {
	if tag, ok := strings.CutPrefix(pattern, "tag:"); ok {
		for _, t := range c.Tags {
			if t == tag {
				return true, nil
			}
		}
		return false, nil
	}
	ok, err := path.Match(pattern, c.Name)
	if err != nil {
		return false, fmt.Errorf("testbed: check pattern %q: %w", pattern, err)
	}
	return ok, nil
}
