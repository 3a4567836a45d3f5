// Package objstore is the composefs object store: a directory of
// immutable files named by the fs-verity SHA-256 digest of their content,
// laid out as objects/XX/YYYY… (XX = first digest byte in hex, YYYY… = the
// other 31 bytes), the layout of `mkcomposefs --digest-store` and of the
// "objects" directory of composefs-rs repositories. A composefs image's
// redirect attributes name these paths, and overlayfs reads file content
// from them when the store is mounted as a data-only lower layer.
//
// Objects are written to a temporary name (in their fan-out directory, or
// in the root directory for files larger than 1 MiB) and renamed into place
// without replacing an existing object, so a reader
// never sees a partial object and concurrent writers, in one process or in
// several, can add the same content at the same time. Durability is batched:
// [Store.Put] writes to the page cache only; one call of [Store.Sync] at the
// end makes everything durable with a single syncfs(2), instead of one
// fsync per object.
//
// Put tries to enable fs-verity on each new object (best effort, as
// mkcomposefs does) and stops trying once the filesystem reports that it
// does not support it. Runs of all-zero 4096-byte blocks are written as
// holes, so sparse input stays sparse.
//
// Temporary files have names starting with ".tmp-", in the root or a
// fan-out directory; a writer that crashed may leave one behind. They are
// never objects and may be deleted when no writer is active.
package objstore

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

const (
	bufferSize = 1 << 20
	blockSize  = fsverity.BlockSize
)

var buffers = sync.Pool{New: func() any { b := make([]byte, bufferSize); return &b }}

var zeroBlock [blockSize]byte

// tempSeq numbers temporary files within the process.
var tempSeq atomic.Uint64

// umask returns the process umask (objects must end up mode 0644), read
// once from /proc/self/status; if that is unavailable, objects are always
// chmod'ed.
var umask = sync.OnceValue(func() int {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o777
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			if u, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return int(u)
			}
		}
	}
	return 0o777
})

// Store is an object store rooted at a directory. It is safe for concurrent
// use by multiple goroutines.
type Store struct {
	root  string
	dir   *os.File // the root directory
	dirfd int      // its descriptor, for *at system calls and syncfs

	noVerity    atomic.Bool // fs-verity is not supported here
	noNoReplace atomic.Bool // renameat2(RENAME_NOREPLACE) is not supported here
	noTmpfile   atomic.Bool // O_TMPFILE or linkat(AT_EMPTY_PATH) is not supported here
}

// Open opens the store rooted at dir, creating the directory (mode 0755)
// if needed. Close releases it.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating object store %s: %w", dir, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("opening object store %s: %w", dir, err)
	}
	return &Store{root: dir, dir: d, dirfd: int(d.Fd())}, nil
}

// Close releases the store. It does not sync; call [Store.Sync] first.
func (s *Store) Close() error { return s.dir.Close() }

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

// Name returns the path of digest d relative to the root: "XX/YYYY…".
func Name(d [fsverity.Size]byte) string {
	h := hex.EncodeToString(d[:])
	return h[:2] + "/" + h[2:]
}

// ParseName parses an object name "XX/YYYY…" (as [Name] returns it, or as
// a composefs redirect payload, with or without a leading slash).
func ParseName(name string) ([fsverity.Size]byte, error) {
	var d [fsverity.Size]byte
	if len(name) > 0 && name[0] == '/' {
		name = name[1:]
	}
	if len(name) != 2*fsverity.Size+1 || name[2] != '/' {
		return d, fmt.Errorf("objstore: %q is not an object name", name)
	}
	if _, err := hex.Decode(d[:1], []byte(name[:2])); err != nil {
		return d, fmt.Errorf("objstore: %q is not an object name", name)
	}
	if _, err := hex.Decode(d[1:], []byte(name[3:])); err != nil {
		return d, fmt.Errorf("objstore: %q is not an object name", name)
	}
	return d, nil
}

