package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"
)

// Header describes one file or directory to write.
type Header struct {
	// Name is the slash-separated path inside the volume, for example
	// "EFI/BOOT/BOOTX64.EFI". Leading and trailing slashes are ignored.
	// Names are case-preserving but compared case-insensitively.
	Name string
	// Size is a regular file's length in bytes (less than 4 GiB); exactly
	// Size bytes must follow through Write. Ignored for directories.
	Size int64
	// Dir makes the entry a directory.
	Dir bool
	// ModTime is the entry's timestamp (2-second resolution, UTC); zero
	// means Options.Time.
	ModTime time.Time
}

// Options configures a new volume. The zero value is valid.
type Options struct {
	// Label is the volume label: at most 11 characters from A-Z, 0-9,
	// space and !#$%&'()-@^_`{}~, lower case is upper-cased. Empty means
	// "NO NAME" and no label entry in the root directory.
	Label string
	// VolumeID is the volume serial number.
	VolumeID uint32
	// Time stamps directories and files without their own ModTime; zero
	// means 1980-01-01T00:00:00Z, the earliest FAT time.
	Time time.Time
	// HiddenSectors is the LBA of the volume on its disk (BPB_HiddSec);
	// firmware ignores it, some boot loaders read it.
	HiddenSectors uint32
}

type node struct {
	name     string
	short    [11]byte
	needsLFN bool
	dir      bool
	mtime    time.Time
	cluster  uint32 // first cluster; 0 for an empty file
	size     uint32
	parent   *node
	children []*node
	nclus    uint32 // clusters for a directory's entries
}

// entryCount is the number of 32-byte entries n occupies in its parent.
func (n *node) entryCount() int {
	if !n.needsLFN {
		return 1
	}
	return 1 + (len([]rune(n.name))+lfnChars-1)/lfnChars
}

// Writer builds a FAT32 volume on an io.WriterAt. Methods return the first
// error for good once one occurs (sticky error).
type Writer struct {
	w    io.WriterAt
	opts Options
	g    geometry
	fat  []uint32
	next uint32 // next free cluster
	root *node
	dirs []*node // every directory, root first, in creation order

	cur       *node // file being written
	remaining int64 // bytes still due for cur
	pos       int64 // bytes written to cur so far
	overflow  bool  // out of clusters: keep counting, stop writing
	needed    int64 // clusters the content needs (counted always)

	err    error
	closed bool
}

