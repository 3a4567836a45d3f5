package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
	"unicode/utf16"
)

// Reader gives read access to a FAT32 volume as an [io/fs.FS]. It reads the
// whole FAT into memory once; file and directory data are read on demand.
// A Reader is safe for concurrent use if the underlying io.ReaderAt is.
type Reader struct {
	r         io.ReaderAt
	g         geometry
	dataStart int64
	rootClus  uint32
	label     string
	volumeID  uint32
	fat       []uint32
}

// NewReader opens the FAT32 volume of size bytes at offset 0 of r.
func NewReader(r io.ReaderAt, size int64) (*Reader, error) {
	b := make([]byte, sectorSize)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("fat: reading boot sector: %w", err)
	}
	bps := binary.LittleEndian.Uint16(b[11:])
	spc := uint32(b[13])
	reserved := uint32(binary.LittleEndian.Uint16(b[14:]))
	nfats := uint32(b[16])
	fat16 := binary.LittleEndian.Uint16(b[22:])
	total := binary.LittleEndian.Uint32(b[32:])
	fatSz := binary.LittleEndian.Uint32(b[36:])
	switch {
	case b[510] != 0x55 || b[511] != 0xAA:
		return nil, fmt.Errorf("%w: no boot sector signature", ErrFormat)
	case bps != sectorSize:
		return nil, fmt.Errorf("%w: %d bytes per sector (only 512 is supported)", ErrFormat, bps)
	case spc == 0 || spc&(spc-1) != 0 || spc > 128:
		return nil, fmt.Errorf("%w: %d sectors per cluster", ErrFormat, spc)
	case reserved == 0 || nfats == 0 || fat16 != 0 || fatSz == 0:
		return nil, fmt.Errorf("%w: not a FAT32 BPB", ErrFormat)
	case int64(total)*sectorSize > size:
		return nil, fmt.Errorf("%w: %d sectors do not fit in %d bytes", ErrFormat, total, size)
	case uint64(reserved)+uint64(nfats)*uint64(fatSz) >= uint64(total):
		return nil, fmt.Errorf("%w: FATs larger than the volume", ErrFormat)
	}
	clusters := (total - reserved - nfats*fatSz) / spc
	if clusters < minClusters || uint64(fatSz)*sectorSize/4 < uint64(clusters)+2 {
		return nil, fmt.Errorf("%w: %d clusters with a FAT of %d sectors", ErrFormat, clusters, fatSz)
	}
	if clusters > maxClusters-2 {
		clusters = maxClusters - 2
	}
	fr := &Reader{
		r: r,
		// The reader's geometry uses the volume's own reserved area.
		g:        geometry{totalSectors: total, sectorsPerCluster: spc, fatSectors: fatSz, clusters: clusters},
		rootClus: binary.LittleEndian.Uint32(b[44:]),
		volumeID: binary.LittleEndian.Uint32(b[67:]),
		label:    strings.TrimRight(string(b[71:82]), " "),
	}
	fatBytes := make([]byte, (int64(clusters)+2)*4)
	if _, err := r.ReadAt(fatBytes, int64(reserved)*sectorSize); err != nil {
		return nil, fmt.Errorf("fat: reading FAT: %w", err)
	}
	fr.fat = make([]uint32, clusters+2)
	for i := range fr.fat {
		fr.fat[i] = binary.LittleEndian.Uint32(fatBytes[4*i:]) & 0x0FFFFFFF
	}
	// Volumes from other tools may have another reserved area size.
	fr.dataStart = int64(reserved+nfats*fatSz) * sectorSize
	if !fr.valid(fr.rootClus) {
		return nil, fmt.Errorf("%w: root cluster %d", ErrFormat, fr.rootClus)
	}
	return fr, nil
}

// Label returns the volume label from the boot sector, without padding.
func (r *Reader) Label() string { return r.label }

// VolumeID returns the volume serial number.
func (r *Reader) VolumeID() uint32 { return r.volumeID }

// FreeClusters counts the free clusters in the FAT.
func (r *Reader) FreeClusters() uint32 {
	var n uint32
	for _, v := range r.fat[2:] {
		if v == 0 {
			n++
		}
	}
	return n
}

func (r *Reader) valid(c uint32) bool { return c >= 2 && c < uint32(len(r.fat)) }

func (r *Reader) clusterOffset(c uint32) int64 {
	return r.dataStart + int64(c-2)*r.g.clusterBytes()
}

// chain returns the cluster chain starting at c.
func (r *Reader) chain(c uint32) ([]uint32, error) {
	var out []uint32
	for {
		if !r.valid(c) {
			return nil, fmt.Errorf("%w: cluster %d out of range", ErrFormat, c)
		}
		out = append(out, c)
		if len(out) > len(r.fat) {
			return nil, fmt.Errorf("%w: cluster chain loops", ErrFormat)
		}
		c = r.fat[c]
		if c >= 0x0FFFFFF8 {
			return out, nil
		}
	}
}

// readChain reads the whole content of a cluster chain.
func (r *Reader) readChain(first uint32) ([]byte, error) {
	ch, err := r.chain(first)
	if err != nil {
		return nil, err
	}
	cb := r.g.clusterBytes()
	buf := make([]byte, int64(len(ch))*cb)
	for i, c := range ch {
		if _, err := r.r.ReadAt(buf[int64(i)*cb:int64(i+1)*cb], r.clusterOffset(c)); err != nil {
			return nil, fmt.Errorf("fat: reading cluster %d: %w", c, err)
		}
	}
	return buf, nil
}

// entry is one parsed directory entry.
type entry struct {
	name    string
	dir     bool
	attr    byte
	cluster uint32
	size    uint32
	mtime   time.Time
}

