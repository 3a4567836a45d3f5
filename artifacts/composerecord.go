package artifacts

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ComposeRecordFile is the name of the compose record in a compose
// directory.
const ComposeRecordFile = "compose.json"

// ComposeSchema is the schema version of compose.json.
const ComposeSchema = 1

// ComposeRecord is compose.json: the complete record of one compose. The
// pipeline fills it while it publishes a compose; the compose-level tools
// (verification, signing, plan --against) read it back with
// [LoadComposeRecord]. It lives here, beside the compose layout, so that a
// reader of a compose needs this package only.
type ComposeRecord struct {
	Schema     int         `json:"schema"`
	ID         string      `json:"id"`
	Status     string      `json:"status"` // StatusFinished, StatusIncomplete or StatusDoomed
	Tool       string      `json:"tool"`
	Started    time.Time   `json:"started"`
	Finished   time.Time   `json:"finished"`
	WallMillis int64       `json:"wallMillis"`
	Compose    ComposeName `json:"compose"`
	// Manifests maps each manifest file name to its sha256 digest.
	Manifests map[string]Digest `json:"manifests"`
	// Variables holds the effective variable values.
	Variables map[string]string `json:"variables,omitempty"`
	Targets   []TargetRecord    `json:"targets"`
	Stages    []StageRecord     `json:"stages"`
	// Artifacts maps each published file (relative path) to its digest.
	Artifacts map[string]Digest `json:"artifacts"`
	// Extra holds compose-level facts added by finalizers (for example
	// the SHA256SUMS signature).
	Extra map[string]json.RawMessage `json:"extra,omitempty"`
	Error string                     `json:"error,omitempty"`
	// Partial marks a compose unit: a part of a compose holding some of
	// its targets, which `cfs-compose compose merge` combines with the
	// other units (same ID) into the compose (docs/scale-out.md).
	Partial *PartialRecord `json:"partial,omitempty"`

	// Dir is the compose directory (not serialized).
	Dir string `json:"-"`
}

// PartialRecord is what a compose unit records for the merge: the pinned
// compose date and respin that make its ID (every unit has the same).
type PartialRecord struct {
	Date   time.Time `json:"date"`
	Respin int       `json:"respin"`
}

// ComposeName is the manifest's compose block as compose.json records it.
type ComposeName struct {
	Product string `json:"product"` // e.g. "Fedora"
	Release string `json:"release"` // e.g. "41"
	Type    string `json:"type"`    // production, nightly, test or ci
}

// Target is one variant built for one arch: the unit a compose publishes
// under <Name>/<Arch>/.
type Target struct {
	Variant string `json:"variant"` // manifest label, e.g. "coreos"
	Name    string `json:"name"`    // productmd variant uid, e.g. "CoreOS"
	Arch    string `json:"arch"`
}

// String returns "variant/arch".
func (t Target) String() string { return t.Variant + "/" + t.Arch }

// TargetRecord lists the stage instances one target used.
type TargetRecord struct {
	Target
	Stages map[string]string `json:"stages"` // kind -> stage id
}

// StageRecord is one stage instance in compose.json.
type StageRecord struct {
	ID      string   `json:"id"`
	Kind    string   `json:"kind"`
	Version string   `json:"version"`
	Targets []string `json:"targets"`
	Key     string   `json:"key,omitempty"`
	// Status is the stage's outcome as the pipeline names it
	// ([github.com/cfs-compose/cfs-compose/pipeline.Status]).
	Status       string                     `json:"status"`
	CacheHit     bool                       `json:"cacheHit"`
	WallMillis   int64                      `json:"wallMillis"`
	BytesWritten int64                      `json:"bytesWritten"`
	Config       json.RawMessage            `json:"config"`
	Inputs       map[string]Digest          `json:"inputs,omitempty"`
	Outputs      map[string]Output          `json:"outputs,omitempty"`
	Meta         map[string]json.RawMessage `json:"meta,omitempty"`
	Log          string                     `json:"log,omitempty"` // relative to the compose directory
	Error        string                     `json:"error,omitempty"`
}

// LoadComposeRecord reads a compose.json (a compose directory or the file).
func LoadComposeRecord(path string) (*ComposeRecord, error) {
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		path = filepath.Join(path, ComposeRecordFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading compose record: %w", err)
	}
	var r ComposeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading compose record %s: %w", path, err)
	}
	r.Dir = filepath.Dir(path)
	return &r, nil
}
