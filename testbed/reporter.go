package testbed

import "errors"

// Reporter receives results as they are produced. Implementations must
// tolerate being called for several targets before Close.
type Reporter interface {
	// ReportCheck is called after each check of a target.
	ReportCheck(target string, r CheckResult)
	// ReportTarget is called once per target after all its checks.
	ReportTarget(r *TargetReport)
	// Close writes any output that is produced at the end (files).
	Close() error
}

// Reporters fans every call out to each reporter in order.
type Reporters []Reporter

// ReportCheck forwards to every reporter.
func (rs Reporters) ReportCheck(target string, r CheckResult) {
	for _, x := range rs {
		x.ReportCheck(target, r)
	}
}

// ReportTarget forwards to every reporter.
func (rs Reporters) ReportTarget(r *TargetReport) {
	for _, x := range rs {
		x.ReportTarget(r)
	}
}

// Close closes every reporter and returns their errors joined.
func (rs Reporters) Close() error {
	var errs []error
	for _, x := range rs {
		errs = append(errs, x.Close())
	}
	return errors.Join(errs...)
}