// Path returns the file path of the object with digest d.
func (s *Store) Path(d [fsverity.Size]byte) string {
	return filepath.Join(s.root, Name(d))
}

// Has reports whether the object with digest d is in the store.
func (s *Store) Has(d [fsverity.Size]byte) (bool, error) {
	fi, err := os.Lstat(s.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking object %s: %w", Name(d), err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("object %s is not a regular file", Name(d))
	}
	return true, nil
}

// Open opens the object with digest d for reading. A missing object is an
// error wrapping fs.ErrNotExist.
func (s *Store) Open(d [fsverity.Size]byte) (*os.File, error) {
	return os.Open(s.Path(d))
}

// FS returns the store as an fs.FS whose files are named "XX/YYYY…", the
// form composefs payloads take; see composefs.Tree.FS.
func (s *Store) FS() fs.FS { return os.DirFS(s.root) }

// Put reads r to the end and stores its content, returning its fs-verity
// digest and size. Every byte is read once: it is hashed while it is
// written. If the object already exists, the new copy is discarded and the
// existing one is kept. New objects get mode 0644 and mtime 0 (the
// epoch), whatever the umask and clock. Put does not make the object
// durable; see [Store.Sync].
func (s *Store) Put(r io.Reader) (digest [fsverity.Size]byte, size int64, err error) {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	h := fsverity.New()

	// Most files fit the buffer: then the digest, and so the object's
	// directory, is known before anything is written, and the temporary
	// file is created next to the object (a rename within one directory
	// is cheaper). Larger files stream through a temporary file in the
	// root directory.
	n, rerr := io.ReadFull(r, buf)
	if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
		return digest, 0, fmt.Errorf("reading object content: %w", rerr)
	}
	whole := rerr != nil
	h.Write(buf[:n])
	dir := ""
	var early [fsverity.Size]byte // the digest, if known before writing
	if whole {
		early = h.Sum()
		dir = Name(early)[:2]
	}
	streamed := !whole
	// An anonymous O_TMPFILE file needs no name, no rename and no unlink
	// of a loser's copy: it is linked into place once complete (or simply
	// dropped if the object exists). That saves most of the directory
	// operations per object; a named temporary file is the fallback.
	fd, tmp, err := s.createAnon(dir)
	if err != nil {
		return digest, 0, fmt.Errorf("creating object in %s: %w", s.root, err)
	}
	if fd < 0 {
		if fd, tmp, err = s.createTemp(dir); err != nil {
			return digest, 0, fmt.Errorf("creating object in %s: %w", s.root, err)
		}
	}
	anon := tmp == ""
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
		if err != nil && !anon {
			unix.Unlinkat(s.dirfd, tmp, 0)
		}
	}()

	var written int64 // end of the last data written (the rest are holes)
	for {
		if n > 0 {
			end, werr := writeSparse(fd, buf[:n], size)
			if werr != nil {
				return digest, size, fmt.Errorf("writing object: %w", werr)
			}
			if end > 0 {
				written = end
			}
			size += int64(n)
		}
		if whole {
			break
		}
		n, rerr = io.ReadFull(r, buf)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return digest, size, fmt.Errorf("reading object content: %w", rerr)
		}
		whole = rerr != nil
		h.Write(buf[:n])
	}
	if written < size {
		if err := unix.Ftruncate(fd, size); err != nil {
			return digest, size, fmt.Errorf("writing object: %w", err)
		}
	}
	if umask()&0o644 != 0 {
		if err := unix.Fchmod(fd, 0o644); err != nil {
			return digest, size, fmt.Errorf("writing object: %w", err)
		}
	}
	// Objects are named by content; their times carry no information. A
	// fixed mtime (the epoch) keeps anything built from the store, such as
	// a root partition populated by hard links, reproducible.
	if err := unix.Futimes(fd, []unix.Timeval{{}, {}}); err != nil {
		return digest, size, fmt.Errorf("writing object: %w", err)
	}
	if anon {
		if streamed {
			digest = h.Sum()
		} else {
			digest = early
		}
		created, lerr := s.linkAnon(fd, digest)
		cerr := unix.Close(fd)
		fd = -1
		if lerr != nil {
			return digest, size, lerr
		}
		if cerr != nil {
			return digest, size, fmt.Errorf("writing object: %w", cerr)
		}
		if created {
			s.enableVerity(Name(digest))
		}
		return digest, size, nil
	}
	err = unix.Close(fd)
	fd = -1
	if err != nil {
		return digest, size, fmt.Errorf("writing object: %w", err)
	}
	if streamed {
		digest = h.Sum()
	} else {
		digest = early
	}
	s.enableVerity(tmp)
	if err := s.commit(tmp, digest); err != nil {
		return digest, size, err
	}
	return digest, size, nil
}

