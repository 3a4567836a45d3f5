package artifacts

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/filehash"
)

// ComposeRef records which cache entries one compose used; gc --keep keeps
// the entries of the most recent composes.
type ComposeRef struct {
	ID     string    `json:"id"`
	Time   time.Time `json:"time"`
	Status string    `json:"status"`
	Keys   []string  `json:"keys"`
	// Record is the path of the compose's compose.json, for plan --diff.
	Record string `json:"record,omitempty"`
}

// AddComposeRef stores a compose reference.
func (s *Store) AddComposeRef(ref ComposeRef) error {
	b, err := json.MarshalIndent(ref, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding compose reference: %w", err)
	}
	return s.writeAtomic(filepath.Join(s.root, "composes", ref.ID+".json"), b)
}

// ComposeRefs returns the stored compose references, newest first.
func (s *Store) ComposeRefs() ([]ComposeRef, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, "composes"))
	if err != nil {
		return nil, fmt.Errorf("listing composes: %w", err)
	}
	var refs []ComposeRef
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.root, "composes", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading compose reference %s: %w", e.Name(), err)
		}
		var r ComposeRef
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("reading compose reference %s: %w", e.Name(), err)
		}
		refs = append(refs, r)
	}
	sort.Slice(refs, func(i, j int) bool {
		if !refs[i].Time.Equal(refs[j].Time) {
			return refs[i].Time.After(refs[j].Time)
		}
		return refs[i].ID > refs[j].ID
	})
	return refs, nil
}

// Entry describes one cache entry (a stage record) for `cache ls`.
type Entry struct {
	Key      string    `json:"key"`
	Kind     string    `json:"kind"`
	Size     int64     `json:"size"` // bytes of the blobs and trees it references
	LastUsed time.Time `json:"lastUsed"`
	Started  time.Time `json:"started"`
	record   *Record
}

