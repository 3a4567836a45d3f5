package artifacts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// RecordSchema is the schema version of stage records.
const RecordSchema = 1

// Record is the cache entry of one stage run: what went in (the cache key
// and its ingredients) and what came out.
type Record struct {
	Schema  int             `json:"schema"`
	Key     string          `json:"key"` // hex sha256 cache key
	Kind    string          `json:"kind"`
	Version string          `json:"version"`
	Config  json.RawMessage `json:"config"`
	// Inputs maps "kind/output" to the digest consumed.
	Inputs  map[string]Digest `json:"inputs,omitempty"`
	Outputs map[string]Output `json:"outputs"`
	// Meta holds stage-specific facts for compose.json (the resolved
	// image digest, the composefs digest, test results, ...).
	Meta map[string]json.RawMessage `json:"meta,omitempty"`
	// ObjectSets are blobs listing composefs object digests (one hex
	// fs-verity digest per line) that this record's outputs reference;
	// gc keeps those objects alive.
	ObjectSets   []Descriptor `json:"objectSets,omitempty"`
	Log          *Descriptor  `json:"log,omitempty"`
	Started      time.Time    `json:"started"`
	WallMillis   int64        `json:"wallMillis"`
	BytesWritten int64        `json:"bytesWritten"`
	Tool         string       `json:"tool"`
}

// Output is one artifact a stage produced.
type Output struct {
	Descriptor
	// Publish, when set, puts the artifact into the compose directory.
	Publish *Publish `json:"publish,omitempty"`
}

// Publish says where and how an output appears in a compose.
type Publish struct {
	Filename string `json:"filename"` // file name under <Variant>/<arch>/<Dir>/
	// Dir is the directory under <Variant>/<arch>/: "images" (the default)
	// or "tests" (boot test reports).
	Dir string `json:"dir,omitempty"`
	// Type and Format are productmd's image type and format ("raw",
	// "qcow2", ...); an empty Type keeps the file out of images.json.
	Type     string `json:"type,omitempty"`
	Format   string `json:"format,omitempty"`
	Bootable bool   `json:"bootable,omitempty"`
}

// Digests returns every blob or tree digest the record refers to.
func (r *Record) Digests() []Descriptor {
	var ds []Descriptor
	for _, o := range r.Outputs {
		ds = append(ds, o.Descriptor)
	}
	ds = append(ds, r.ObjectSets...)
	if r.Log != nil {
		ds = append(ds, *r.Log)
	}
	return ds
}

func (s *Store) recordPath(key string) string {
	if len(key) < 2 {
		key = "__" + key
	}
	return filepath.Join(s.root, "records", key[:2], key+".json")
}

// GetRecord returns the record for a cache key, or ErrNotFound. A record
// whose blobs are missing (for example after a manual deletion) is treated
// as absent. Reading a record marks it as used (for gc).
func (s *Store) GetRecord(key string) (*Record, error) {
	p := s.recordPath(key)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("record %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading record %s: %w", key, err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading record %s: %w", p, err)
	}
	if r.Key != key {
		return nil, fmt.Errorf("reading record %s: key mismatch (%s)", p, r.Key)
	}
	for _, d := range r.Digests() {
		info, err := os.Lstat(s.Path(d))
		if err != nil {
			return nil, fmt.Errorf("record %s: artifact %s missing: %w", key, d.Digest.Short(), ErrNotFound)
		}
		// A blob cut short (power loss before the final sync) is as good
		// as missing; trees are checked by `cache verify`.
		if !d.Tree && info.Size() != d.Size {
			return nil, fmt.Errorf("record %s: artifact %s has %d bytes, want %d: %w", key, d.Digest.Short(), info.Size(), d.Size, ErrNotFound)
		}
	}
	now := time.Now()
	_ = os.Chtimes(p, now, now) // last use; best effort (read-only stores still work)
	return &r, nil
}

// PutRecord stores a record atomically.
func (s *Store) PutRecord(r *Record) error {
	r.Schema = RecordSchema
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding record %s: %w", r.Key, err)
	}
	p := s.recordPath(r.Key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("storing record %s: %w", r.Key, err)
	}
	return s.writeAtomic(p, b)
}

// writeAtomic writes b to a temp file in the session directory and renames
// it to p.
func (s *Store) writeAtomic(p string, b []byte) error {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp", s.session), "rec-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return atomicfile.Publish(f.Name(), p)
}

// KeyLock is held while a stage with a given cache key runs, so that two
// processes never build the same entry at once.
type KeyLock struct{ l *fileLock }

// LockKey takes the exclusive lock for a cache key, waiting for another
// holder. waited reports whether it had to wait (the other holder has
// probably stored the record meanwhile: check again).
func (s *Store) LockKey(ctx context.Context, key string) (*KeyLock, bool, error) {
	l, waited, err := lock(ctx, filepath.Join(s.root, "locks", key+".lock"), true)
	if err != nil {
		return nil, waited, err
	}
	return &KeyLock{l}, waited, nil
}

// Unlock releases the key lock.
func (k *KeyLock) Unlock() error { return k.l.Unlock() }