// createAnon opens an anonymous O_TMPFILE file in dir (a fan-out directory,
// created if missing, or "" for the root). It returns fd -1 without an
// error where the filesystem or kernel cannot do it.
func (s *Store) createAnon(dir string) (int, string, error) {
	if s.noTmpfile.Load() {
		return -1, "", nil
	}
	at := dir
	if at == "" {
		at = "."
	}
	for {
		fd, err := unix.Openat(s.dirfd, at, unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		switch {
		case err == nil:
			return fd, "", nil
		case err == unix.ENOENT && dir != "":
			if err := unix.Mkdirat(s.dirfd, dir, 0o755); err != nil && err != unix.EEXIST {
				return -1, "", err
			}
		case err == unix.EOPNOTSUPP || err == unix.EISDIR || err == unix.EINVAL:
			s.noTmpfile.Store(true)
			return -1, "", nil
		default:
			return -1, "", err
		}
	}
}

// linkAnon gives the anonymous file fd the object's name, unless the
// object exists already (then the anonymous copy just disappears when fd
// is closed). created reports whether this call stored the object.
func (s *Store) linkAnon(fd int, d [fsverity.Size]byte) (created bool, err error) {
	final := Name(d)
	for attempt := 0; ; attempt++ {
		err := unix.Linkat(fd, "", s.dirfd, final, unix.AT_EMPTY_PATH)
		if err == unix.EPERM || err == unix.ENOENT && attempt > 0 {
			// AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc works without.
			err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), s.dirfd, final, unix.AT_SYMLINK_FOLLOW)
		}
		switch {
		case err == nil:
			return true, nil
		case err == unix.EEXIST:
			return false, nil
		case err == unix.ENOENT && attempt == 0:
			if err := unix.Mkdirat(s.dirfd, final[:2], 0o755); err != nil && err != unix.EEXIST {
				return false, fmt.Errorf("creating object directory: %w", err)
			}
		default:
			return false, fmt.Errorf("storing object %s: %w", final, err)
		}
	}
}

