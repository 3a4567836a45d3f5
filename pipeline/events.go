package pipeline

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Event types.
const (
	EventPlan     = "plan"             // execution starts; Total = number of stages
	EventStart    = "stage-started"    // a stage runs (not sent for cache hits)
	EventProgress = "stage-progress"   // Done/Total of a running stage
	EventFinish   = "stage-finished"   // Status: cached, ran, failed, cancelled
	EventCompose  = "compose-finished" // the compose directory is written; Status is its STATUS
)

// Event is one progress event. With --progress=json each is printed as
// one JSON line, for pipelines and dashboards.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Stage   string    `json:"stage,omitempty"` // node id, stable within a plan
	Kind    string    `json:"kind,omitempty"`
	Targets []string  `json:"targets,omitempty"` // "variant/arch"
	Key     string    `json:"key,omitempty"`
	Status  string    `json:"status,omitempty"`
	Cached  bool      `json:"cached,omitempty"`
	Done    int64     `json:"done,omitempty"`
	Total   int64     `json:"total,omitempty"`
	Bytes   int64     `json:"bytes,omitempty"`
	Error   string    `json:"error,omitempty"`
	Compose string    `json:"compose,omitempty"` // compose directory (compose-finished)
}

// JSONEvents returns an event sink writing one JSON object per line to w.
func JSONEvents(w io.Writer) func(Event) {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(ev) // a broken progress pipe must not fail the compose
	}
}
