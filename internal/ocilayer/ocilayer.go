package ocilayer

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

// Errors returned (wrapped in an [*EntryError]) for inconsistent layers.
var (
	ErrHardlink    = errors.New("ocilayer: bad hard link")
	ErrRootType    = errors.New("ocilayer: the root must stay a directory")
	ErrNotDir      = errors.New("ocilayer: parent is not a directory")
	ErrLoop        = errors.New("ocilayer: too many levels of symbolic links")
	ErrHeader      = errors.New("ocilayer: invalid tar header")
	ErrUnsupported = errors.New("ocilayer: unsupported tar entry type")
	ErrWhiteout    = errors.New("ocilayer: invalid whiteout")
)

// maxLinkHops bounds symbolic link resolution while resolving the parent
// of an entry (the limit of umoci's filepath-securejoin).
const maxLinkHops = 255

// xattrPrefix marks extended attributes in PAX records.
const xattrPrefix = "SCHILY.xattr."

// whiteoutPrefix and opaqueName are the OCI whiteout markers.
const (
	whiteoutPrefix = ".wh."
	opaqueName     = ".wh..wh..opq"
	// metaPrefix marks AUFS metadata (".wh..wh.plnk", ".wh..wh.aufs"),
	// which containers/storage skips; the opaque marker shares it.
	metaPrefix = ".wh..wh."
)

// ObjectStore receives file content. It reads r to the end and returns the
// fs-verity digest and size of what it stored; *objstore.Store implements
// it.
type ObjectStore interface {
	Put(r io.Reader) (digest [fsverity.Size]byte, size int64, err error)
}

// EntryError reports a layer entry that could not be applied.
type EntryError struct {
	Name string // the entry name as written in the layer
	Err  error
}

func (e *EntryError) Error() string { return fmt.Sprintf("ocilayer: entry %q: %v", e.Name, e.Err) }

func (e *EntryError) Unwrap() error { return e.Err }

// Stats counts what applying layers did.
type Stats struct {
	Entries   int   // tar entries read
	Files     int   // regular files (including hard links) added
	Objects   int   // regular files whose content went to the object store
	Bytes     int64 // regular file content bytes read
	Whiteouts int   // whiteout and opaque entries
}

// Applier applies layers to a tree, in order. It is not safe for
// concurrent use. Its error is sticky: after a failure every Apply returns
// the same error.
type Applier struct {
	tree    *composefs.Tree
	objects ObjectStore
	stats   Stats
	err     error

	// Concurrent content storing (see SetConcurrency).
	jobs     chan putJob
	workers  sync.WaitGroup // running worker goroutines
	inflight sync.WaitGroup // queued or running jobs
	mu       sync.Mutex
	werr     error       // first worker error
	bufs     chan []byte // free buffers, bounding memory
	queued   *putJob     // job of the current entry, sent once it is in the tree

	upper map[string]bool // paths created by the current layer, and their ancestors
	buf   []byte
}

// NewApplier returns an Applier that modifies t. Content of regular files
// larger than [composefs.InlineThreshold] goes to objects; with a nil
// objects it is only hashed (the tree gets digests of objects that exist
// nowhere, which is enough to compute a composefs digest).
func NewApplier(t *composefs.Tree, objects ObjectStore) *Applier {
	return &Applier{tree: t, objects: objects, buf: make([]byte, composefs.InlineThreshold)}
}

// maxBuffered is the largest file content handed to a worker; larger
// files are stored by the reading goroutine itself, streamed.
const maxBuffered = 1 << 20

// SetConcurrency lets n goroutines hash and store file content while the
// layer is read on (n <= 1: the reading goroutine does it all). Content of
// files up to 1 MiB is buffered for them, at most 2n buffers at a time.
// Call it before the first Apply. The tree is the same either way.
func (a *Applier) SetConcurrency(n int) {
	if n <= 1 || a.jobs != nil {
		return
	}
	a.jobs = make(chan putJob)
	a.bufs = make(chan []byte, 2*n)
	for range 2 * n {
		a.bufs <- nil
	}
	for range n {
		a.workers.Add(1)
		go a.worker()
	}
}