// createTemp creates a new temporary file (mode 0644 before the umask) in
// dir, a fan-out directory ("XX", created if missing) or "" for the root,
// and returns its descriptor and name relative to the root.
func (s *Store) createTemp(dir string) (int, string, error) {
	prefix := ""
	if dir != "" {
		prefix = dir + "/"
	}
	for {
		name := fmt.Sprintf("%s.tmp-%d-%d-%08x", prefix, os.Getpid(), tempSeq.Add(1), rand.Uint32())
		fd, err := unix.Openat(s.dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
		switch {
		case err == nil:
			return fd, name, nil
		case err == unix.EEXIST:
			continue
		case err == unix.ENOENT && dir != "":
			if err := unix.Mkdirat(s.dirfd, dir, 0o755); err != nil && err != unix.EEXIST {
				return -1, "", err
			}
		default:
			return -1, "", err
		}
	}
}

// writeSparse writes chunk at offset off (a multiple of the block size),
// skipping all-zero blocks, and returns the end offset of the last data
// written (0 if everything was zero).
func writeSparse(fd int, chunk []byte, off int64) (int64, error) {
	var end int64
	for start := 0; start < len(chunk); {
		// Skip zero blocks.
		for start < len(chunk) && isZeroBlock(chunk[start:min(start+blockSize, len(chunk))]) {
			start += blockSize
		}
		if start >= len(chunk) {
			break
		}
		stop := start + blockSize
		for stop < len(chunk) && !isZeroBlock(chunk[stop:min(stop+blockSize, len(chunk))]) {
			stop += blockSize
		}
		stop = min(stop, len(chunk))
		if err := pwriteFull(fd, chunk[start:stop], off+int64(start)); err != nil {
			return 0, err
		}
		end = off + int64(stop)
		start = stop
	}
	return end, nil
}

// pwriteFull writes all of p at offset off.
func pwriteFull(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pwrite(fd, p, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		p = p[n:]
		off += int64(n)
	}
	return nil
}

// isZeroBlock reports whether b (at most one block) is all zero bytes. Only
// whole blocks count: a short final block is always written.
func isZeroBlock(b []byte) bool {
	return len(b) == blockSize && b[0] == 0 && bytes.Equal(b, zeroBlock[:])
}

// enableVerity tries to enable fs-verity on the finished temporary file.
func (s *Store) enableVerity(tmp string) {
	if s.noVerity.Load() {
		return
	}
	fd, err := unix.Openat(s.dirfd, tmp, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	arg := unix.FsverityEnableArg{Version: 1, Hash_algorithm: 1, Block_size: blockSize}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.FS_IOC_ENABLE_VERITY, uintptr(unsafe.Pointer(&arg)))
	switch errno {
	case unix.EOPNOTSUPP, unix.ENOTTY, unix.EINVAL, unix.ENOSYS:
		s.noVerity.Store(true)
	}
}

// commit renames the temporary file to the object's name unless the object
// already exists.
func (s *Store) commit(tmp string, d [fsverity.Size]byte) error {
	final := Name(d)
	for attempt := 0; ; attempt++ {
		err := s.renameNoReplace(tmp, final)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, fs.ErrExist):
			// Another writer stored the same content first: keep theirs.
			if err := unix.Unlinkat(s.dirfd, tmp, 0); err != nil {
				return fmt.Errorf("removing duplicate of object %s: %w", Name(d), err)
			}
			return nil
		case errors.Is(err, fs.ErrNotExist) && attempt == 0:
			if err := unix.Mkdirat(s.dirfd, final[:2], 0o755); err != nil && err != unix.EEXIST {
				return fmt.Errorf("creating object directory: %w", err)
			}
		default:
			return fmt.Errorf("storing object %s: %w", Name(d), err)
		}
	}
}

// renameNoReplace renames (names relative to the root) without replacing an
// existing file, with renameat2(RENAME_NOREPLACE) or, where the filesystem
// lacks it, link(2) and unlink(2).
func (s *Store) renameNoReplace(from, to string) error {
	if !s.noNoReplace.Load() {
		err := unix.Renameat2(s.dirfd, from, s.dirfd, to, unix.RENAME_NOREPLACE)
		switch err {
		case nil:
			return nil
		case unix.EEXIST:
			return fs.ErrExist
		case unix.ENOENT:
			return fs.ErrNotExist
		case unix.EINVAL, unix.ENOSYS, unix.EOPNOTSUPP:
			s.noNoReplace.Store(true)
		default:
			return err
		}
	}
	switch err := unix.Linkat(s.dirfd, from, s.dirfd, to, 0); err {
	case nil:
	case unix.EEXIST:
		return fs.ErrExist
	case unix.ENOENT:
		return fs.ErrNotExist
	default:
		return err
	}
	return unix.Unlinkat(s.dirfd, from, 0)
}

// Sync makes every object stored so far durable, with one syncfs(2) of the
// filesystem holding the store.
func (s *Store) Sync() error {
	if err := unix.Syncfs(s.dirfd); err != nil {
		return fmt.Errorf("syncing object store %s: %w", s.root, err)
	}
	return nil
}
