package testbed

import (
	"encoding/json"
	"fmt"
)

// Result is the closed set of check outcomes.
type Result int

// Check outcomes. The zero value is Pass: a check that reports no problem
// passed.
const (
	Pass Result = iota
	Fail
	Skip
	Warn
)

var resultNames = [...]string{Pass: "PASS", Fail: "FAIL", Skip: "SKIP", Warn: "WARN"}

// String returns PASS, FAIL, SKIP or WARN.
func (r Result) String() string {
	if r >= 0 && int(r) < len(resultNames) {
		return resultNames[r]
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

// MarshalJSON encodes the result as its name.
func (r Result) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

// UnmarshalJSON decodes a result name.
func (r *Result) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for i, n := range resultNames {
		if n == s {
			*r = Result(i)
			return nil
		}
	}
	return fmt.Errorf("testbed: unknown result %q", s)
}

// worse returns the more severe of two results (Fail > Warn > Pass > Skip
// for aggregation: a suite with one failure failed; a suite of only skips
// skipped).
func worse(a, b Result) Result {
	rank := map[Result]int{Skip: 0, Pass: 1, Warn: 2, Fail: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}