// NewWriter prepares a FAT32 volume of size bytes on w, starting at offset
// 0 of w. Nothing is written until data is; the volume is valid only after
// Close succeeds.
func NewWriter(w io.WriterAt, size int64, opts Options) (*Writer, error) {
	g, err := newGeometry(size)
	if err != nil {
		return nil, err
	}
	if _, err := labelBytes(opts.Label); err != nil {
		return nil, err
	}
	if opts.Time.IsZero() {
		opts.Time = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	root := &node{dir: true, mtime: opts.Time, cluster: rootCluster}
	fw := &Writer{w: w, opts: opts, g: g, fat: make([]uint32, g.clusters+2), next: rootCluster + 1, root: root, dirs: []*node{root}}
	fw.fat[0] = 0x0FFFFFF8
	fw.fat[1] = eoc
	fw.fat[rootCluster] = eoc
	return fw, nil
}

// CheckSize reports whether a volume of size bytes can hold a FAT32 file
// system as [NewWriter] lays it out: nil, or the error NewWriter would
// return (wrapping [ErrTooSmall] for a volume with too few clusters). With
// the cluster sizes used, the smallest whole-MiB volume is 33 MiB.
func CheckSize(size int64) error {
	_, err := newGeometry(size)
	return err
}

// labelBytes returns the 11-byte padded volume label.
func labelBytes(label string) ([11]byte, error) {
	var b [11]byte
	copy(b[:], "NO NAME    ")
	if label == "" {
		return b, nil
	}
	up := strings.ToUpper(label)
	if len(up) > 11 {
		return b, fmt.Errorf("%w: volume label %q is longer than 11 characters", ErrName, label)
	}
	for i := range len(up) {
		if up[i] != ' ' && !isShortChar(up[i]) {
			return b, fmt.Errorf("%w: volume label %q contains %q", ErrName, label, up[i])
		}
	}
	copy(b[:], "           ")
	copy(b[:], up)
	return b, nil
}

// ClusterSize returns the volume's cluster size in bytes.
func (w *Writer) ClusterSize() int64 { return w.g.clusterBytes() }

// Available returns the size of the volume's data area in bytes.
func (w *Writer) Available() int64 { return int64(w.g.clusters) * w.g.clusterBytes() }

// WriteHeader starts a new file or directory. The previous file must have
// received all of its bytes.
func (w *Writer) WriteHeader(h *Header) error {
	if err := w.check(); err != nil {
		return err
	}
	if w.remaining > 0 {
		return w.fail(fmt.Errorf("fat: %s: %d of %d bytes missing", w.path(w.cur), w.remaining, w.remaining+w.pos))
	}
	w.cur = nil
	parts, err := splitPath(h.Name)
	if err != nil {
		return w.fail(err)
	}
	mtime := h.ModTime
	if mtime.IsZero() {
		mtime = w.opts.Time
	}
	parent := w.root
	for i, name := range parts[:len(parts)-1] {
		if parent, err = w.mkdir(parent, name, w.opts.Time); err != nil {
			return w.fail(fmt.Errorf("%s: %w", strings.Join(parts[:i+1], "/"), err))
		}
	}
	last := parts[len(parts)-1]
	if h.Dir {
		d, err := w.mkdir(parent, last, mtime)
		if err != nil {
			return w.fail(fmt.Errorf("%s: %w", h.Name, err))
		}
		d.mtime = mtime
		return nil
	}
	if h.Size < 0 || h.Size > maxFileSize {
		return w.fail(fmt.Errorf("fat: %s: size %d outside 0..%d", h.Name, h.Size, int64(maxFileSize)))
	}
	f := &node{name: last, mtime: mtime, size: uint32(h.Size), parent: parent}
	if err := w.link(parent, f); err != nil {
		return w.fail(fmt.Errorf("%s: %w", h.Name, err))
	}
	n := uint32((h.Size + w.g.clusterBytes() - 1) / w.g.clusterBytes())
	w.needed += int64(n)
	if n > 0 && !w.overflow {
		if c, ok := w.alloc(n); ok {
			f.cluster = c
		} else {
			w.overflow = true
		}
	}
	w.cur, w.remaining, w.pos = f, h.Size, 0
	return nil
}

// Write writes file data for the current header; writing past its Size
// returns ErrWriteTooLong.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.check(); err != nil {
		return 0, err
	}
	if w.cur == nil && len(p) > 0 {
		return 0, w.fail(fmt.Errorf("%w: no current file", ErrWriteTooLong))
	}
	if int64(len(p)) > w.remaining {
		return 0, w.fail(fmt.Errorf("%w: %s is %d bytes", ErrWriteTooLong, w.path(w.cur), w.pos+w.remaining))
	}
	if !w.overflow && len(p) > 0 {
		if _, err := w.w.WriteAt(p, w.g.clusterOffset(w.cur.cluster)+w.pos); err != nil {
			return 0, w.fail(fmt.Errorf("fat: writing %s: %w", w.path(w.cur), err))
		}
	}
	w.pos += int64(len(p))
	w.remaining -= int64(len(p))
	return len(p), nil
}

// Close writes the directories, the FATs and the boot sectors. If the
// content did not fit it returns a *SpaceError with the exact numbers.
// Close does not close the underlying io.WriterAt.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	if w.err != nil {
		w.closed = true
		return w.err
	}
	if w.remaining > 0 {
		w.fail(fmt.Errorf("fat: %s: %d of %d bytes missing", w.path(w.cur), w.remaining, w.remaining+w.pos))
		w.closed = true
		return w.err
	}
	w.closed = true
	w.err = w.finish()
	if w.err == nil {
		w.err = ErrWriteAfterClose // sticky for later calls; Close itself reports success
		return nil
	}
	return w.err
}

