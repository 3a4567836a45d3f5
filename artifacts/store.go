package artifacts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// ErrNotFound reports a missing blob, tree or record.
var ErrNotFound = errors.New("artifacts: not found")

// Store is a content-addressed artifact store rooted at one directory. It is
// safe for concurrent use by goroutines and by several processes.
type Store struct {
	root    string
	session string    // tmp/<session>: this process's scratch directory
	lock    *fileLock // shared store lock (exclusive for gc)
	slock   *fileLock // held on tmp/<session>.lock while the store is open
}

// DefaultDir returns the default store directory: $XDG_CACHE_HOME/cfs-compose,
// or ~/.cache/cfs-compose.
func DefaultDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the cache directory: %w", err)
	}
	return filepath.Join(d, "cfs-compose"), nil
}

// Open opens (creating if needed) the store at root and removes temporary
// files left by processes that died. It holds the store lock shared until
// Close; pass exclusive for maintenance (gc), which waits for builders.
func Open(ctx context.Context, root string, exclusive bool) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", root, err)
	}
	s := &Store{root: abs}
	for _, d := range []string{"blobs/sha256", "trees/sha256", "records", "composes", "composefs/objects", "locks", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("opening store %s: %w", abs, err)
		}
	}
	if s.lock, _, err = lock(ctx, filepath.Join(abs, "locks", "store.lock"), exclusive); err != nil {
		return nil, fmt.Errorf("opening store %s: %w", abs, err)
	}
	if err := s.cleanStale(); err != nil {
		s.lock.Unlock()
		return nil, err
	}
	var rb [8]byte
	if _, err := rand.Read(rb[:]); err != nil {
		s.lock.Unlock()
		return nil, fmt.Errorf("opening store %s: %w", abs, err)
	}
	s.session = hex.EncodeToString(rb[:])
	sl, ok, err := tryLock(filepath.Join(abs, "tmp", s.session+".lock"), true)
	if err != nil || !ok {
		s.lock.Unlock()
		return nil, fmt.Errorf("opening store %s: session lock: %v", abs, err)
	}
	s.slock = sl
	if err := os.Mkdir(filepath.Join(abs, "tmp", s.session), 0o700); err != nil {
		s.Close()
		return nil, fmt.Errorf("opening store %s: %w", abs, err)
	}
	return s, nil
}

// cleanStale removes tmp/<session> directories whose owner is gone (its
// session lock can be taken).
func (s *Store) cleanStale() error {
	tmp := filepath.Join(s.root, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("cleaning %s: %w", tmp, err)
	}
	for _, e := range ents {
		name, isLock := strings.CutSuffix(e.Name(), ".lock")
		if !isLock {
			if e.IsDir() {
				// A session directory without a lock file: its owner died
				// between creating the lock and the directory, or after
				// removing the lock. Either way nobody can own it.
				if _, err := os.Stat(filepath.Join(tmp, e.Name()+".lock")); errors.Is(err, fs.ErrNotExist) {
					if err := os.RemoveAll(filepath.Join(tmp, e.Name())); err != nil {
						return fmt.Errorf("removing stale %s: %w", e.Name(), err)
					}
				}
			}
			continue
		}
		l, ok, err := tryLock(filepath.Join(tmp, e.Name()), true)
		if err != nil {
			return err
		}
		if !ok {
			continue // a live process owns it
		}
		rerr := os.RemoveAll(filepath.Join(tmp, name))
		if rerr == nil {
			rerr = os.Remove(filepath.Join(tmp, e.Name()))
		}
		l.Unlock()
		if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("removing stale session %s: %w", name, rerr)
		}
	}
	return nil
}

