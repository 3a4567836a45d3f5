// Package compose signs and verifies whole compose directories: it knows
// which published files of a compose are the artifacts of each target
// (from compose.json), signs the compose's SHA256SUMS, checks a compose end
// to end ([Compose.Verify]) and drives the offline signing hand-off of
// package [github.com/cfs-compose/cfs-compose/signing/handoff] over a
// compose ([Compose.Request], [Compose.Apply], [Compose.AdoptSignedUKIs]).
//
// The artifacts of a target are the published outputs named in
// docs/stages.md: composefs/image (the composefs image), uki/uki (the UKI),
// disk/raw and disk/qcow2 (the disk images).
//
// # Security
//
// compose.json is not signed: it is only used to find the artifacts and
// the keys' file names. Everything a verification trusts is checked against
// SHA256SUMS, whose own signature is checked with a key the caller gives.
// Disk images are read without mounting them (GPT and FAT parsers that
// bound every read, and debugfs for ext4).
package compose

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing"
)

// Stage outputs that are a target's artifacts (docs/stages.md).
const (
	kindComposefs = "composefs"
	kindUKI       = "uki"
	kindDisk      = "disk"
)

// ErrLayout means compose.json does not describe the compose's files the
// way this package expects.
var ErrLayout = errors.New("compose: unexpected compose layout")

// Target is one variant/arch of a compose and the compose-relative,
// slash-separated paths of its published artifacts ("" when absent).
type Target struct {
	pipeline.Target
	Composefs string // the composefs image (composefs/image)
	UKI       string // the UKI (uki/uki)
	Raw       string // the raw disk image (disk/raw)
	Qcow2     string // the qcow2 disk image (disk/qcow2)
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
	Record  *pipeline.ComposeRecord
	Targets []Target
	// Signing is what the build recorded about its keys
	// (compose.json extra["signing"]); nil when it recorded nothing.
	Signing *Record
}

// Open reads the compose.json of the compose directory dir and locates
// each target's artifacts.
func Open(dir string) (*Compose, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening compose: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("opening compose %s: not a directory", dir)
	}
	rec, err := pipeline.LoadComposeRecord(filepath.Join(dir, "compose.json"))
	if err != nil {
		return nil, err
	}
	c := &Compose{Dir: dir, Record: rec}
	if raw, ok := rec.Extra[ExtraKey]; ok {
		var r Record
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("%w: compose.json extra.%s: %w", ErrLayout, ExtraKey, err)
		}
		c.Signing = &r
	}
	byID := map[string]*pipeline.StageRecord{}
	for i := range rec.Stages {
		byID[rec.Stages[i].ID] = &rec.Stages[i]
	}
	for _, tr := range rec.Targets {
		t := Target{Target: tr.Target}
		find := func(kind, name string) (string, *pipeline.StageRecord, error) {
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
			sub := o.Publish.Dir
			if sub == "" {
				sub = "images"
			}
			p := path.Join(tr.Name, tr.Arch, sub, o.Publish.Filename)
			if o.Publish.Filename == "" || path.Dir(p) != path.Join(tr.Name, tr.Arch, sub) {
				return "", nil, fmt.Errorf("%w: target %s: %s/%s has a bad file name %q", ErrLayout, tr.Target, kind, name, o.Publish.Filename)
			}
			return p, sr, nil
		}
		var ukiStage *pipeline.StageRecord
		var errs []error
		var err error
		t.Composefs, _, err = find(kindComposefs, "image")
		errs = append(errs, err)
		t.UKI, ukiStage, err = find(kindUKI, "uki")
		errs = append(errs, err)
		t.Raw, _, err = find(kindDisk, "raw")
		errs = append(errs, err)
		t.Qcow2, _, err = find(kindDisk, "qcow2")
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
