package ostree

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/internal/composefs"
)

// Config is the config file `ostree init --mode=bare` writes, byte for byte.
const Config = "[core]\nrepo_version=1\nmode=bare\n"

// repoDirs are the directories `ostree init` creates, in creation order.
var repoDirs = []string{"objects", "tmp", "tmp/cache", "extensions", "state", "refs", "refs/heads", "refs/mirrors", "refs/remotes"}

// Options configure a [Writer]. A nil *Options means the zero value.
type Options struct {
	// Objects holds the content of regular files whose content is external
	// (not in [composefs.Inode.Content]): the file is read from
	// Objects.Open(ino.Payload), the layout of internal/objstore.
	Objects fs.FS
	// Open, when set, is used instead of Objects: it returns the content of
	// the external regular file ino, whose primary path in the tree is name.
	// It is called from several goroutines at once; the Writer closes what
	// it returns.
	Open func(name string, ino *composefs.Inode) (io.ReadCloser, error)
	// Threads is the number of goroutines hashing and writing content
	// objects; 0 means runtime.GOMAXPROCS(0).
	Threads int
	// NoSync skips the syncfs(2) of [Writer.Close], which otherwise makes
	// everything written durable (as `ostree commit` does at the end of
	// its transaction).
	NoSync bool
}

// Stats counts what a [Writer] wrote, like `ostree commit --stats`.
type Stats struct {
	// MetadataTotal and MetadataWritten count dirtree, dirmeta and commit
	// objects: all that were needed and those that were not yet present.
	MetadataTotal, MetadataWritten int
	// ContentTotal and ContentWritten count content objects.
	ContentTotal, ContentWritten int
	// ContentBytesWritten is the size of the content objects written.
	ContentBytesWritten int64
}

// Root names the root directory of a written tree, what a [Commit] points
// to.
type Root struct {
	Contents Checksum // dirtree
	Meta     Checksum // dirmeta
}

// Writer writes objects, commits and refs into a bare ostree repository
// directory, as root: content objects are regular files and symlinks with
// the owner, mode and extended attributes of the file they hold, and
// modification time 0 (ostree sets it on regular files; the Writer sets it
// on symlinks too). Metadata objects are files of mode 0644. Objects
// already present are not written again.
//
// The output is deterministic: the same trees and commits give the same
// objects and checksums as `ostree commit` of the same files. A Writer is
// not safe for concurrent use; it uses several goroutines internally. After
// an error, every method returns that error; [Writer.Close] must be called
// in any case.
type Writer struct {
	root  string
	dir   *os.File // the repository
	tmp   *os.File // its tmp directory
	opts  Options
	err   error
	fanMu sync.Mutex
	fans  [256]bool

	seenMu sync.Mutex
	seen   map[Checksum]bool // objects known to be present

	metaTotal, metaWritten, contentTotal, contentWritten atomic.Int64
	contentBytes                                         atomic.Int64
}

