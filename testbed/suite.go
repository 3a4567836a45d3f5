package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// Target is one boot to test: the machine to start and what the image is
// expected to be (its features select and parameterise checks).
type Target struct {
	Name     string    // e.g. "x86_64-composefs"; names the output subdirectory
	Machine  Machine   // what to boot
	Features []Feature // what to expect
	// ComposefsDigest is the composefs image digest the boot must mount
	// (for FeatureComposefs); empty means only the agent's comparison with
	// the command line is checked.
	ComposefsDigest string
	// ComposefsVerity is the overlayfs verity mode the composefs root must
	// be mounted with: "none", "enable" (verity=on) or "require"; empty
	// means it is not checked.
	ComposefsVerity string
	// OstreeDeployment is the deployment the boot must come up in (for
	// FeatureOstree), as `ostree admin status` names it: "STATEROOT
	// CHECKSUM.SERIAL"; empty means only the guest's own check runs.
	OstreeDeployment string
}

// Has reports whether the target has feature f.
func (t *Target) Has(f Feature) bool { return slices.Contains(t.Features, f) }

// CheckResult is the outcome of one host check.
type CheckResult struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	Tags        []string      `json:"tags,omitempty"`
	Result      Result        `json:"result"`
	Duration    time.Duration `json:"duration_ns"`
	Output      []string      `json:"output,omitempty"`
}

// TargetReport is everything learned from testing one target.
type TargetReport struct {
	Target   string        `json:"target"`
	Features []Feature     `json:"features"`
	Result   Result        `json:"result"` // the worst check result
	Boot     *BootResult   `json:"boot"`
	Checks   []CheckResult `json:"checks"`
}

// Suite runs checks against targets and reports them.
type Suite struct {
	Registry  *Registry // nil means DefaultRegistry
	Checks    []string  // check name globs or "tag:T"; empty means all
	Reporters Reporters // where results go (may be empty)
	OutputDir string    // each target gets OutputDir/<target name>
}

// Run boots the target (twice with [FeatureReboot], see [BootTwice]), runs the selected checks against the boot, reports
// them and returns the report. The error is for harness problems (no QEMU,
// no firmware, an unknown check pattern); guest failures are results.
func (s *Suite) Run(ctx context.Context, t Target) (*TargetReport, error) {
	sel, err := s.selectChecks(t)
	if err != nil {
		return nil, err
	}
	if s.OutputDir == "" {
		return nil, fmt.Errorf("testbed: suite has no output directory")
	}
	boot := Boot
	if t.Has(FeatureReboot) {
		boot = BootTwice
	}
	b, err := boot(ctx, t.Machine, filepath.Join(s.OutputDir, t.Name))
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.Name, err)
	}
	return s.check(ctx, t, b, sel), nil
}

// CheckBoot runs the selected checks against an existing boot result (for
// example one recorded earlier or made from a fake console) and reports
// them.
func (s *Suite) CheckBoot(ctx context.Context, t Target, b *BootResult) (*TargetReport, error) {
	sel, err := s.selectChecks(t)
	if err != nil {
		return nil, err
	}
	return s.check(ctx, t, b, sel), nil
}

func (s *Suite) selectChecks(t Target) ([]Selected, error) {
	reg := s.Registry
	if reg == nil {
		reg = DefaultRegistry
	}
	if t.Name == "" {
		return nil, fmt.Errorf("testbed: target without a name")
	}
	return Select(reg, s.Checks, t.Features)
}

func (s *Suite) check(ctx context.Context, t Target, b *BootResult, sel []Selected) *TargetReport {
	rep := &TargetReport{Target: t.Name, Features: t.Features, Boot: b, Result: Skip}
	for _, c := range sel {
		var r CheckResult
		if c.SkipReason != "" {
			r = CheckResult{Name: c.Check.Name, Description: c.Check.Description, Tags: c.Check.Tags, Result: Skip, Output: []string{c.SkipReason}}
		} else {
			r = runCheck(ctx, &t, b, c.Check)
		}
		rep.Checks = append(rep.Checks, r)
		rep.Result = worse(rep.Result, r.Result)
		s.Reporters.ReportCheck(t.Name, r)
	}
	s.Reporters.ReportTarget(rep)
	return rep
}

// runCheck runs one check in its own goroutine (so Fatalf/Skip can
// Goexit) with its timeout, and turns a panic into a failure.
func runCheck(ctx context.Context, t *Target, b *BootResult, c Check) CheckResult {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := &H{ctx: cctx, name: c.Name, target: t, boot: b}
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				h.Errorf("check panicked: %v", r)
			}
		}()
		c.Run(h)
	}()
	select {
	case <-done:
	case <-cctx.Done():
		h.Errorf("check did not finish within %s", timeout)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return CheckResult{Name: c.Name, Description: c.Description, Tags: c.Tags, Result: h.result,
		Duration: time.Since(start), Output: append([]string(nil), h.logs...)}
}

// writeFile writes a report file atomically, creating its directory (no
// fsync: reports are rewritten on the next run).
func writeFile(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFileWith(p, b, 0o644, &atomicfile.Options{NoSync: true})
}
