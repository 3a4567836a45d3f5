package composefs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ErrFormat is wrapped by every error about a malformed or unsupported
// image.
var ErrFormat = errors.New("composefs: malformed image")

// MaxImageSize is the largest image NewReader accepts (an image this size
// describes tens of millions of files).
const MaxImageSize = 1 << 30

// Reader reads a composefs image. Create it with [NewReader].
type Reader struct {
	data []byte

	version    uint32
	flags      uint32
	rootNid    uint64
	inodes     uint64
	buildTime  Timespec
	metaStart  int64
	xattrStart int64
}

// NewReader reads the image of size bytes from r into memory and checks
// its header and superblock. It never panics on malformed input; errors
// wrap [ErrFormat] or come from r.
func NewReader(r io.ReaderAt, size int64) (*Reader, error) {
	if size < superOffset+superSize {
		return nil, fmt.Errorf("%w: %d bytes is too small for an image", ErrFormat, size)
	}
	if size > MaxImageSize {
		return nil, fmt.Errorf("%w: %d bytes is larger than the %d-byte limit", ErrFormat, size, MaxImageSize)
	}
	data := make([]byte, size)
	if n, err := r.ReadAt(data, 0); n < len(data) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("reading image: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint32(data[0:]) != composefsMagic {
		return nil, fmt.Errorf("%w: not a composefs image (bad magic)", ErrFormat)
	}
	if v := le.Uint32(data[4:]); v != composefsVersion {
		return nil, fmt.Errorf("%w: unsupported composefs header version %d", ErrFormat, v)
	}
	rd := &Reader{data: data, flags: le.Uint32(data[8:]), version: le.Uint32(data[12:])}
	if rd.version > MaxVersion {
		return nil, fmt.Errorf("%w: unsupported composefs format version %d", ErrFormat, rd.version)
	}
	sb := data[superOffset : superOffset+superSize]
	if le.Uint32(sb[0:]) != erofsMagic {
		return nil, fmt.Errorf("%w: bad EROFS superblock magic", ErrFormat)
	}
	if sb[12] != blockBits {
		return nil, fmt.Errorf("%w: unsupported EROFS block size 2^%d", ErrFormat, sb[12])
	}
	if inc := le.Uint32(sb[80:]); inc != 0 {
		return nil, fmt.Errorf("%w: unsupported EROFS incompatible features %#x", ErrFormat, inc)
	}
	rd.rootNid = uint64(le.Uint16(sb[14:]))
	rd.inodes = le.Uint64(sb[16:])
	rd.buildTime = Timespec{int64(le.Uint64(sb[24:])), le.Uint32(sb[32:])}
	rd.metaStart = int64(le.Uint32(sb[40:])) * blockSize
	rd.xattrStart = int64(le.Uint32(sb[44:])) * blockSize
	if rd.metaStart >= size || rd.xattrStart >= size {
		return nil, fmt.Errorf("%w: metadata or xattr area outside the image", ErrFormat)
	}
	return rd, nil
}

// Version returns the image format version (0 or 1).
func (rd *Reader) Version() int { return int(rd.version) }

// HasACL reports whether the header says some inode has a POSIX ACL.
func (rd *Reader) HasACL() bool { return rd.flags&flagHasACL != 0 }

// Inodes returns the number of inodes the superblock declares (including
// the synthetic root whiteouts).
func (rd *Reader) Inodes() uint64 { return rd.inodes }

// ReadImage is NewReader followed by [Reader.Tree].
func ReadImage(r io.ReaderAt, size int64) (*Tree, error) {
	rd, err := NewReader(r, size)
	if err != nil {
		return nil, err
	}
	return rd.Tree()
}

// rinode is a parsed on-disk inode.
type rinode struct {
	nid        uint64
	off        int64 // byte offset of the inode
	extended   bool
	layout     uint16
	mode       Mode
	nlink      uint32
	size       uint64
	iu         uint32
	uid, gid   uint32
	mtime      Timespec
	xattrCount uint16
	xattrLen   int64
}

// fmtErr is an ErrFormat error about inode nid.
func fmtErr(nid uint64, format string, args ...any) error {
	return fmt.Errorf("%w: inode %d: %s", ErrFormat, nid, fmt.Sprintf(format, args...))
}

