// Package composedir works on a finished compose directory as a whole: it
// finds each target's artifacts from compose.json ([Open]), checks the
// compose end to end ([Compose.Verify]), signs its SHA256SUMS ([SignSums])
// and drives the offline signing hand-off of package
// [github.com/cfs-compose/cfs-compose/signing/handoff] over it
// ([Compose.Request], [Compose.Apply], [Compose.AdoptSignedUKIs]).
//
// It sits with package artifacts, which owns the compose layout and
// compose.json ([artifacts.ComposeRecord]), and above package signing,
// whose signers and verifiers it applies to a compose; package signing
// itself knows nothing of composes or the pipeline.
//
// # Which files are artifacts
//
// A target's artifacts are the published outputs of four stage outputs
// (docs/stages.md): the composefs image, the UKI, the raw and the qcow2
// disk image. This package lies below the stages and does not spell their
// kind or output names: the caller names them in [Outputs] (cmd/cfs-compose
// builds it from package stages/contract), and [Open] looks them up in the
// stage records compose.json holds.
//
// # Security
//
// compose.json is not signed: it is only used to find the artifacts and
// the keys' file names. Everything a verification trusts is checked against
// SHA256SUMS, whose own signature is checked with a key the caller gives.
// Disk images are read without mounting them (GPT and FAT parsers that
// bound every read, and debugfs for ext4).
package composedir

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/signing"
)

// OutputRef names one stage output in compose.json: the stage kind and
// the output's name.
type OutputRef struct {
	Kind string
	Name string
}

// Outputs names the stage outputs whose published files are a target's
// artifacts. An empty OutputRef means the compose has no such artifact.
type Outputs struct {
	Composefs OutputRef // the composefs image
	UKI       OutputRef // the Unified Kernel Image
	Raw       OutputRef // the raw disk image
	Qcow2     OutputRef // the qcow2 disk image
}

// ErrLayout means compose.json does not describe the compose's files the
// way this package expects.
var ErrLayout = errors.New("composedir: unexpected compose layout")

// Target is one variant/arch of a compose and the compose-relative,
// slash-separated paths of its published artifacts ("" when absent).
type Target struct {
	artifacts.Target
	Composefs string // the composefs image ([Outputs].Composefs)
	UKI       string // the UKI ([Outputs].UKI)
	Raw       string // the raw disk image ([Outputs].Raw)
	Qcow2     string // the qcow2 disk image ([Outputs].Qcow2)
	// UKIKey is the cache key of the uki stage that made UKI.
	UKIKey string
}

// Artifacts returns the target's artifact paths, in signing order.
func (t *Target) Artifacts() []string {
	var out []string
	for _, p := range []string{t.Composefs, t.UKI, t.Raw, t.Qcow2} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Compose is an opened compose directory.
type Compose struct {
	Dir     string
	Record  *artifacts.ComposeRecord
	Targets []Target
	// Outputs are the stage outputs Open looked the artifacts up by.
	Outputs Outputs
	// Signing is what the build recorded about its keys
	// (compose.json extra["signing"]); nil when it recorded nothing.
	Signing *Record
}

// Open reads the compose.json of the compose directory dir and locates
// each target's artifacts: the published files of the stage outputs outs
// names.
func Open(dir string, outs Outputs) (*Compose, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening compose: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("opening compose %s: not a directory", dir)
	}
	rec, err := artifacts.LoadComposeRecord(filepath.Join(dir, artifacts.ComposeRecordFile))
	if err != nil {
		return nil, err
	}
	c := &Compose{Dir: dir, Record: rec, Outputs: outs}
	if raw, ok := rec.Extra[ExtraKey]; ok {
		var r Record
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("%w: compose.json extra.%s: %w", ErrLayout, ExtraKey, err)
		}
		c.Signing = &r
	}
	byID := map[string]*artifacts.StageRecord{}
	for i := range rec.Stages {
		byID[rec.Stages[i].ID] = &rec.Stages[i]
	}
	for _, tr := range rec.Targets {
		t := Target{Target: tr.Target}
		find := func(ref OutputRef) (string, *artifacts.StageRecord, error) {
			kind, name := ref.Kind, ref.Name
			if kind == "" {
				return "", nil, nil
			}
			id, ok := tr.Stages[kind]
			if !ok {
				return "", nil, nil
			}
			sr, ok := byID[id]
			if !ok {
				return "", nil, fmt.Errorf("%w: target %s: stage %s %s is not in compose.json", ErrLayout, tr.Target, kind, id)
			}
			o, ok := sr.Outputs[name]
			if !ok || o.Publish == nil {
				return "", sr, nil
			}
			p, err := artifacts.PublishedPath(tr.Name, tr.Arch, o.Publish)
			if err != nil {
				return "", nil, fmt.Errorf("%w: target %s: %s/%s: %w", ErrLayout, tr.Target, kind, name, err)
			}
			return p, sr, nil
		}
		var ukiStage *artifacts.StageRecord
		var errs []error
		var err error
		t.Composefs, _, err = find(outs.Composefs)
		errs = append(errs, err)
		t.UKI, ukiStage, err = find(outs.UKI)
		errs = append(errs, err)
		t.Raw, _, err = find(outs.Raw)
		errs = append(errs, err)
		t.Qcow2, _, err = find(outs.Qcow2)
		errs = append(errs, err)
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		if ukiStage != nil {
			t.UKIKey = ukiStage.Key
		}
		c.Targets = append(c.Targets, t)
	}
	return c, nil
}

// Artifacts returns every target's artifacts, sorted, without duplicates
// (targets may share a stage's output only if they share its file name).
func (c *Compose) Artifacts() []string {
	set := map[string]bool{}
	for i := range c.Targets {
		for _, p := range c.Targets[i].Artifacts() {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// UKIs returns every target's UKI, sorted, without duplicates.
func (c *Compose) UKIs() []string {
	set := map[string]bool{}
	for i := range c.Targets {
		if p := c.Targets[i].UKI; p != "" {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// ExtraKey is the compose.json extra key of [Record].
const ExtraKey = "signing"

// Record is what a build records about its signing keys in compose.json
// (extra["signing"]), so that verify and the hand-off can default to them.
type Record struct {
	// Cosign lists the artifact signing keys, one entry per key.
	Cosign []KeyRef `json:"cosign,omitempty"`
	// SecureBoot lists the db certificates the UKIs were signed for.
	SecureBoot []CertRef `json:"secureboot,omitempty"`
	// Sums says whether SHA256SUMS was signed, and if not why.
	Sums SumsRecord `json:"sha256sums"`
}

// KeyRef names a cosign public key and the targets signed with it.
type KeyRef struct {
	Pub     string   `json:"pub"`  // absolute path of cosign.pub on the build host
	Hint    string   `json:"hint"` // the key hint
	Targets []string `json:"targets"`
}

// CertRef names a Secure Boot db certificate and the targets whose UKI it
// signs.
type CertRef struct {
	Cert        string   `json:"cert"`               // absolute path on the build host
	Fingerprint string   `json:"sha256_fingerprint"` // hex SHA-256 of the DER
	Subject     string   `json:"subject"`
	Targets     []string `json:"targets"`
}

// SumsRecord says whether SHA256SUMS carries signatures.
type SumsRecord struct {
	Signed bool     `json:"signed"`
	Hint   string   `json:"hint,omitempty"`   // the key that signed it
	Files  []string `json:"files,omitempty"`  // SHA256SUMS.sig, SHA256SUMS.sigstore.json
	Reason string   `json:"reason,omitempty"` // why it is not signed
}

// sumsPath is the checksum file's name in a compose.
const sumsPath = signing.SumsFile