func (w *Writer) check() error {
	if w.closed {
		return ErrWriteAfterClose
	}
	return w.err
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

func (w *Writer) path(n *node) string {
	if n == nil || n.parent == nil {
		return "/"
	}
	var parts []string
	for ; n.parent != nil; n = n.parent {
		parts = append([]string{n.name}, parts...)
	}
	return strings.Join(parts, "/")
}

// mkdir returns the directory name under parent, creating it if needed.
func (w *Writer) mkdir(parent *node, name string, mtime time.Time) (*node, error) {
	for _, c := range parent.children {
		if strings.EqualFold(c.name, name) {
			if !c.dir {
				return nil, fmt.Errorf("%w: %q exists and is a file", ErrName, c.name)
			}
			return c, nil
		}
	}
	d := &node{name: name, dir: true, mtime: mtime, parent: parent}
	if err := w.link(parent, d); err != nil {
		return nil, err
	}
	w.dirs = append(w.dirs, d)
	return d, nil
}

// link adds n to parent, choosing its short name.
func (w *Writer) link(parent, n *node) error {
	for _, c := range parent.children {
		if strings.EqualFold(c.name, n.name) {
			return fmt.Errorf("%w: %q collides with %q", ErrName, n.name, c.name)
		}
	}
	taken := func(s [11]byte) bool {
		for _, c := range parent.children {
			if c.short == s {
				return true
			}
		}
		return false
	}
	if s, ok := exactShort(n.name); ok {
		if taken(s) {
			return fmt.Errorf("%w: %q collides with a generated short name", ErrName, n.name)
		}
		n.short = s
	} else {
		n.needsLFN = true
		base, ext := shortBasis(n.name)
		for i := 1; ; i++ {
			if i > 999999 {
				return fmt.Errorf("%w: no free short name for %q", ErrName, n.name)
			}
			if s := numericTail(base, ext, i); !taken(s) {
				n.short = s
				break
			}
		}
	}
	parent.children = append(parent.children, n)
	return nil
}

// alloc reserves n contiguous clusters as one chain.
func (w *Writer) alloc(n uint32) (uint32, bool) {
	if uint64(w.next)+uint64(n) > uint64(w.g.clusters)+2 {
		return 0, false
	}
	first := w.next
	for c := first; c < first+n-1; c++ {
		w.fat[c] = c + 1
	}
	w.fat[first+n-1] = eoc
	w.next += n
	return first, true
}

func (w *Writer) finish() error {
	cb := w.g.clusterBytes()
	label, _ := labelBytes(w.opts.Label)
	// Size every directory; the root may grow past cluster 2 by chaining.
	for _, d := range w.dirs {
		count := 0
		if d == w.root {
			if w.opts.Label != "" {
				count++
			}
		} else {
			count += 2 // "." and ".."
		}
		for _, c := range d.children {
			count += c.entryCount()
		}
		d.nclus = uint32((int64(count)*dirEntrySize + cb - 1) / cb)
		if d.nclus == 0 {
			d.nclus = 1
		}
		if d == w.root {
			w.needed += int64(d.nclus)
			if d.nclus > 1 && !w.overflow {
				extra, ok := w.alloc(d.nclus - 1)
				if !ok {
					w.overflow = true
					continue
				}
				w.fat[rootCluster] = extra
			}
			continue
		}
		w.needed += int64(d.nclus)
		if !w.overflow {
			c, ok := w.alloc(d.nclus)
			if !ok {
				w.overflow = true
				continue
			}
			d.cluster = c
		}
	}
	if w.overflow {
		return &SpaceError{Needed: w.needed * cb, Available: w.Available()}
	}
	// Directory contents.
	for _, d := range w.dirs {
		buf := make([]byte, int64(d.nclus)*cb)
		off := 0
		if d == w.root {
			if w.opts.Label != "" {
				putDirEntry(buf[off:], label, attrVolumeID, 0, 0, 0, w.opts.Time)
				off += dirEntrySize
			}
		} else {
			dot, dotdot := [11]byte{}, [11]byte{}
			copy(dot[:], ".          ")
			copy(dotdot[:], "..         ")
			putDirEntry(buf[off:], dot, attrDirectory, 0, d.cluster, 0, d.mtime)
			parentCluster := d.parent.cluster
			if d.parent == w.root {
				parentCluster = 0 // ".." of a first-level directory points to the root as 0
			}
			putDirEntry(buf[off+dirEntrySize:], dotdot, attrDirectory, 0, parentCluster, 0, d.parent.mtime)
			off += 2 * dirEntrySize
		}
		for _, c := range d.children {
			if c.needsLFN {
				l := lfnEntries(c.name, shortChecksum(c.short[:]))
				off += copy(buf[off:], l)
			}
			attr, size := byte(attrArchive), c.size
			if c.dir {
				attr, size = attrDirectory, 0
			}
			putDirEntry(buf[off:], c.short, attr, 0, c.cluster, size, c.mtime)
			off += dirEntrySize
		}
		if err := w.writeChain(d.cluster, buf); err != nil {
			return fmt.Errorf("fat: writing directory %s: %w", w.path(d), err)
		}
	}
	// FATs.
	fatBytes := make([]byte, int64(w.g.fatSectors)*sectorSize)
	for i, v := range w.fat {
		binary.LittleEndian.PutUint32(fatBytes[4*i:], v)
	}
	for i := range numFATs {
		if _, err := w.w.WriteAt(fatBytes, w.g.fatOffset(i)); err != nil {
			return fmt.Errorf("fat: writing FAT %d: %w", i+1, err)
		}
	}
	// Boot sector, FSInfo and their backups.
	boot := w.bootSector(label)
	info := w.fsInfo()
	for _, s := range []struct {
		sector int64
		data   []byte
	}{{0, boot}, {fsInfoSector, info}, {backupBootSect, boot}, {backupBootSect + fsInfoSector, info}} {
		if _, err := w.w.WriteAt(s.data, s.sector*sectorSize); err != nil {
			return fmt.Errorf("fat: writing sector %d: %w", s.sector, err)
		}
	}
	return nil
}

// writeChain writes buf across the cluster chain that starts at c.
func (w *Writer) writeChain(c uint32, buf []byte) error {
	cb := w.g.clusterBytes()
	for off := int64(0); off < int64(len(buf)); off += cb {
		if c < 2 || c >= eoc-8 {
			return fmt.Errorf("cluster chain ends early")
		}
		if _, err := w.w.WriteAt(buf[off:off+cb], w.g.clusterOffset(c)); err != nil {
			return err
		}
		c = w.fat[c]
	}
	return nil
}

func (w *Writer) bootSector(label [11]byte) []byte {
	b := make([]byte, sectorSize)
	copy(b[0:3], []byte{0xEB, 0x58, 0x90})
	copy(b[3:11], "MSWIN4.1")
	binary.LittleEndian.PutUint16(b[11:], sectorSize)
	b[13] = byte(w.g.sectorsPerCluster)
	binary.LittleEndian.PutUint16(b[14:], reservedSectors)
	b[16] = numFATs
	b[21] = 0xF8                               // fixed disk
	binary.LittleEndian.PutUint16(b[24:], 63)  // sectors per track (geometry is nominal)
	binary.LittleEndian.PutUint16(b[26:], 255) // heads
	binary.LittleEndian.PutUint32(b[28:], w.opts.HiddenSectors)
	binary.LittleEndian.PutUint32(b[32:], w.g.totalSectors)
	binary.LittleEndian.PutUint32(b[36:], w.g.fatSectors)
	binary.LittleEndian.PutUint32(b[44:], rootCluster)
	binary.LittleEndian.PutUint16(b[48:], fsInfoSector)
	binary.LittleEndian.PutUint16(b[50:], backupBootSect)
	b[64] = 0x80 // drive number
	b[66] = 0x29 // extended boot signature: the next three fields are valid
	binary.LittleEndian.PutUint32(b[67:], w.opts.VolumeID)
	copy(b[71:82], label[:])
	copy(b[82:90], "FAT32   ")
	// Boot code: INT 18h ("no bootable disk"), then halt forever.
	copy(b[90:], []byte{0xCD, 0x18, 0xF4, 0xEB, 0xFD})
	b[510], b[511] = 0x55, 0xAA
	return b
}

func (w *Writer) fsInfo() []byte {
	b := make([]byte, sectorSize)
	binary.LittleEndian.PutUint32(b[0:], 0x41615252)
	binary.LittleEndian.PutUint32(b[484:], 0x61417272)
	free := w.g.clusters + 2 - w.next
	binary.LittleEndian.PutUint32(b[488:], free)
	nextFree := w.next
	if free == 0 {
		nextFree = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(b[492:], nextFree)
	binary.LittleEndian.PutUint32(b[508:], 0xAA550000)
	return b
}