// readInode parses the fixed part of inode nid.
func (rd *Reader) readInode(nid uint64) (*rinode, error) {
	if nid > uint64(len(rd.data))/slotSize {
		return nil, fmtErr(nid, "outside the image")
	}
	off := rd.metaStart + int64(nid)*slotSize
	if off+inodeCompactSize > int64(len(rd.data)) {
		return nil, fmtErr(nid, "outside the image")
	}
	le := binary.LittleEndian
	b := rd.data[off:]
	format := le.Uint16(b[0:])
	ri := &rinode{nid: nid, off: off, extended: format&1 != 0, layout: (format >> 1) & 7}
	if format>>4 != 0 {
		return nil, fmtErr(nid, "unsupported inode format %#x", format)
	}
	ri.xattrCount = le.Uint16(b[2:])
	ri.mode = Mode(le.Uint16(b[4:]))
	if ri.extended {
		if off+inodeExtendedSize > int64(len(rd.data)) {
			return nil, fmtErr(nid, "outside the image")
		}
		ri.size = le.Uint64(b[8:])
		ri.iu = le.Uint32(b[16:])
		ri.uid = le.Uint32(b[24:])
		ri.gid = le.Uint32(b[28:])
		ri.mtime = Timespec{int64(le.Uint64(b[32:])), le.Uint32(b[40:])}
		ri.nlink = le.Uint32(b[44:])
	} else {
		ri.nlink = uint32(le.Uint16(b[6:]))
		ri.size = uint64(le.Uint32(b[8:]))
		ri.iu = le.Uint32(b[16:])
		ri.uid = uint32(le.Uint16(b[24:]))
		ri.gid = uint32(le.Uint16(b[26:]))
		ri.mtime = rd.buildTime
	}
	if !ri.mode.validType() {
		return nil, fmtErr(nid, "unknown file type in mode %o", uint32(ri.mode))
	}
	if ri.mtime.Nsec >= 1e9 {
		return nil, fmtErr(nid, "mtime nanoseconds %d out of range", ri.mtime.Nsec)
	}
	switch ri.layout {
	case layoutFlatPlain, layoutFlatInline, layoutChunkBased:
	default:
		return nil, fmtErr(nid, "unsupported data layout %d", ri.layout)
	}
	if ri.layout == layoutChunkBased && ri.mode.Type() != TypeRegular {
		return nil, fmtErr(nid, "chunk-based data layout on a non-regular file")
	}
	if ri.xattrCount > 0 {
		ri.xattrLen = xattrHeaderSize + int64(ri.xattrCount-1)*4
	}
	if ri.dataOffset()+ri.xattrLen > int64(len(rd.data)) {
		return nil, fmtErr(nid, "extended attributes outside the image")
	}
	return ri, nil
}

// inodeLen is the size of the fixed part.
func (ri *rinode) inodeLen() int64 {
	if ri.extended {
		return inodeExtendedSize
	}
	return inodeCompactSize
}

// dataOffset is where the xattr area starts.
func (ri *rinode) dataOffset() int64 { return ri.off + ri.inodeLen() }

// tail returns the inline tail of a FLAT_INLINE inode.
func (rd *Reader) tail(ri *rinode) ([]byte, error) {
	if ri.layout != layoutFlatInline {
		return nil, nil
	}
	n := int64(ri.size % blockSize)
	start := ri.dataOffset() + ri.xattrLen
	if start+n > int64(len(rd.data)) {
		return nil, fmtErr(ri.nid, "inline data outside the image")
	}
	return rd.data[start : start+n], nil
}

// blocks returns the data blocks of a flat inode (the part not inline).
func (rd *Reader) blocks(ri *rinode) ([]byte, error) {
	n := (ri.size + blockSize - 1) / blockSize
	if ri.layout == layoutFlatInline {
		n = ri.size / blockSize
	}
	if n == 0 {
		return nil, nil
	}
	start := uint64(ri.iu) * blockSize
	if n > uint64(len(rd.data))/blockSize || start+n*blockSize > uint64(len(rd.data)) {
		return nil, fmtErr(ri.nid, "data blocks outside the image")
	}
	return rd.data[start : start+n*blockSize], nil
}