// putJob is one buffered file waiting to be stored.
type putJob struct {
	ino  *composefs.Inode
	data []byte
	name string
}

func (a *Applier) worker() {
	defer a.workers.Done()
	for j := range a.jobs {
		d, n, err := a.store(bytes.NewReader(j.data))
		if err == nil && n != int64(len(j.data)) {
			err = fmt.Errorf("stored %d of %d bytes", n, len(j.data))
		}
		a.mu.Lock()
		if err != nil && a.werr == nil {
			a.werr = &EntryError{Name: j.name, Err: fmt.Errorf("storing content: %w", err)}
		}
		if err == nil {
			j.ino.SetObject(d)
		}
		a.mu.Unlock()
		a.bufs <- j.data[:0]
		a.inflight.Done()
	}
}

// store puts content into the object store, or only hashes it.
func (a *Applier) store(r io.Reader) ([fsverity.Size]byte, int64, error) {
	if a.objects != nil {
		return a.objects.Put(r)
	}
	return fsverity.SumReader(r)
}

// wait blocks until every queued job is done and returns the first
// worker error.
func (a *Applier) wait() error {
	a.inflight.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.werr
}

// Close stops the content goroutines (after the queued work is done). The
// Applier cannot be used afterwards; Close is a no-op without concurrency.
func (a *Applier) Close() error {
	if a.jobs == nil {
		return nil
	}
	err := a.wait()
	close(a.jobs)
	a.workers.Wait()
	a.jobs = nil
	return err
}

// Stats returns the counts so far.
func (a *Applier) Stats() Stats { return a.stats }

// Apply reads one uncompressed layer tar stream to its end-of-archive
// marker and applies it. Data after the marker is not read.
func (a *Applier) Apply(r io.Reader) error {
	if a.err != nil {
		return a.err
	}
	a.upper = map[string]bool{"/": true}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) && hdr != nil {
			// GODEBUG=tarinsecurepath=0: the name is cleaned below anyway.
			err = nil
		}
		if err != nil {
			return a.fail(fmt.Errorf("ocilayer: reading layer: %w", err))
		}
		a.stats.Entries++
		if err := a.entry(hdr, tr); err != nil {
			var ee *EntryError
			if !errors.As(err, &ee) {
				err = &EntryError{Name: hdr.Name, Err: err}
			}
			return a.fail(err)
		}
		a.mu.Lock()
		err = a.werr
		a.mu.Unlock()
		if err != nil {
			return a.fail(err)
		}
	}
	if err := a.wait(); err != nil {
		return a.fail(err)
	}
	a.upper = nil
	return nil
}

// fail waits for the content goroutines and makes err sticky.
func (a *Applier) fail(err error) error {
	a.wait()
	a.err = err
	return err
}

