// Package initramfs writes Linux initramfs archives: newc ("070701") cpio,
// optionally compressed with gzip or zstd, as the kernel unpacks them
// (Documentation/driver-api/early-userspace/buffer-format.rst).
//
// Archives are deterministic: entries are sorted by path, every parent
// directory is written explicitly (mode 0755 unless added with another
// mode) before its children, modification times, owners and device numbers
// of the archive are zero, inode numbers are assigned in order, and the
// compressors write no names or times. The same entries give the same
// bytes.
//
// [Writer] collects entries and writes the archive on Close. [Read]
// reads an uncompressed or compressed archive back (tests, inspection).
//
// # Security
//
// The reader trusts nothing: it bounds names and sizes through the cpio
// library's checks and rejects paths that are not clean relative paths.
package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// Compression selects the archive compression.
type Compression int

// Compressions the kernel can unpack (Debian and Fedora kernels enable
// all of them).
const (
	None Compression = iota
	Gzip
	Zstd
)

// String returns "none", "gzip" or "zstd".
func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// Errors callers can test for.
var (
	// ErrDuplicate means two entries have the same path.
	ErrDuplicate = errors.New("initramfs: duplicate path")
	// ErrPath means a path is not a clean relative path.
	ErrPath = errors.New("initramfs: invalid path")
	// ErrClosed means the Writer was already closed.
	ErrClosed = errors.New("initramfs: write after close")
)

// Type is an entry type.
type Type int

// Entry types.
const (
	TypeFile Type = iota
	TypeDir
	TypeSymlink
	TypeCharDev
)

// Entry is one archive member.
type Entry struct {
	Path         string      // clean relative path, e.g. "lib/modules/erofs.ko"
	Type         Type        //
	Perm         fs.FileMode // permission bits (0o7777 mask)
	Data         []byte      // file contents
	Target       string      // symlink target
	Major, Minor uint32      // device numbers (TypeCharDev)
}

// Writer collects entries and writes the archive to w on Close. It keeps
// the first error (sticky).
type Writer struct {
	w       io.Writer
	comp    Compression
	entries map[string]Entry
	err     error
	closed  bool
}

// NewWriter returns a Writer writing an archive compressed with c to w.
func NewWriter(w io.Writer, c Compression) *Writer {
	return &Writer{w: w, comp: c, entries: map[string]Entry{}}
}

// Add adds an entry; parent directories are implied. A path given twice is
// an error wrapping [ErrDuplicate], except a directory given again with the
// same permissions.
func (w *Writer) Add(e Entry) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	if e.Path == "" || e.Path == "." || !fs.ValidPath(e.Path) {
		w.err = fmt.Errorf("%w: %q", ErrPath, e.Path)
		return w.err
	}
	if old, dup := w.entries[e.Path]; dup {
		if old.Type == TypeDir && e.Type == TypeDir && old.Perm == e.Perm {
			return nil
		}
		w.err = fmt.Errorf("%w: %s", ErrDuplicate, e.Path)
		return w.err
	}
	w.entries[e.Path] = e
	return nil
}

// AddFile adds a regular file.
func (w *Writer) AddFile(p string, data []byte, perm fs.FileMode) error {
	return w.Add(Entry{Path: p, Type: TypeFile, Perm: perm, Data: data})
}

// AddDir adds a directory.
func (w *Writer) AddDir(p string, perm fs.FileMode) error {
	return w.Add(Entry{Path: p, Type: TypeDir, Perm: perm})
}

// AddSymlink adds a symbolic link.
func (w *Writer) AddSymlink(p, target string) error {
	return w.Add(Entry{Path: p, Type: TypeSymlink, Perm: 0o777, Target: target})
}

// AddCharDev adds a character device node.
func (w *Writer) AddCharDev(p string, perm fs.FileMode, major, minor uint32) error {
	return w.Add(Entry{Path: p, Type: TypeCharDev, Perm: perm, Major: major, Minor: minor})
}