// dirent is one parsed directory entry.
type dirent struct {
	name string
	nid  uint64
}

// readDirents parses the entries of a directory, in on-disk order.
func (rd *Reader) readDirents(ri *rinode) ([]dirent, error) {
	blocks, err := rd.blocks(ri)
	if err != nil {
		return nil, err
	}
	tail, err := rd.tail(ri)
	if err != nil {
		return nil, err
	}
	var out []dirent
	nb := len(blocks) / blockSize
	for i := 0; i < nb; i++ {
		valid := blockSize
		if ri.layout != layoutFlatInline && i == nb-1 && ri.size%blockSize != 0 {
			valid = int(ri.size % blockSize)
		}
		if out, err = parseDirentBlock(out, blocks[i*blockSize:i*blockSize+valid], ri.nid); err != nil {
			return nil, err
		}
	}
	if len(tail) > 0 {
		if out, err = parseDirentBlock(out, tail, ri.nid); err != nil {
			return nil, err
		}
	}
	// Visit entries in name order even if the image does not store them
	// sorted, so that hard links resolve in the order of Tree.Walk.
	slices.SortStableFunc(out, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// parseDirentBlock parses one block (or inline tail) of directory entries.
func parseDirentBlock(out []dirent, b []byte, nid uint64) ([]dirent, error) {
	le := binary.LittleEndian
	if len(b) < direntSize {
		return nil, fmtErr(nid, "directory block of %d bytes", len(b))
	}
	first := int(le.Uint16(b[8:]))
	if first < direntSize || first%direntSize != 0 || first > len(b) {
		return nil, fmtErr(nid, "bad first name offset %d in directory block", first)
	}
	n := first / direntSize
	for i := 0; i < n; i++ {
		d := b[i*direntSize:]
		start := int(le.Uint16(d[8:]))
		end := len(b)
		if i+1 < n {
			end = int(le.Uint16(b[(i+1)*direntSize+8:]))
		}
		if start < first || end > len(b) || start > end {
			return nil, fmtErr(nid, "bad name offsets %d..%d in directory block", start, end)
		}
		name := b[start:end]
		if i+1 == n {
			if z := bytes.IndexByte(name, 0); z >= 0 {
				name = name[:z]
			}
		}
		if len(name) == 0 || len(name) > MaxNameLen || bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 {
			return nil, fmtErr(nid, "invalid file name %q", name)
		}
		out = append(out, dirent{string(name), le.Uint64(d[0:])})
	}
	return out, nil
}

// Tree parses the whole image into a new tree, the way composefs-info
// loads it: hard links become links to the inode first met in depth-first
// name order (the order of [Tree.Walk]; for images with sorted directories,
// as all writers produce, this is also composefs-info's on-disk order), the synthetic root whiteouts and composefs' own overlayfs
// attributes are dropped, escaped attributes are unescaped, and escaped
// whiteouts become character devices 0:0 again.
func (rd *Reader) Tree() (*Tree, error) {
	rootRi, err := rd.readInode(rd.rootNid)
	if err != nil {
		return nil, err
	}
	if !rootRi.mode.IsDir() {
		return nil, fmtErr(rd.rootNid, "root is not a directory")
	}
	root, err := rd.makeInode(rootRi)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, fmtErr(rd.rootNid, "root is a whiteout")
	}
	root.attached = true
	t := &Tree{root: root}

	type frame struct {
		dir     *Inode
		entries []dirent
		i       int
	}
	ents, err := rd.readDirents(rootRi)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]*Inode{rd.rootNid: root}
	skipped := map[uint64]bool{} // real whiteouts
	stack := []frame{{dir: root, entries: ents}}
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.i == len(f.entries) {
			stack = stack[:len(stack)-1]
			continue
		}
		e := f.entries[f.i]
		f.i++
		if e.name == "." || e.name == ".." || skipped[e.nid] {
			continue
		}
		if _, dup := f.dir.children[e.name]; dup {
			return nil, fmt.Errorf("%w: directory %s: duplicate name %q", ErrFormat, f.dir.Path(), e.name)
		}
		if ino, ok := seen[e.nid]; ok {
			if ino.Mode.IsDir() {
				return nil, fmt.Errorf("%w: %s/%s: directory hard link or cycle", ErrFormat, pathOf(f.dir), e.name)
			}
			attach(f.dir, e.name, ino)
			continue
		}
		ri, err := rd.readInode(e.nid)
		if err != nil {
			return nil, err
		}
		ino, err := rd.makeInode(ri)
		if err != nil {
			return nil, err
		}
		if ino == nil {
			skipped[e.nid] = true
			continue
		}
		seen[e.nid] = ino
		attach(f.dir, e.name, ino)
		if ino.Mode.IsDir() {
			if len(stack) >= MaxDepth {
				return nil, fmt.Errorf("%w: directories nested deeper than %d", ErrFormat, MaxDepth)
			}
			ents, err := rd.readDirents(ri)
			if err != nil {
				return nil, err
			}
			stack = append(stack, frame{dir: ino, entries: ents})
		}
	}
	return t, nil
}