// entry applies one tar entry.
func (a *Applier) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	clean := path.Clean("/" + hdr.Name)
	if clean == "/" {
		if hdr.Typeflag != tar.TypeDir {
			return ErrRootType
		}
		return a.setDirMeta(a.tree.Root(), hdr)
	}
	dirName, file := path.Split(clean)
	// No name in a tree can start with ".wh." (image-spec, "Whiteouts"),
	// so nothing can live below one: entries under AUFS metadata
	// directories (and under a directory named like the opaque marker)
	// are skipped, entries under any other ".wh." name are an error.
	for _, c := range strings.Split(strings.Trim(dirName, "/"), "/") {
		switch {
		case strings.HasPrefix(c, metaPrefix):
			return nil
		case strings.HasPrefix(c, whiteoutPrefix):
			return fmt.Errorf("%w: entry inside %q, a whiteout name", ErrWhiteout, c)
		}
	}
	dir, err := a.resolveDir(dirName)
	if err != nil {
		return err
	}
	if woName, ok := strings.CutPrefix(file, whiteoutPrefix); ok {
		a.stats.Whiteouts++
		switch {
		case file == opaqueName:
			return a.whiteout(dir, true)
		case strings.HasPrefix(file, metaPrefix):
			return nil // other AUFS metadata
		case woName == "" || woName == "." || woName == "..":
			// A whiteout of no name must not remove its directory (or,
			// with "..", the directory's parent).
			return fmt.Errorf("%w: %q names no entry to remove", ErrWhiteout, file)
		}
		return a.whiteout(path.Join(dir, woName), false)
	}
	if err := a.mkdirAll(dir, hdr); err != nil {
		return err
	}
	full := path.Join(dir, file)
	old, err := a.tree.Lookup(full)
	exists := err == nil
	if exists && !(old.Mode.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := a.tree.Remove(full); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if exists && old.Mode.IsDir() {
			if err := a.setDirMeta(old, hdr); err != nil {
				return err
			}
			break
		}
		ino, err := inodeFromHeader(hdr, composefs.TypeDir)
		if err != nil {
			return err
		}
		if err := a.tree.Add(full, ino); err != nil {
			return err
		}
	case tar.TypeReg, tar.TypeCont: // the Reader turns old-style TypeRegA into TypeReg
		ino, err := inodeFromHeader(hdr, composefs.TypeRegular)
		if err != nil {
			return err
		}
		if err := a.content(ino, hdr, r); err != nil {
			return err
		}
		if err := a.tree.Add(full, ino); err != nil {
			if a.queued != nil {
				a.bufs <- a.queued.data[:0]
				a.queued = nil
			}
			return err
		}
		if j := a.queued; j != nil {
			// Only now: Add reads the inode, the worker writes it.
			a.queued = nil
			a.inflight.Add(1)
			a.jobs <- *j
		}
		a.stats.Files++
	case tar.TypeSymlink:
		ino, err := inodeFromHeader(hdr, composefs.TypeSymlink)
		if err != nil {
			return err
		}
		ino.Mode = composefs.TypeSymlink | 0o777 // symlinks have no mode of their own
		ino.Target = hdr.Linkname
		if err := a.tree.Add(full, ino); err != nil {
			return err
		}
	case tar.TypeLink:
		// The target's digest may still be computed by a worker.
		if err := a.wait(); err != nil {
			return err
		}
		ino, err := a.hardlinkCopy(hdr.Linkname)
		if err != nil {
			return err
		}
		if err := a.tree.Add(full, ino); err != nil {
			return err
		}
		if ino.Mode.IsRegular() {
			a.stats.Files++
		}
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		t := map[byte]composefs.Mode{tar.TypeChar: composefs.TypeChar, tar.TypeBlock: composefs.TypeBlock, tar.TypeFifo: composefs.TypeFIFO}[hdr.Typeflag]
		ino, err := inodeFromHeader(hdr, t)
		if err != nil {
			return err
		}
		if t != composefs.TypeFIFO {
			if hdr.Devmajor < 0 || hdr.Devminor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor > math.MaxUint32 {
				return fmt.Errorf("%w: device %d:%d", ErrHeader, hdr.Devmajor, hdr.Devminor)
			}
			ino.Rdev = mkdev(uint64(hdr.Devmajor), uint64(hdr.Devminor))
		}
		if err := a.tree.Add(full, ino); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: type flag %q", ErrUnsupported, hdr.Typeflag)
	}
	for p := full; !a.upper[p]; p = path.Dir(p) {
		a.upper[p] = true
	}
	return nil
}