// Init creates a bare repository at dir (and dir itself if missing) as
// `ostree init --mode=bare` does: the config file [Config] and the
// directories objects, tmp, tmp/cache, extensions, state, refs/heads,
// refs/mirrors and refs/remotes. An existing repository is left alone if
// it is in bare mode.
func Init(dir string) error {
	if b, err := os.ReadFile(filepath.Join(dir, "config")); err == nil {
		if !isBareConfig(string(b)) {
			return fmt.Errorf("ostree: %s: %w: not a bare repository", dir, ErrInvalid)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("ostree: creating repository: %w", err)
	}
	for _, d := range repoDirs {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("ostree: creating repository: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(Config), 0o644); err != nil {
		return fmt.Errorf("ostree: creating repository: %w", err)
	}
	return nil
}

// isBareConfig reports whether a repository config says mode=bare.
func isBareConfig(cfg string) bool {
	section := ""
	for _, line := range strings.Split(cfg, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && section == "[core]" && strings.TrimSpace(k) == "mode" {
			return strings.TrimSpace(v) == "bare"
		}
	}
	return false
}

// NewWriter opens the bare repository at dir for writing, creating it
// with [Init] if it does not exist.
func NewWriter(dir string, opts *Options) (*Writer, error) {
	if err := Init(dir); err != nil {
		return nil, err
	}
	w := &Writer{root: dir, seen: make(map[Checksum]bool)}
	if opts != nil {
		w.opts = *opts
	}
	if w.opts.Threads <= 0 {
		w.opts.Threads = runtime.GOMAXPROCS(0)
	}
	var err error
	if w.dir, err = os.Open(dir); err != nil {
		return nil, fmt.Errorf("ostree: %w", err)
	}
	if w.tmp, err = os.Open(filepath.Join(dir, "tmp")); err != nil {
		w.dir.Close()
		return nil, fmt.Errorf("ostree: %w", err)
	}
	return w, nil
}

// Stats returns the counts so far.
func (w *Writer) Stats() Stats {
	return Stats{
		MetadataTotal:       int(w.metaTotal.Load()),
		MetadataWritten:     int(w.metaWritten.Load()),
		ContentTotal:        int(w.contentTotal.Load()),
		ContentWritten:      int(w.contentWritten.Load()),
		ContentBytesWritten: w.contentBytes.Load(),
	}
}

// Close makes the repository durable (one syncfs(2), unless
// [Options.NoSync]), releases the Writer and returns its sticky error.
func (w *Writer) Close() error {
	if w.dir == nil {
		return w.err
	}
	if w.err == nil && !w.opts.NoSync {
		if err := unix.Syncfs(int(w.dir.Fd())); err != nil {
			w.err = fmt.Errorf("ostree: syncfs: %w", err)
		}
	}
	w.tmp.Close()
	w.dir.Close()
	w.dir = nil
	if w.err == nil {
		w.err = errors.New("ostree: writer closed")
		return nil
	}
	return w.err
}

// fail records err as the sticky error.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// dirNode is a directory of the tree being written.
type dirNode struct {
	ino   *composefs.Inode
	files []fileRef
	dirs  []dirRef
}

type fileRef struct {
	name string
	obj  *contentObj
}

type dirRef struct {
	name string
	node *dirNode
}

// contentObj is one content object to write: a regular file or symlink
// inode (hard links share one).
type contentObj struct {
	name string // primary path, for errors and Options.Open
	ino  *composefs.Inode
	sum  Checksum
}

// WriteTree writes the content, dirtree and dirmeta objects of t and
// returns its root. Regular files and symbolic links become content
// objects (hard links share one); directories become dirtree and dirmeta
// objects; modification times and link counts are not part of ostree's
// model and are ignored, and so are extended attributes with an empty
// value (ostree never records them when it reads files). Devices, FIFOs and sockets are rejected with
// [ErrInvalid], as are names that are not valid UTF-8.
//
// Content is hashed and written on [Options.Threads] goroutines, each
// file's content read once.
func (w *Writer) WriteTree(t *composefs.Tree) (Root, error) {
	if w.err != nil {
		return Root{}, w.err
	}
	dirs := map[string]*dirNode{}
	objs := map[*composefs.Inode]*contentObj{}
	var order []*contentObj
	err := t.Walk(func(name string, ino *composefs.Inode, link bool) error {
		if name == "/" {
			dirs["/"] = &dirNode{ino: ino}
			return nil
		}
		parent := dirs[path.Dir(name)]
		base := path.Base(name)
		if err := validName(base); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		switch ino.Mode.Type() {
		case composefs.TypeDir:
			n := &dirNode{ino: ino}
			dirs[name] = n
			parent.dirs = append(parent.dirs, dirRef{base, n})
		case composefs.TypeRegular, composefs.TypeSymlink:
			o := objs[ino]
			if o == nil {
				o = &contentObj{name: name, ino: ino}
				objs[ino] = o
				order = append(order, o)
			}
			parent.files = append(parent.files, fileRef{base, o})
		default:
			return fmt.Errorf("%s: %w: file type %o not supported by ostree", name, ErrInvalid, uint32(ino.Mode.Type()))
		}
		return nil
	})
	if err != nil {
		return Root{}, w.fail(fmt.Errorf("ostree: %w", err))
	}
	if err := w.writeContents(order); err != nil {
		return Root{}, w.fail(err)
	}
	root, err := w.writeDir("/", dirs["/"])
	if err != nil {
		return Root{}, w.fail(err)
	}
	return root, nil
}

// writeContents writes the content objects on Threads goroutines.
func (w *Writer) writeContents(objs []*contentObj) error {
	var (
		next    atomic.Int64
		errOnce sync.Once
		first   error
		failed  atomic.Bool
		wg      sync.WaitGroup
	)
	for range min(w.opts.Threads, max(len(objs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= len(objs) {
					return
				}
				if err := w.writeContent(objs[i], buf); err != nil {
					errOnce.Do(func() { first = err })
					failed.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func headerOf(ino *composefs.Inode) *FileHeader {
	h := &FileHeader{UID: ino.UID, GID: ino.GID, Mode: uint32(ino.Mode)}
	if ino.Mode.Type() == composefs.TypeSymlink {
		h.Target = ino.Target
	}
	h.Xattrs = xattrsOf(ino)
	return h
}

// xattrsOf returns the extended attributes of ino as ostree records them
// when it reads a file: attributes with an empty value are left out
// (libglnx skips them), the rest is sorted when encoded.
func xattrsOf(ino *composefs.Inode) []Xattr {
	var xs []Xattr
	for _, x := range ino.Xattrs {
		if x.Value != "" {
			xs = append(xs, Xattr{Name: x.Name, Value: x.Value})
		}
	}
	return xs
}

// openContent returns the content of a regular file.
func (w *Writer) openContent(o *contentObj) (io.ReadCloser, error) {
	ino := o.ino
	switch {
	case ino.Size == 0 || int64(len(ino.Content)) == ino.Size:
		return io.NopCloser(bytes.NewReader(ino.Content)), nil
	case w.opts.Open != nil:
		return w.opts.Open(o.name, ino)
	case w.opts.Objects != nil && ino.Payload != "":
		return w.opts.Objects.Open(ino.Payload)
	}
	return nil, fmt.Errorf("%w: no content source for external file", ErrInvalid)
}

// markSeen records an object as present and reports whether it already was.
func (w *Writer) markSeen(c Checksum) bool {
	w.seenMu.Lock()
	defer w.seenMu.Unlock()
	if w.seen[c] {
		return true
	}
	w.seen[c] = true
	return false
}

// present reports whether the object file rel exists.
func (w *Writer) present(rel string) bool {
	var st unix.Stat_t
	return unix.Fstatat(int(w.dir.Fd()), rel, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// fanout creates the objects/XX directory of c.
func (w *Writer) fanout(c Checksum) error {
	w.fanMu.Lock()
	defer w.fanMu.Unlock()
	if w.fans[c[0]] {
		return nil
	}
	err := unix.Mkdirat(int(w.dir.Fd()), "objects/"+c.String()[:2], 0o755)
	if err != nil && err != unix.EEXIST {
		return fmt.Errorf("ostree: creating object directory: %w", err)
	}
	w.fans[c[0]] = true
	return nil
}

var tmpSeq atomic.Uint64

func tmpName() string {
	return "cfs-tmp-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(tmpSeq.Add(1), 10)
}

// tmpFile is a file being written in the repository's tmp directory:
// anonymous (O_TMPFILE) when the filesystem allows, else named.
type tmpFile struct {
	fd   int
	name string // "" for an anonymous file
}

func (w *Writer) createTmp() (tmpFile, error) {
	fd, err := unix.Openat(int(w.tmp.Fd()), ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return tmpFile{fd: fd}, nil
	}
	name := tmpName()
	fd, err = unix.Openat(int(w.tmp.Fd()), name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return tmpFile{}, fmt.Errorf("ostree: creating temporary file: %w", err)
	}
	return tmpFile{fd: fd, name: name}, nil
}

// discard drops a temporary file.
func (w *Writer) discard(f tmpFile) {
	unix.Close(f.fd)
	if f.name != "" {
		unix.Unlinkat(int(w.tmp.Fd()), f.name, 0)
	}
}

// commitTmp gives the temporary file f its final name rel (an existing
// object of that name wins) and closes it.
func (w *Writer) commitTmp(f tmpFile, rel string) error {
	defer w.discard(f)
	var err error
	if f.name == "" {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(f.fd), int(w.dir.Fd()), rel, unix.AT_SYMLINK_FOLLOW)
	} else {
		err = unix.Linkat(int(w.tmp.Fd()), f.name, int(w.dir.Fd()), rel, 0)
	}
	if err != nil && err != unix.EEXIST {
		return fmt.Errorf("ostree: storing %s: %w", rel, err)
	}
	return nil
}

// writeAll writes p to fd.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// writeContent hashes and stores one content object.
func (w *Writer) writeContent(o *contentObj, buf []byte) error {
	h := headerOf(o.ino)
	s, err := h.checksumHeader()
	if err != nil {
		return fmt.Errorf("ostree: %s: %w", o.name, err)
	}
	if o.ino.Mode.Type() == composefs.TypeSymlink {
		o.sum = Checksum(s.Sum(nil))
		return w.storeSymlink(o, h)
	}
	r, err := w.openContent(o)
	if err != nil {
		return fmt.Errorf("ostree: %s: reading content: %w", o.name, err)
	}
	defer r.Close()
	f, err := w.createTmp()
	if err != nil {
		return err
	}
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			s.Write(buf[:k])
			if err := writeAll(f.fd, buf[:k]); err != nil {
				w.discard(f)
				return fmt.Errorf("ostree: %s: writing object: %w", o.name, err)
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			w.discard(f)
			return fmt.Errorf("ostree: %s: reading content: %w", o.name, rerr)
		}
	}
	if n != o.ino.Size {
		w.discard(f)
		return fmt.Errorf("ostree: %s: %w: content is %d bytes, inode size %d", o.name, ErrInvalid, n, o.ino.Size)
	}
	o.sum = Checksum(s.Sum(nil))
	w.contentTotal.Add(1)
	rel := ObjectPath(o.sum, ObjectFile)
	if w.markSeen(o.sum) || w.present(rel) {
		w.discard(f)
		return nil
	}
	if err := w.fanout(o.sum); err != nil {
		w.discard(f)
		return err
	}
	if err := applyMeta(f.fd, h); err != nil {
		w.discard(f)
		return fmt.Errorf("ostree: %s: %w", o.name, err)
	}
	if err := w.commitTmp(f, rel); err != nil {
		return err
	}
	w.contentWritten.Add(1)
	w.contentBytes.Add(n)
	return nil
}

// applyMeta gives an object file its owner, mode, extended attributes and
// modification time 0, in the order ostree does (chown clears set-id bits,
// so chmod follows it).
func applyMeta(fd int, h *FileHeader) error {
	if err := unix.Fchown(fd, int(h.UID), int(h.GID)); err != nil {
		return fmt.Errorf("fchown: %w", err)
	}
	if err := unix.Fchmod(fd, h.Mode&0o7777); err != nil {
		return fmt.Errorf("fchmod: %w", err)
	}
	for _, x := range h.Xattrs {
		if err := unix.Fsetxattr(fd, x.Name, []byte(x.Value), 0); err != nil {
			return fmt.Errorf("setting extended attribute %s: %w", x.Name, err)
		}
	}
	if err := futimensZero(fd); err != nil {
		return fmt.Errorf("setting mtime: %w", err)
	}
	return nil
}

// futimensZero sets the modification time of fd to the epoch, leaving the
// access time (futimens(3): utimensat with a NULL path).
func futimensZero(fd int) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, {}}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// storeSymlink stores the symlink object o (checksum known).
func (w *Writer) storeSymlink(o *contentObj, h *FileHeader) error {
	w.contentTotal.Add(1)
	rel := ObjectPath(o.sum, ObjectFile)
	if w.markSeen(o.sum) || w.present(rel) {
		return nil
	}
	if err := w.fanout(o.sum); err != nil {
		return err
	}
	tmpfd := int(w.tmp.Fd())
	name := tmpName()
	if err := unix.Symlinkat(h.Target, tmpfd, name); err != nil {
		return fmt.Errorf("ostree: %s: creating symlink: %w", o.name, err)
	}
	err := func() error {
		if err := unix.Fchownat(tmpfd, name, int(h.UID), int(h.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("lchown: %w", err)
		}
		p := filepath.Join(w.root, "tmp", name)
		for _, x := range h.Xattrs {
			if err := unix.Lsetxattr(p, x.Name, []byte(x.Value), 0); err != nil {
				return fmt.Errorf("setting extended attribute %s: %w", x.Name, err)
			}
		}
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {}}
		if err := unix.UtimesNanoAt(tmpfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting mtime: %w", err)
		}
		err := unix.Renameat2(tmpfd, name, int(w.dir.Fd()), rel, unix.RENAME_NOREPLACE)
		if err == unix.EEXIST {
			return unix.Unlinkat(tmpfd, name, 0)
		}
		return err
	}()
	if err != nil {
		unix.Unlinkat(tmpfd, name, 0)
		return fmt.Errorf("ostree: %s: %w", o.name, err)
	}
	w.contentWritten.Add(1)
	return nil
}

// writeMeta stores a metadata object and returns its checksum.
func (w *Writer) writeMeta(t ObjectType, data []byte) (Checksum, error) {
	c := Checksum(sha256.Sum256(data))
	w.metaTotal.Add(1)
	rel := ObjectPath(c, t)
	if w.markSeen(c) || w.present(rel) {
		return c, nil
	}
	if err := w.fanout(c); err != nil {
		return c, err
	}
	f, err := w.createTmp()
	if err != nil {
		return c, err
	}
	if err := writeAll(f.fd, data); err != nil {
		w.discard(f)
		return c, fmt.Errorf("ostree: writing %s: %w", rel, err)
	}
	if err := unix.Fchmod(f.fd, 0o644); err != nil {
		w.discard(f)
		return c, fmt.Errorf("ostree: writing %s: %w", rel, err)
	}
	if err := w.commitTmp(f, rel); err != nil {
		return c, err
	}
	w.metaWritten.Add(1)
	return c, nil
}

// writeDir writes the dirmeta and dirtree objects of a directory, its
// subdirectories first.
func (w *Writer) writeDir(name string, n *dirNode) (Root, error) {
	var t DirTree
	for _, f := range n.files {
		t.Files = append(t.Files, TreeFile{Name: f.name, Checksum: f.obj.sum})
	}
	for _, d := range n.dirs {
		r, err := w.writeDir(path.Join(name, d.name), d.node)
		if err != nil {
			return Root{}, err
		}
		t.Dirs = append(t.Dirs, TreeDir{Name: d.name, Contents: r.Contents, Meta: r.Meta})
	}
	m := DirMeta{UID: n.ino.UID, GID: n.ino.GID, Mode: uint32(n.ino.Mode)}
	m.Xattrs = xattrsOf(n.ino)
	mb, err := m.MarshalBinary()
	if err != nil {
		return Root{}, fmt.Errorf("ostree: %s: %w", name, err)
	}
	tb, err := t.MarshalBinary()
	if err != nil {
		return Root{}, fmt.Errorf("ostree: %s: %w", name, err)
	}
	var r Root
	if r.Meta, err = w.writeMeta(ObjectDirMeta, mb); err != nil {
		return Root{}, err
	}
	if r.Contents, err = w.writeMeta(ObjectDirTree, tb); err != nil {
		return Root{}, err
	}
	return r, nil
}

// WriteCommit writes the commit object c and returns its checksum. The
// commit's root objects should have been written (by [Writer.WriteTree]).
func (w *Writer) WriteCommit(c *Commit) (Checksum, error) {
	if w.err != nil {
		return Checksum{}, w.err
	}
	b, err := c.MarshalBinary()
	if err != nil {
		return Checksum{}, w.fail(fmt.Errorf("ostree: commit: %w", err))
	}
	sum, err := w.writeMeta(ObjectCommit, b)
	if err != nil {
		return Checksum{}, w.fail(err)
	}
	return sum, nil
}

// refRE matches valid ref names (ostree_validate_rev): slash-separated
// components of letters, digits, '_', '-' and '.', not starting with '.'
// or '-'.
var refRE = regexp.MustCompile(`^[\w\d][-._\w\d]*(/[\w\d][-._\w\d]*)*$`)

// ValidRef reports whether name is a valid ref name.
func ValidRef(name string) bool { return refRE.MatchString(name) }

// SetRef points the local ref name (refs/heads/name) at commit c: the file
// holds the checksum in hex and a newline. The file is replaced
// atomically.
func (w *Writer) SetRef(name string, c Checksum) error {
	if w.err != nil {
		return w.err
	}
	if !ValidRef(name) {
		return w.fail(fmt.Errorf("ostree: %w: ref %q", ErrInvalid, name))
	}
	p := filepath.Join(w.root, "refs", "heads", filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return w.fail(fmt.Errorf("ostree: ref %s: %w", name, err))
	}
	tmp := filepath.Join(w.root, "tmp", tmpName())
	if err := os.WriteFile(tmp, []byte(c.String()+"\n"), 0o644); err != nil {
		return w.fail(fmt.Errorf("ostree: ref %s: %w", name, err))
	}
	if err := atomicfile.Publish(tmp, p); err != nil {
		return w.fail(fmt.Errorf("ostree: ref %s: %w", name, err))
	}
	return nil
}
