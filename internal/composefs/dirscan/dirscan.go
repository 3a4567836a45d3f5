// Package dirscan builds a composefs tree from a directory on disk with
// the semantics of mkcomposefs (composefs 1.0.8), so that images built from
// the same directory are byte-identical:
//
//   - every file, directory, symlink, device, FIFO and socket becomes an
//     inode with its mode, owner, mtime (seconds and nanoseconds), device
//     number and extended attributes (in listxattr order);
//   - regular files of at most [composefs.InlineThreshold] (64) bytes are
//     stored inline; larger ones get their fs-verity digest computed and,
//     if a [Storer] is given, their content stored under that digest;
//     their payload is the object path "XX/YYYY…";
//   - hard links are not detected: each name of a multiply-linked file
//     becomes its own inode with link count 1 (as mkcomposefs does);
//   - directory link counts are recomputed by the image writer.
//
// File contents are read on several goroutines ([Options.Threads]) while
// the directory walk goes on; each file is read once.
package dirscan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

// Storer stores file content and returns its fs-verity digest and size.
// *objstore.Store implements it. Put must be safe for concurrent use.
type Storer interface {
	Put(r io.Reader) (digest [fsverity.Size]byte, size int64, err error)
}

// Options control a scan. The zero value scans everything with
// GOMAXPROCS content workers and stores nothing.
type Options struct {
	// SkipXattrs drops all extended attributes (mkcomposefs --skip-xattrs).
	SkipXattrs bool
	// UserXattrs keeps only user.* attributes (mkcomposefs --user-xattrs).
	UserXattrs bool
	// SkipDevices drops character and block devices, whiteouts included
	// (mkcomposefs --skip-devices).
	SkipDevices bool
	// UseEpoch sets every mtime to 0 (mkcomposefs --use-epoch).
	UseEpoch bool
	// Threads is the number of goroutines reading file content; 0 means
	// runtime.GOMAXPROCS(0).
	Threads int
	// Store receives the content of every file larger than
	// composefs.InlineThreshold; nil only computes digests.
	Store Storer
}

// job is the content work for one regular file.
type job struct {
	path string
	ino  *composefs.Inode
}

// scanner holds the state of one Scan.
type scanner struct {
	ctx  context.Context
	opts Options
	tree *composefs.Tree
	jobs chan job

	mu  sync.Mutex
	err error // first worker error
}

// Scan reads the directory dir into a new tree. Errors name the path in the
// source tree at fault.
func Scan(ctx context.Context, dir string, opts *Options) (*composefs.Tree, error) {
	s := &scanner{ctx: ctx, tree: composefs.NewTree()}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.SkipXattrs && s.opts.UserXattrs {
		return nil, errors.New("dirscan: SkipXattrs and UserXattrs conflict")
	}
	threads := s.opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, fmt.Errorf("scanning %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("scanning %s: %w", dir, syscall.ENOTDIR)
	}

	s.jobs = make(chan job, 256)
	var wg sync.WaitGroup
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range s.jobs {
				if s.failed() {
					continue
				}
				if err := s.content(j); err != nil {
					s.fail(err)
				}
			}
		}()
	}

	root, err := s.inode(dir, &st)
	if err == nil {
		err = s.tree.Add("/", root)
	}
	if err == nil {
		err = s.walk(dir, "", 1)
	}
	close(s.jobs)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if s.err != nil {
		return nil, s.err
	}
	return s.tree, nil
}

func (s *scanner) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *scanner) failed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