// content reads a regular file's data into ino: inline when small,
// otherwise into the object store.
func (a *Applier) content(ino *composefs.Inode, hdr *tar.Header, r io.Reader) error {
	a.stats.Bytes += hdr.Size
	if hdr.Size <= composefs.InlineThreshold {
		n, err := io.ReadFull(r, a.buf[:hdr.Size])
		if err != nil {
			return fmt.Errorf("reading content: %d of %d bytes: %w", n, hdr.Size, err)
		}
		if hdr.Size > 0 {
			ino.Content = bytes.Clone(a.buf[:hdr.Size])
		}
		return nil
	}
	if a.objects != nil {
		a.stats.Objects++
	}
	if a.jobs != nil && hdr.Size <= maxBuffered {
		buf := <-a.bufs // waits while every buffer is in use
		if cap(buf) < int(hdr.Size) {
			buf = make([]byte, hdr.Size, maxBuffered)
		}
		buf = buf[:hdr.Size]
		if n, err := io.ReadFull(r, buf); err != nil {
			a.bufs <- buf[:0]
			return fmt.Errorf("reading content: %d of %d bytes: %w", n, hdr.Size, err)
		}
		a.queued = &putJob{ino: ino, data: buf, name: hdr.Name}
		return nil
	}
	d, n, err := a.store(r)
	if err != nil {
		return fmt.Errorf("storing content: %w", err)
	}
	if n != hdr.Size {
		return fmt.Errorf("reading content: %d of %d bytes: %w", n, hdr.Size, io.ErrUnexpectedEOF)
	}
	ino.SetObject(d)
	return nil
}

// hardlinkCopy resolves a hard link target (its parent through symbolic
// links, the last component not) and returns an independent copy of it.
func (a *Applier) hardlinkCopy(linkname string) (*composefs.Inode, error) {
	clean := path.Clean("/" + linkname)
	if clean == "/" {
		return nil, fmt.Errorf("%w: target %q is the root directory", ErrHardlink, linkname)
	}
	d, f := path.Split(clean)
	dir, err := a.resolveDir(d)
	if err != nil {
		return nil, fmt.Errorf("%w: target %q: %w", ErrHardlink, linkname, err)
	}
	target, err := a.tree.Lookup(path.Join(dir, f))
	if err != nil {
		return nil, fmt.Errorf("%w: target %q does not exist", ErrHardlink, linkname)
	}
	if target.Mode.IsDir() {
		return nil, fmt.Errorf("%w: target %q is a directory", ErrHardlink, linkname)
	}
	cp := &composefs.Inode{
		Mode: target.Mode, UID: target.UID, GID: target.GID, Nlink: 1, Mtime: target.Mtime,
		Rdev: target.Rdev, Size: target.Size, Target: target.Target, Payload: target.Payload,
		Content: target.Content, Xattrs: slices.Clone(target.Xattrs),
	}
	if target.Digest != nil {
		d := *target.Digest
		cp.Digest = &d
	}
	return cp, nil
}

// resolveDir resolves a directory path inside the tree, following symbolic
// links in every component (absolute targets restart at the root, ".."
// stops at the root). Components that do not exist are kept as they are.
// The result is a clean absolute path without symbolic links in its
// existing part.
func (a *Applier) resolveDir(p string) (string, error) {
	todo := strings.Split(p, "/")
	resolved := make([]string, 0, len(todo))
	hops := 0
	missing := false
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(resolved) > 0 {
				resolved = resolved[:len(resolved)-1]
			}
			missing = false
			continue
		}
		if !missing {
			ino, err := a.tree.Lookup("/" + strings.Join(append(resolved, c), "/"))
			switch {
			case err != nil:
				missing = true
			case ino.Mode.Type() == composefs.TypeSymlink:
				hops++
				if hops > maxLinkHops {
					return "", fmt.Errorf("%w resolving %q", ErrLoop, p)
				}
				if strings.HasPrefix(ino.Target, "/") {
					resolved = resolved[:0]
				}
				todo = append(strings.Split(ino.Target, "/"), todo...)
				continue
			}
		}
		resolved = append(resolved, c)
	}
	return "/" + strings.Join(resolved, "/"), nil
}