// Close removes this process's temporary files and releases the locks.
func (s *Store) Close() error {
	var errs []error
	if s.session != "" {
		errs = append(errs, os.RemoveAll(filepath.Join(s.root, "tmp", s.session)))
		errs = append(errs, os.Remove(filepath.Join(s.root, "tmp", s.session+".lock")))
		errs = append(errs, s.slock.Unlock())
		s.session = ""
	}
	errs = append(errs, s.lock.Unlock())
	return errors.Join(errs...)
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

// ObjectsDir returns the composefs object store directory (objects/XX/…),
// shared by every compose using this store.
func (s *Store) ObjectsDir() string { return filepath.Join(s.root, "composefs", "objects") }

// TempDir creates a fresh directory under this process's scratch area. It
// is removed by Close at the latest; callers remove it when done.
func (s *Store) TempDir(pattern string) (string, error) {
	d, err := os.MkdirTemp(filepath.Join(s.root, "tmp", s.session), pattern)
	if err != nil {
		return "", fmt.Errorf("creating temporary directory: %w", err)
	}
	return d, nil
}

// BlobPath returns the path of a stored blob. The file is read-only; never
// modify it.
func (s *Store) BlobPath(d Digest) string {
	return filepath.Join(s.root, "blobs", "sha256", d.Hex())
}

// TreePath returns the path of a stored tree.
func (s *Store) TreePath(d Digest) string {
	return filepath.Join(s.root, "trees", "sha256", d.Hex())
}

// Path returns the path of the artifact a descriptor names.
func (s *Store) Path(desc Descriptor) string {
	if desc.Tree {
		return s.TreePath(desc.Digest)
	}
	return s.BlobPath(desc.Digest)
}

// Has reports whether the blob or tree of desc is present.
func (s *Store) Has(desc Descriptor) bool {
	_, err := os.Lstat(s.Path(desc))
	return err == nil
}

// Sync flushes the filesystem holding the store (one syncfs), making every
// blob, record and object written so far durable.
func (s *Store) Sync() error {
	if err := syncTree(s.root); err != nil {
		return fmt.Errorf("syncing store %s: %w", s.root, err)
	}
	return nil
}

// OpenBlob opens a stored blob for reading.
func (s *Store) OpenBlob(d Digest) (*os.File, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	return f, err
}

// ReadBlob returns a stored blob's content.
func (s *Store) ReadBlob(d Digest) ([]byte, error) {
	f, err := s.OpenBlob(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// BlobWriter writes one blob. Write the content, then Commit to store it
// under its digest, or Abort to discard it. Abort after Commit is a no-op,
// so `defer w.Abort()` is always safe.
type BlobWriter struct {
	s         *Store
	f         *os.File
	h         hash.Hash
	n         int64
	mediaType string
	done      bool
	sparse    bool
}

// sparseBlock is the unit [BlobWriter.Sparse] leaves holes in.
const sparseBlock = 4096

// Sparse makes the writer leave holes for aligned all-zero blocks instead
// of writing them (a disk image fetched from a registry stays as sparse
// as the one built locally). The content and digest are the same.
func (w *BlobWriter) Sparse() { w.sparse = true }

// NewBlobWriter starts a blob of the given media type.
func (s *Store) NewBlobWriter(mediaType string) (*BlobWriter, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp", s.session), "blob-*")
	if err != nil {
		return nil, fmt.Errorf("creating blob: %w", err)
	}
	return &BlobWriter{s: s, f: f, h: sha256.New(), mediaType: mediaType}, nil
}

// Write implements io.Writer.
func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.sparse {
		return w.writeSparse(p)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// writeSparse writes p at offset w.n, skipping zeros in block-aligned
// pieces (the file is extended to its size at Commit).
func (w *BlobWriter) writeSparse(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		// Up to the next block boundary, so that holes stay aligned.
		end := done + sparseBlock - int((w.n+int64(done))%sparseBlock)
		if end > len(p) {
			end = len(p)
		}
		// A zero chunk is skipped whatever its length: nothing was written
		// at or after this offset yet, so it reads as zeros, and a block
		// no write touches stays a hole.
		chunk := p[done:end]
		if !allZero(chunk) {
			if _, err := w.f.WriteAt(chunk, w.n+int64(done)); err != nil {
				w.h.Write(p[:done])
				w.n += int64(done)
				return done, err
			}
		}
		done = end
	}
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Commit renames the blob into place. Durability comes from one
// [Store.Sync] at the end of a build rather than an fsync per blob.
func (w *BlobWriter) Commit() (Descriptor, error) {
	if w.done {
		return Descriptor{}, errors.New("artifacts: blob already committed or aborted")
	}
	w.done = true
	d := NewDigest(w.h.Sum(nil))
	desc := Descriptor{Digest: d, Size: w.n, MediaType: w.mediaType}
	var err error
	if w.sparse {
		err = w.f.Truncate(w.n) // a trailing hole
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = w.s.install(w.f.Name(), w.s.BlobPath(d))
	}
	if err != nil {
		os.Remove(w.f.Name())
		return Descriptor{}, fmt.Errorf("storing blob %s: %w", d.Short(), err)
	}
	return desc, nil
}

// Abort discards an uncommitted blob.
func (w *BlobWriter) Abort() {
	if !w.done {
		w.done = true
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// install makes tmp read-only and renames it to dst. If dst exists the
// content is identical (same digest), so tmp is simply dropped.
func (s *Store) install(tmp, dst string) error {
	if err := os.Chmod(tmp, 0o444); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); err == nil {
		return os.Remove(tmp)
	}
	return atomicfile.PublishKeep(tmp, dst)
}

// PutBytes stores b as a blob.
func (s *Store) PutBytes(mediaType string, b []byte) (Descriptor, error) {
	w, err := s.NewBlobWriter(mediaType)
	if err != nil {
		return Descriptor{}, err
	}
	defer w.Abort()
	if _, err := w.Write(b); err != nil {
		return Descriptor{}, fmt.Errorf("writing blob: %w", err)
	}
	return w.Commit()
}

// AddFile hashes the file at path, which must live in a directory from
// [Store.TempDir] (the same filesystem), and moves it into the store. Sparse
// files stay sparse. The file is gone from path afterwards.
func (s *Store) AddFile(path, mediaType string) (Descriptor, error) {
	d, n, err := HashFile(path)
	if err != nil {
		return Descriptor{}, fmt.Errorf("adding %s: %w", path, err)
	}
	if err := s.install(path, s.BlobPath(d)); err != nil {
		return Descriptor{}, fmt.Errorf("adding %s: %w", path, err)
	}
	return Descriptor{Digest: d, Size: n, MediaType: mediaType}, nil
}