// records returns the sorted records with explicit parent directories.
func (w *Writer) records() ([]cpio.Record, error) {
	all := map[string]Entry{}
	for p, e := range w.entries {
		all[p] = e
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if pe, ok := w.entries[d]; ok {
				if pe.Type != TypeDir {
					return nil, fmt.Errorf("%w: %s is not a directory but %s is inside it", ErrPath, d, p)
				}
				continue
			}
			all[d] = Entry{Path: d, Type: TypeDir, Perm: 0o755}
		}
	}
	paths := make([]string, 0, len(all))
	for p := range all {
		paths = append(paths, p)
	}
	// Sorting by path puts every directory before its children ("a" <
	// "a/b"); compare component-wise so "a/b" precedes "a-b".
	sort.Slice(paths, func(i, j int) bool {
		return strings.ReplaceAll(paths[i], "/", "\x00") < strings.ReplaceAll(paths[j], "/", "\x00")
	})
	recs := make([]cpio.Record, 0, len(paths))
	for i, p := range paths {
		e := all[p]
		perm := uint64(e.Perm.Perm()) | uint64(e.Perm&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)>>12)
		var r cpio.Record
		switch e.Type {
		case TypeFile:
			r = cpio.StaticRecord(e.Data, cpio.Info{Name: p, Mode: cpio.S_IFREG | perm})
		case TypeDir:
			r = cpio.Directory(p, perm)
		case TypeSymlink:
			r = cpio.Symlink(p, e.Target)
		case TypeCharDev:
			r = cpio.CharDev(p, perm, uint64(e.Major), uint64(e.Minor))
		default:
			return nil, fmt.Errorf("initramfs: %s: unknown entry type %d", p, e.Type)
		}
		r = cpio.MakeReproducible(r)
		r.Ino = uint64(i + 1)
		r.NLink = 1
		if e.Type == TypeDir {
			r.NLink = 2
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// Close writes the archive and the trailer, and flushes the compressor. It
// does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	w.closed = true
	recs, err := w.records()
	if err != nil {
		w.err = err
		return err
	}
	var out io.Writer = w.w
	var flush func() error
	switch w.comp {
	case None:
		flush = func() error { return nil }
	case Gzip:
		gw, err := gzip.NewWriterLevel(w.w, gzip.BestCompression)
		if err != nil {
			return err
		}
		gw.Header.OS = 3 // Unix; ModTime and Name stay zero
		out, flush = gw, gw.Close
	case Zstd:
		zw, err := zstd.NewWriter(w.w, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
		if err != nil {
			return err
		}
		out, flush = zw, zw.Close
	default:
		w.err = fmt.Errorf("initramfs: unknown compression %v", w.comp)
		return w.err
	}
	rw := cpio.Newc.Writer(out)
	if err := cpio.WriteRecords(rw, recs); err != nil {
		w.err = fmt.Errorf("initramfs: %w", err)
		return w.err
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		w.err = fmt.Errorf("initramfs: writing trailer: %w", err)
		return w.err
	}
	if err := flush(); err != nil {
		w.err = fmt.Errorf("initramfs: compressing: %w", err)
		return w.err
	}
	return nil
}

// maxArchive bounds what Read decompresses.
const maxArchive = 2 << 30

// Read parses an archive (compressed with gzip or zstd, or not; detected by
// magic) and returns its entries in archive order.
func Read(r io.Reader) ([]Entry, error) {
	br := bufio.NewReader(r)
	head, err := br.Peek(4)
	if err != nil && len(head) == 0 {
		return nil, fmt.Errorf("initramfs: reading: %w", err)
	}
	var src io.Reader = br
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		gr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("initramfs: gzip: %w", err)
		}
		src = gr
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("initramfs: zstd: %w", err)
		}
		defer zr.Close()
		src = zr
	}
	data, err := io.ReadAll(io.LimitReader(src, maxArchive))
	if err != nil {
		return nil, fmt.Errorf("initramfs: decompressing: %w", err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(data)))
	if err != nil {
		return nil, fmt.Errorf("initramfs: reading cpio: %w", err)
	}
	var out []Entry
	for _, rec := range recs {
		e := Entry{Path: rec.Name, Perm: fs.FileMode(rec.Mode & 0o777)}
		if !fs.ValidPath(e.Path) || e.Path == "." {
			return nil, fmt.Errorf("%w: %q in archive", ErrPath, rec.Name)
		}
		var body []byte
		if rec.ReaderAt != nil && rec.FileSize > 0 {
			body = make([]byte, rec.FileSize)
			if _, err := rec.ReadAt(body, 0); err != nil && err != io.EOF {
				return nil, fmt.Errorf("initramfs: reading %s: %w", rec.Name, err)
			}
		}
		switch rec.Mode & cpio.S_IFMT {
		case cpio.S_IFREG:
			e.Type, e.Data = TypeFile, body
		case cpio.S_IFDIR:
			e.Type = TypeDir
		case cpio.S_IFLNK:
			e.Type, e.Target = TypeSymlink, string(body)
		case cpio.S_IFCHR:
			e.Type, e.Major, e.Minor = TypeCharDev, uint32(rec.Rmajor), uint32(rec.Rminor)
		default:
			return nil, fmt.Errorf("initramfs: %s: unsupported file type %#o", rec.Name, rec.Mode&cpio.S_IFMT)
		}
		out = append(out, e)
	}
	return out, nil
}

// newcHeaderSize is the size of a newc cpio header: the magic and 13
// eight-digit hexadecimal fields.
const newcHeaderSize = 110

// FindFile returns the content of the regular file name in the
// uncompressed newc archives of an initramfs image data (compressed parts
// are skipped: it finds files a tool appended as a plain archive, like a
// key file, without unpacking the rest). The last such file wins, as when
// the kernel unpacks them in order.
func FindFile(data []byte, name string) ([]byte, bool) {
	needle := []byte(name + "\x00")
	var found []byte
	ok := false
	for off := 0; ; {
		i := bytes.Index(data[off:], needle)
		if i < 0 {
			return found, ok
		}
		at := off + i
		off = at + 1
		h := at - newcHeaderSize
		if h < 0 || string(data[h:h+6]) != "070701" {
			continue
		}
		field := func(n int) (uint64, bool) {
			v, err := strconv.ParseUint(string(data[h+6+8*n:h+6+8*n+8]), 16, 32)
			return v, err == nil
		}
		mode, ok1 := field(1)
		size, ok2 := field(6)
		nameSize, ok3 := field(11)
		if !ok1 || !ok2 || !ok3 || int(nameSize) != len(needle) || mode&0o170000 != 0o100000 {
			continue
		}
		// The header and name are padded to a multiple of 4 bytes.
		start := h + ((newcHeaderSize + len(needle) + 3) &^ 3)
		if start+int(size) > len(data) {
			continue
		}
		found, ok = data[start:start+int(size)], true
	}
}
