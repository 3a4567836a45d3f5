package testbed

import (
	"encoding/json"
	"fmt"
	"sync"
)

// JSONReporter collects the target reports and writes them as one JSON
// document ({"targets": [...]}) to a file on Close.
type JSONReporter struct {
	path    string
	mu      sync.Mutex
	targets []*TargetReport
}

// NewJSONReporter returns a reporter that writes path on Close.
func NewJSONReporter(path string) *JSONReporter { return &JSONReporter{path: path} }

// ReportCheck does nothing; checks are part of the target report.
func (j *JSONReporter) ReportCheck(string, CheckResult) {}

// ReportTarget records a target report.
func (j *JSONReporter) ReportTarget(r *TargetReport) {
	j.mu.Lock()
	j.targets = append(j.targets, r)
	j.mu.Unlock()
}

// Close writes the JSON file atomically.
func (j *JSONReporter) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, err := json.MarshalIndent(struct {
		Version int             `json:"version"`
		Targets []*TargetReport `json:"targets"`
	}{1, j.targets}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding JSON report: %w", err)
	}
	return writeFile(j.path, append(b, '\n'))
}

func jsonMarshalIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	return append(b, '\n'), nil
}