// readDir parses the directory stored at cluster c.
func (r *Reader) readDir(c uint32) ([]entry, error) {
	buf, err := r.readChain(c)
	if err != nil {
		return nil, err
	}
	var out []entry
	var lfn []uint16
	lfnSum, lfnNext := byte(0), 0
	for off := 0; off+dirEntrySize <= len(buf); off += dirEntrySize {
		e := buf[off : off+dirEntrySize]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xE5 {
			lfn, lfnNext = nil, 0
			continue
		}
		if e[11]&0x3F == attrLFN {
			seq := int(e[0] & 0x1F)
			if e[0]&0x40 != 0 {
				lfn, lfnSum, lfnNext = make([]uint16, seq*lfnChars), e[13], seq
			}
			if seq == 0 || seq != lfnNext || e[13] != lfnSum || lfn == nil {
				lfn, lfnNext = nil, 0
				continue
			}
			frag := lfn[(seq-1)*lfnChars:]
			for i := range lfnChars {
				var o int
				switch {
				case i < 5:
					o = 1 + 2*i
				case i < 11:
					o = 14 + 2*(i-5)
				default:
					o = 28 + 2*(i-11)
				}
				frag[i] = binary.LittleEndian.Uint16(e[o:])
			}
			lfnNext--
			continue
		}
		if e[11]&attrVolumeID != 0 {
			lfn, lfnNext = nil, 0
			continue
		}
		name := ""
		if lfn != nil && lfnNext == 0 && shortChecksum(e) == lfnSum {
			units := lfn
			for i, u := range units {
				if u == 0 {
					units = units[:i]
					break
				}
			}
			name = string(utf16.Decode(units))
		} else {
			name = shortName(e)
		}
		lfn, lfnNext = nil, 0
		if name == "." || name == ".." || name == "" {
			continue
		}
		out = append(out, entry{
			name:    name,
			dir:     e[11]&attrDirectory != 0,
			attr:    e[11],
			cluster: uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:])),
			size:    binary.LittleEndian.Uint32(e[28:]),
			mtime:   fromDOS(binary.LittleEndian.Uint16(e[24:]), binary.LittleEndian.Uint16(e[22:])),
		})
	}
	return out, nil
}

// shortName renders an 8.3 entry name, honouring the NT lower-case flags.
func shortName(e []byte) string {
	base := strings.TrimRight(string(e[0:8]), " ")
	ext := strings.TrimRight(string(e[8:11]), " ")
	if len(base) > 0 && base[0] == 0x05 {
		base = "\xE5" + base[1:]
	}
	if e[12]&ntLowerBase != 0 {
		base = strings.ToLower(base)
	}
	if e[12]&ntLowerExt != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

// Open opens the named file or directory (an io/fs path; names match
// case-insensitively, as FAT does).
func (r *Reader) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	cur := entry{name: ".", dir: true, cluster: r.rootClus}
	if name != "." {
		for _, part := range strings.Split(name, "/") {
			if !cur.dir {
				return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
			}
			ents, err := r.readDir(cur.cluster)
			if err != nil {
				return nil, &fs.PathError{Op: "open", Path: name, Err: err}
			}
			found := false
			for _, e := range ents {
				if strings.EqualFold(e.name, part) {
					cur, found = e, true
					break
				}
			}
			if !found {
				return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
			}
		}
	}
	if cur.dir {
		ents, err := r.readDir(cur.cluster)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		d := &dirFile{info: fileInfo(cur)}
		for _, e := range ents {
			d.ents = append(d.ents, fs.FileInfoToDirEntry(fileInfo(e)))
		}
		return d, nil
	}
	f := &file{r: r, info: fileInfo(cur)}
	if cur.size > 0 {
		ch, err := r.chain(cur.cluster)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		if int64(len(ch))*r.g.clusterBytes() < int64(cur.size) {
			return nil, &fs.PathError{Op: "open", Path: name,
				Err: fmt.Errorf("%w: %d clusters hold less than %d bytes", ErrFormat, len(ch), cur.size)}
		}
		f.chain = ch
	}
	return f, nil
}

// fileInfo implements fs.FileInfo for an entry.
type fileInfo entry

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return int64(fi.size) }
func (fi fileInfo) ModTime() time.Time { return fi.mtime }
func (fi fileInfo) IsDir() bool        { return fi.dir }
func (fi fileInfo) Sys() any           { return nil }
func (fi fileInfo) Mode() fs.FileMode {
	m := fs.FileMode(0o644)
	if fi.dir {
		m = fs.ModeDir | 0o755
	}
	if fi.attr&attrReadOnly != 0 {
		m &^= 0o222
	}
	return m
}

type dirFile struct {
	info fileInfo
	ents []fs.DirEntry
	pos  int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}

// ReadDir implements fs.ReadDirFile.
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.ents[d.pos:]
	if n <= 0 {
		d.pos = len(d.ents)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if n > len(rest) {
		n = len(rest)
	}
	d.pos += n
	return rest[:n], nil
}

type file struct {
	r     *Reader
	info  fileInfo
	chain []uint32
	off   int64
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *file) Close() error               { return nil }

// Read implements io.Reader.
func (f *file) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	return n, err
}

// ReadAt implements io.ReaderAt.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	size := int64(f.info.size)
	if off >= size {
		return 0, io.EOF
	}
	cb := f.r.g.clusterBytes()
	n := 0
	for n < len(p) && off < size {
		c := f.chain[off/cb]
		within := off % cb
		m := min(int64(len(p)-n), cb-within, size-off)
		if _, err := f.r.r.ReadAt(p[n:n+int(m)], f.r.clusterOffset(c)+within); err != nil {
			return n, fmt.Errorf("fat: reading %s: %w", f.info.name, err)
		}
		n += int(m)
		off += m
	}
	if off >= size && n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