// pathOf is Inode.Path for error messages.
func pathOf(dir *Inode) string {
	p := dir.Path()
	if p == "/" {
		return ""
	}
	return p
}

// makeInode builds the model inode of a parsed inode (without entries).
// It returns nil for a real whiteout (character device 0:0), which only
// the synthetic root whiteouts are.
func (rd *Reader) makeInode(ri *rinode) (*Inode, error) {
	if ri.mode.Type() == TypeChar && ri.iu == 0 {
		return nil, nil
	}
	ino := &Inode{
		Mode:  ri.mode,
		UID:   ri.uid,
		GID:   ri.gid,
		Nlink: ri.nlink,
		Mtime: ri.mtime,
	}
	if ri.size > MaxFileSize {
		return nil, fmtErr(ri.nid, "size %d out of range", ri.size)
	}
	ino.Size = int64(ri.size)
	switch ri.mode.Type() {
	case TypeChar, TypeBlock:
		ino.Rdev = uint64(ri.iu)
		ino.Size = 0
	case TypeFIFO, TypeSocket:
		ino.Size = 0
	case TypeSymlink:
		if ri.size == 0 || ri.size > MaxPathLen {
			return nil, fmtErr(ri.nid, "symlink target of %d bytes", ri.size)
		}
		var target []byte
		if ri.layout == layoutFlatInline {
			t, err := rd.tail(ri)
			if err != nil {
				return nil, err
			}
			target = t
		} else {
			b, err := rd.blocks(ri)
			if err != nil {
				return nil, err
			}
			target = b[:ri.size]
		}
		if bytes.IndexByte(target, 0) >= 0 {
			return nil, fmtErr(ri.nid, "NUL in symlink target")
		}
		ino.Target = string(target)
	case TypeRegular:
		if ri.size > 0 && ri.layout != layoutChunkBased {
			if ri.size > MaxInlineContent {
				return nil, fmtErr(ri.nid, "inline content of %d bytes", ri.size)
			}
			b, err := rd.blocks(ri)
			if err != nil {
				return nil, err
			}
			t, err := rd.tail(ri)
			if err != nil {
				return nil, err
			}
			content := make([]byte, 0, ri.size)
			content = append(content, b[:min(len(b), int(ri.size)-len(t))]...)
			content = append(content, t...)
			if len(content) != int(ri.size) {
				return nil, fmtErr(ri.nid, "inline content of %d bytes for size %d", len(content), ri.size)
			}
			ino.Content = content
		}
	}
	if err := rd.readXattrs(ri, ino); err != nil {
		return nil, err
	}
	if err := ino.validate(); err != nil {
		return nil, fmtErr(ri.nid, "%v", err)
	}
	return ino, nil
}

// xattrSet collects the attributes of one inode with linear-time
// duplicate detection and budget accounting.
type xattrSet struct {
	index map[string]int
	space int
}