// List returns every stage record, most recently used first.
func (s *Store) List() ([]Entry, error) {
	var out []Entry
	root := filepath.Join(s.root, "records")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("record %s: %w", p, err)
		}
		e := Entry{Key: r.Key, Kind: r.Kind, LastUsed: info.ModTime(), Started: r.Started, record: &r}
		for _, d := range r.Digests() {
			e.Size += d.Size
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing cache: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastUsed.Equal(out[j].LastUsed) {
			return out[i].LastUsed.After(out[j].LastUsed)
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}

// GCOptions selects what gc keeps. With both zero, gc only removes
// unreferenced blobs, trees and objects.
type GCOptions struct {
	// Keep keeps the records used by the Keep most recent composes and
	// removes the others (0: no record is removed for this reason).
	Keep int
	// MaxSize removes least-recently-used records until the referenced
	// bytes fit (0: no limit).
	MaxSize int64
	// DryRun reports without deleting.
	DryRun bool
}

// GCResult reports what gc removed.
type GCResult struct {
	Records, Blobs, Trees, Objects int
	Bytes                          int64
}

// GC removes cache entries as opts says, then everything no remaining
// record references. Open the store exclusively for GC.
func (s *Store) GC(opts GCOptions) (GCResult, error) {
	var res GCResult
	ents, err := s.List()
	if err != nil {
		return res, err
	}
	refs, err := s.ComposeRefs()
	if err != nil {
		return res, err
	}
	keep := map[string]bool{}
	remove := map[string]bool{}
	if opts.Keep > 0 {
		for i, r := range refs {
			if i < opts.Keep {
				for _, k := range r.Keys {
					keep[k] = true
				}
			}
		}
		for _, e := range ents {
			if !keep[e.Key] {
				remove[e.Key] = true
			}
		}
	}
	if opts.MaxSize > 0 {
		var total int64
		for _, e := range ents {
			if !remove[e.Key] {
				total += e.Size
			}
		}
		for i := len(ents) - 1; i >= 0 && total > opts.MaxSize; i-- { // least recently used first
			if !remove[ents[i].Key] {
				remove[ents[i].Key] = true
				total -= ents[i].Size
			}
		}
	}
	live := map[Digest]bool{}
	liveObjects := map[string]bool{}
	for _, e := range ents {
		if remove[e.Key] {
			res.Records++
			if !opts.DryRun {
				if err := os.Remove(s.recordPath(e.Key)); err != nil {
					return res, fmt.Errorf("gc: removing record %s: %w", e.Key, err)
				}
				os.Remove(filepath.Join(s.root, "locks", e.Key+".lock"))
			}
			continue
		}
		for _, d := range e.record.Digests() {
			live[d.Digest] = true
		}
		for _, set := range e.record.ObjectSets {
			if err := s.readObjectSet(set.Digest, liveObjects); err != nil {
				return res, err
			}
		}
	}
	for _, kind := range []string{"blobs", "trees"} {
		dir := filepath.Join(s.root, kind, "sha256")
		des, err := os.ReadDir(dir)
		if err != nil {
			return res, fmt.Errorf("gc: %w", err)
		}
		for _, de := range des {
			if live[Digest("sha256:"+de.Name())] {
				continue
			}
			p := filepath.Join(dir, de.Name())
			size := duSize(p)
			res.Bytes += size
			if kind == "blobs" {
				res.Blobs++
			} else {
				res.Trees++
			}
			if !opts.DryRun {
				if err := removeReadOnly(p); err != nil {
					return res, fmt.Errorf("gc: removing %s: %w", p, err)
				}
			}
		}
	}
	n, b, err := s.sweepObjects(liveObjects, opts.DryRun)
	res.Objects, res.Bytes = n, res.Bytes+b
	if err != nil {
		return res, err
	}
	if opts.Keep > 0 && !opts.DryRun {
		for i, r := range refs {
			if i >= opts.Keep {
				os.Remove(filepath.Join(s.root, "composes", r.ID+".json"))
			}
		}
	}
	return res, nil
}

func (s *Store) readObjectSet(d Digest, into map[string]bool) error {
	f, err := s.OpenBlob(d)
	if err != nil {
		return fmt.Errorf("gc: object set %s: %w", d.Short(), err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			into[l] = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("gc: object set %s: %w", d.Short(), err)
	}
	return nil
}

// sweepObjects removes composefs objects no live object set lists.
func (s *Store) sweepObjects(live map[string]bool, dry bool) (int, int64, error) {
	var n int
	var bytes int64
	root := s.ObjectsDir()
	fan, err := os.ReadDir(root)
	if err != nil {
		return 0, 0, fmt.Errorf("gc: %w", err)
	}
	for _, f := range fan {
		if !f.IsDir() || len(f.Name()) != 2 {
			continue
		}
		objs, err := os.ReadDir(filepath.Join(root, f.Name()))
		if err != nil {
			return n, bytes, fmt.Errorf("gc: %w", err)
		}
		for _, o := range objs {
			if live[f.Name()+o.Name()] {
				continue
			}
			p := filepath.Join(root, f.Name(), o.Name())
			if info, err := o.Info(); err == nil {
				bytes += info.Size()
			}
			n++
			if !dry {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return n, bytes, fmt.Errorf("gc: removing object %s: %w", p, err)
				}
			}
		}
	}
	return n, bytes, nil
}

func duSize(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// removeReadOnly removes a file or a tree whose directories may be read-only.
func removeReadOnly(p string) error {
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o755)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// Problem is one finding of [Store.Verify].
type Problem struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// VerifyResult reports what verify checked and found.
type VerifyResult struct {
	Blobs, Trees, Records, Objects int
	Problems                       []Problem
}

// ObjectVerifier computes the name an object file should have (its
// fs-verity digest in hex); injected so this package needs no fs-verity code.
type ObjectVerifier func(r io.Reader) (string, error)

// Verify rehashes every blob and tree, checks every record's references
// and, when ov is not nil, every composefs object's fs-verity name.
func (s *Store) Verify(ov ObjectVerifier) (VerifyResult, error) {
	var res VerifyResult
	bdir := filepath.Join(s.root, "blobs", "sha256")
	des, err := os.ReadDir(bdir)
	if err != nil {
		return res, fmt.Errorf("verify: %w", err)
	}
	for _, de := range des {
		res.Blobs++
		p := filepath.Join(bdir, de.Name())
		sum, _, err := HashFile(p)
		if err != nil {
			res.Problems = append(res.Problems, Problem{p, err.Error()})
		} else if sum.Hex() != de.Name() {
			res.Problems = append(res.Problems, Problem{p, "content digest is " + string(sum)})
		}
	}
	tdir := filepath.Join(s.root, "trees", "sha256")
	if des, err = os.ReadDir(tdir); err != nil {
		return res, fmt.Errorf("verify: %w", err)
	}
	for _, de := range des {
		res.Trees++
		p := filepath.Join(tdir, de.Name())
		d, _, err := TreeDigest(p)
		if err != nil {
			res.Problems = append(res.Problems, Problem{p, err.Error()})
		} else if d.Hex() != de.Name() {
			res.Problems = append(res.Problems, Problem{p, "tree digest is " + string(d)})
		}
	}
	ents, err := s.List()
	if err != nil {
		return res, err
	}
	for _, e := range ents {
		res.Records++
		for _, d := range e.record.Digests() {
			if !s.Has(d) {
				res.Problems = append(res.Problems, Problem{s.recordPath(e.Key), "references missing " + string(d.Digest)})
			}
		}
	}
	if ov == nil {
		return res, nil
	}
	root := s.ObjectsDir()
	fan, err := os.ReadDir(root)
	if err != nil {
		return res, fmt.Errorf("verify: %w", err)
	}
	for _, f := range fan {
		if !f.IsDir() {
			continue
		}
		objs, err := os.ReadDir(filepath.Join(root, f.Name()))
		if err != nil {
			return res, fmt.Errorf("verify: %w", err)
		}
		for _, o := range objs {
			if strings.HasPrefix(o.Name(), ".") {
				continue // an in-flight temporary of a live writer
			}
			res.Objects++
			p := filepath.Join(root, f.Name(), o.Name())
			fh, err := os.Open(p)
			if err != nil {
				res.Problems = append(res.Problems, Problem{p, err.Error()})
				continue
			}
			name, err := ov(fh)
			fh.Close()
			if err != nil {
				res.Problems = append(res.Problems, Problem{p, err.Error()})
			} else if name != f.Name()+o.Name() {
				res.Problems = append(res.Problems, Problem{p, "fs-verity digest is " + name})
			}
		}
	}
	return res, nil
}

// HashFile returns the sha256 digest and size of a file; used to checksum
// published artifacts.
func HashFile(p string) (Digest, int64, error) {
	sum, n, err := filehash.SHA256(p)
	if err != nil {
		return "", 0, err
	}
	return NewDigest(sum[:]), n, nil
}