// walk adds the entries of the directory at src (tree path rel) to the tree.
func (s *scanner) walk(src, rel string, depth int) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if s.failed() {
		return nil
	}
	if depth > composefs.MaxDepth {
		return fmt.Errorf("scanning %s: directories nested deeper than %d", src, composefs.MaxDepth)
	}
	d, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("scanning %s: %w", src, err)
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return fmt.Errorf("scanning %s: %w", src, err)
	}
	dirfd := int(d.Fd())
	var subdirs []string
	for _, name := range names {
		p := filepath.Join(src, name)
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			d.Close()
			return fmt.Errorf("scanning %s: %w", p, err)
		}
		typ := st.Mode & unix.S_IFMT
		if s.opts.SkipDevices && (typ == unix.S_IFCHR || typ == unix.S_IFBLK) {
			continue
		}
		ino, err := s.inode(p, &st)
		if err != nil {
			d.Close()
			return err
		}
		if typ == unix.S_IFLNK {
			buf := make([]byte, composefs.MaxPathLen+1)
			n, err := unix.Readlinkat(dirfd, name, buf)
			if err != nil {
				d.Close()
				return fmt.Errorf("scanning %s: reading symlink: %w", p, err)
			}
			if n > composefs.MaxPathLen {
				d.Close()
				return fmt.Errorf("scanning %s: symlink target longer than %d bytes", p, composefs.MaxPathLen)
			}
			ino.Target = string(buf[:n])
		}
		tp := rel + "/" + name
		if err := s.tree.Add(tp, ino); err != nil {
			d.Close()
			return fmt.Errorf("scanning %s: %w", p, err)
		}
		switch typ {
		case unix.S_IFDIR:
			subdirs = append(subdirs, name)
		case unix.S_IFREG:
			if ino.Size > 0 {
				s.jobs <- job{p, ino}
			}
		}
	}
	d.Close()
	for _, name := range subdirs {
		if err := s.walk(filepath.Join(src, name), rel+"/"+name, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// inode creates the inode of one file from its lstat data and extended
// attributes (content and symlink target are filled in separately).
func (s *scanner) inode(p string, st *unix.Stat_t) (*composefs.Inode, error) {
	ino := &composefs.Inode{
		Mode:  composefs.Mode(st.Mode & 0o177777),
		UID:   st.Uid,
		GID:   st.Gid,
		Nlink: 1,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		ino.Size = st.Size
	case unix.S_IFCHR, unix.S_IFBLK:
		ino.Rdev = st.Rdev
	case unix.S_IFDIR, unix.S_IFLNK, unix.S_IFIFO, unix.S_IFSOCK:
	default:
		return nil, fmt.Errorf("scanning %s: unsupported file type %o", p, st.Mode&unix.S_IFMT)
	}
	if !s.opts.UseEpoch {
		ino.Mtime = composefs.Timespec{Sec: st.Mtim.Sec, Nsec: uint32(st.Mtim.Nsec)}
	}
	if !s.opts.SkipXattrs {
		if err := s.xattrs(p, ino); err != nil {
			return nil, fmt.Errorf("scanning %s: %w", p, err)
		}
	}
	return ino, nil
}

// xattrs reads the extended attributes of p (not following symlinks).
func (s *scanner) xattrs(p string, ino *composefs.Inode) error {
	buf := make([]byte, 4096)
	var n int
	for {
		var err error
		n, err = unix.Llistxattr(p, buf)
		if err == unix.ERANGE {
			sz, err := unix.Llistxattr(p, nil)
			if err != nil {
				return fmt.Errorf("listing extended attributes: %w", err)
			}
			buf = make([]byte, sz+1024)
			continue
		}
		if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listing extended attributes: %w", err)
		}
		break
	}
	if n == 0 {
		return nil
	}
	for _, name := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if s.opts.UserXattrs && !strings.HasPrefix(name, "user.") {
			continue
		}
		value, err := lgetxattr(p, name)
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return fmt.Errorf("reading extended attribute %s: %w", name, err)
		}
		if err := ino.SetXattr(name, string(value)); err != nil {
			return err
		}
	}
	return nil
}

func lgetxattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if err == unix.ERANGE {
			sz, err := unix.Lgetxattr(p, name, nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz+256)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// content reads one regular file: inline content for small files, digest
// (and store) for the others.
func (s *scanner) content(j job) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("scanning %s: %w", j.path, err)
	}
	defer f.Close()
	size := j.ino.Size
	if size <= composefs.InlineThreshold {
		buf := make([]byte, size+1)
		n, err := io.ReadFull(f, buf)
		if err != io.ErrUnexpectedEOF {
			if err == nil {
				err = errors.New("file grew during the scan")
			}
			return fmt.Errorf("scanning %s: %w", j.path, err)
		}
		if int64(n) != size {
			return fmt.Errorf("scanning %s: file changed size during the scan (%d bytes, was %d)", j.path, n, size)
		}
		j.ino.Content = buf[:n]
		return nil
	}
	var d [fsverity.Size]byte
	var n int64
	if s.opts.Store != nil {
		d, n, err = s.opts.Store.Put(f)
	} else {
		d, n, err = fsverity.SumReader(f)
	}
	if err != nil {
		return fmt.Errorf("scanning %s: %w", j.path, err)
	}
	if n != size {
		return fmt.Errorf("scanning %s: file changed size during the scan (%d bytes, was %d)", j.path, n, size)
	}
	j.ino.SetObject(d)
	return nil
}