func (s *xattrSet) set(ino *Inode, name, value string) error {
	if err := validXattr(name, value); err != nil {
		return err
	}
	if i, ok := s.index[name]; ok {
		s.space += len(value) - len(ino.Xattrs[i].Value)
		ino.Xattrs[i].Value = value
	} else {
		if s.index == nil {
			s.index = make(map[string]int)
			s.space = xattrHeaderSize
		}
		s.index[name] = len(ino.Xattrs)
		ino.Xattrs = append(ino.Xattrs, Xattr{name, value})
		s.space += 7 + len(name) + len(value)
	}
	if s.space > MaxXattrSpace {
		return fmt.Errorf("%w: more than %d bytes of extended attributes", ErrInvalidXattr, MaxXattrSpace)
	}
	return nil
}

// readXattrs reads the inline and then the shared attributes of an inode,
// interpreting composefs' own overlayfs attributes.
func (rd *Reader) readXattrs(ri *rinode, ino *Inode) error {
	if ri.xattrLen == 0 {
		return nil
	}
	le := binary.LittleEndian
	area := rd.data[ri.dataOffset() : ri.dataOffset()+ri.xattrLen]
	nShared := int(area[4])
	if xattrHeaderSize+4*nShared > len(area) {
		return fmtErr(ri.nid, "%d shared attributes do not fit the attribute area", nShared)
	}
	var set xattrSet
	apply := func(e []byte) (int, error) {
		if len(e) < xattrEntrySize {
			return 0, fmtErr(ri.nid, "truncated attribute entry")
		}
		nameLen, index, valueLen := int(e[0]), e[1], int(le.Uint16(e[2:]))
		if xattrEntrySize+nameLen+valueLen > len(e) {
			return 0, fmtErr(ri.nid, "attribute entry beyond the attribute area")
		}
		prefix, ok := xattrPrefix(index)
		if !ok {
			return 0, fmtErr(ri.nid, "unknown attribute name index %d", index)
		}
		name := prefix + string(e[xattrEntrySize:xattrEntrySize+nameLen])
		value := string(e[xattrEntrySize+nameLen : xattrEntrySize+nameLen+valueLen])
		if err := rd.applyXattr(ino, &set, name, value); err != nil {
			return 0, fmtErr(ri.nid, "%v", err)
		}
		return (xattrEntrySize + nameLen + valueLen + 3) &^ 3, nil
	}
	inline := area[xattrHeaderSize+4*nShared:]
	for len(inline) >= xattrEntrySize {
		n, err := apply(inline)
		if err != nil {
			return err
		}
		inline = inline[min(n, len(inline)):]
	}
	for i := 0; i < nShared; i++ {
		id := int64(le.Uint32(area[xattrHeaderSize+4*i:]))
		off := rd.xattrStart + id*4
		if off < 0 || off+xattrEntrySize > int64(len(rd.data)) {
			return fmtErr(ri.nid, "shared attribute %d outside the image", id)
		}
		if _, err := apply(rd.data[off:]); err != nil {
			return err
		}
	}
	return nil
}

// applyXattr records one on-disk attribute on an inode.
func (rd *Reader) applyXattr(ino *Inode, set *xattrSet, name, value string) error {
	regular := ino.Mode.Type() == TypeRegular
	switch name {
	case xattrRedirect:
		if regular {
			if len(value) > 1 && value[0] == '/' {
				value = value[1:]
			}
			if len(value) > MaxPathLen || strings.IndexByte(value, 0) >= 0 {
				return errors.New("invalid redirect")
			}
			ino.Payload = value
		}
		return nil
	case xattrMetacopy:
		if regular && len(value) == metacopyDigestLength {
			var d [32]byte
			copy(d[:], value[4:])
			ino.Digest = &d
		}
		return nil
	case xattrEscWhiteout:
		if regular {
			ino.Mode = TypeChar | ino.Mode&PermMask
			ino.Rdev = 0
			ino.Size = 0
			ino.Content = nil
			return nil
		}
	case xattrEscWhiteouts, xattrUserWhiteout, xattrUserWhiteouts:
		return nil
	}
	if strings.HasPrefix(name, overlayPrefix) {
		if !strings.HasPrefix(name, overlayEscapePrefix) {
			return nil // composefs' own (opaque on the root)
		}
		name = overlayPrefix + name[len(overlayEscapePrefix):]
	}
	return set.set(ino, name, value)
}