// mkdirAll creates the missing directories of dir (a resolved path), with
// mode 0755, owner 0:0 and the entry's mtime.
func (a *Applier) mkdirAll(dir string, hdr *tar.Header) error {
	ino, err := a.tree.Lookup(dir)
	if err == nil {
		if !ino.Mode.IsDir() {
			return fmt.Errorf("%w: %s", ErrNotDir, dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, composefs.ErrNotDir) {
		return err
	}
	tmpl := composefs.Inode{Mode: composefs.TypeDir | 0o755, Mtime: mtime(hdr)}
	if err := a.tree.MkdirAll(dir, tmpl); err != nil {
		if errors.Is(err, composefs.ErrNotDir) {
			return fmt.Errorf("%w: a component of %s", ErrNotDir, dir)
		}
		return err
	}
	return nil
}

// whiteout removes p (or, for an opaque whiteout, p's entries) except for
// what the current layer created.
func (a *Applier) whiteout(p string, opaque bool) error {
	ino, err := a.tree.Lookup(p)
	if err != nil {
		return nil // nothing to remove (or a parent is not a directory)
	}
	if !opaque && !a.upper[p] {
		return a.tree.Remove(p)
	}
	if !ino.Mode.IsDir() {
		return nil
	}
	return a.prune(p)
}

// prune removes the entries of directory p that the current layer did not
// create, descending into those it did.
func (a *Applier) prune(p string) error {
	name := "."
	if p != "/" {
		name = p[1:]
	}
	ents, err := fs.ReadDir(a.tree.FS(nil), name)
	if err != nil {
		return err
	}
	for _, e := range ents {
		c := path.Join(p, e.Name())
		if !a.upper[c] {
			if err := a.tree.Remove(c); err != nil {
				return err
			}
			continue
		}
		if e.IsDir() {
			if err := a.prune(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// setDirMeta applies a directory header's metadata to an existing
// directory; its extended attributes are replaced.
func (a *Applier) setDirMeta(dir *composefs.Inode, hdr *tar.Header) error {
	ino, err := inodeFromHeader(hdr, composefs.TypeDir)
	if err != nil {
		return err
	}
	dir.Mode, dir.UID, dir.GID, dir.Mtime, dir.Xattrs = ino.Mode, ino.UID, ino.GID, ino.Mtime, ino.Xattrs
	return nil
}

// inodeFromHeader builds an inode of type t with the header's metadata.
func inodeFromHeader(hdr *tar.Header, t composefs.Mode) (*composefs.Inode, error) {
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > math.MaxUint32 || hdr.Gid > math.MaxUint32 {
		return nil, fmt.Errorf("%w: owner %d:%d", ErrHeader, hdr.Uid, hdr.Gid)
	}
	if hdr.Size < 0 {
		return nil, fmt.Errorf("%w: size %d", ErrHeader, hdr.Size)
	}
	ino := &composefs.Inode{
		Mode: t | composefs.Mode(hdr.Mode)&composefs.PermMask,
		UID:  uint32(hdr.Uid), GID: uint32(hdr.Gid),
		Mtime: mtime(hdr),
	}
	if t == composefs.TypeRegular {
		ino.Size = hdr.Size
	}
	var names []string
	for k := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, xattrPrefix); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if err := ino.SetXattr(name, hdr.PAXRecords[xattrPrefix+name]); err != nil {
			return nil, err
		}
	}
	return ino, nil
}

// mtime converts the header's modification time.
func mtime(hdr *tar.Header) composefs.Timespec {
	return composefs.Timespec{Sec: hdr.ModTime.Unix(), Nsec: uint32(hdr.ModTime.Nanosecond())}
}

// mkdev encodes a Linux dev_t the way glibc's makedev does.
func mkdev(major, minor uint64) uint64 {
	return (minor & 0xff) | (major&0xfff)<<8 | (minor&^0xff)<<12 | (major&^0xfff)<<32
}

// SetDirLinks sets the link count of every directory of t to 2 plus its
// number of subdirectories, the value a filesystem (and a composefs image)
// reports, so that dumpfiles of the tree match `composefs-info dump`.
func SetDirLinks(t *composefs.Tree) {
	_ = t.Walk(func(name string, ino *composefs.Inode, link bool) error {
		if !ino.Mode.IsDir() || link {
			return nil
		}
		ino.Nlink = 2
		if name != "/" {
			parent, err := t.Lookup(path.Dir(name))
			if err == nil {
				parent.Nlink++
			}
		}
		return nil
	})
}
