package composefs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// WriteOptions selects the image format version. The version written is
// MinVersion, raised to 1 if MaxVersion allows it and the tree contains a
// whiteout (version 1 marks directories holding whiteouts as opaque "x",
// which overlayfs needs to honour them). A MaxVersion below MinVersion is
// taken as MinVersion.
type WriteOptions struct {
	MinVersion int
	MaxVersion int
}

// DefaultWriteOptions are the defaults of mkcomposefs: versions 0 to 1.
var DefaultWriteOptions = WriteOptions{MinVersion: 0, MaxVersion: 1}

// ErrWrite is wrapped by errors that make a tree impossible to write.
var ErrWrite = errors.New("composefs: cannot write image")

// wnode is one inode being serialized.
type wnode struct {
	ino      *Inode // nil for a synthetic root whiteout
	parent   *wnode
	num      uint32 // i_ino: index in inode (breadth-first) order
	mode     Mode
	nlink    uint32
	uid, gid uint32
	mtime    Timespec
	size     int64 // i_size (directories: set by layout)
	rdev     uint32
	external bool // regular file with content in the object store

	dirents       []wdirent // directories: sorted, with "." and ".."
	hasWhiteouts  bool      // directory holding whiteouts
	xattrs        []Xattr   // effective, sorted by name
	sharedOffsets []int     // per xattr: offset in the shared table, or -1

	// layout
	compact  bool
	nBlocks  uint32
	tailSize uint32
	xattrLen int
	ipad     int
	nid      uint64
}

// whiteoutNames are the names of the synthetic root whiteouts, 00 to ff.
var whiteoutNames = func() (names [256]string) {
	const hex = "0123456789abcdef"
	for i := range names {
		names[i] = string([]byte{hex[i>>4], hex[i&15]})
	}
	return names
}()

// wdirent is one directory entry being serialized.
type wdirent struct {
	name   string
	target *Inode // resolved to node after the walk
	node   *wnode
}

// sharedXattr is one entry of the shared attribute table.
type sharedXattr struct {
	Xattr
	count  int
	offset int // byte offset in the table, or -1 if not shared
}

// imageWriter holds the state of one WriteImage call.
type imageWriter struct {
	nodes      []*wnode
	version    int
	minMtime   Timespec
	hasACL     bool
	shared     []*sharedXattr
	sharedLen  int
	inodesEnd  int64
	dataBlocks int64
}

// WriteImage writes t to w as a composefs image (EROFS), byte-identical to
// what mkcomposefs 1.0.8 writes for the same tree and versions. opts nil
// means [DefaultWriteOptions]. The tree is not modified. The image is
// written sequentially; wrap w in an fsverity.Digest (io.MultiWriter) to get
// the composefs digest at the same time.
func WriteImage(w io.Writer, t *Tree, opts *WriteOptions) error {
	if opts == nil {
		opts = &DefaultWriteOptions
	}
	if opts.MinVersion < 0 || opts.MinVersion > MaxVersion || opts.MaxVersion < 0 || opts.MaxVersion > MaxVersion {
		return fmt.Errorf("%w: format versions must be between 0 and %d", ErrWrite, MaxVersion)
	}
	iw := &imageWriter{version: opts.MinVersion}
	maxVersion := max(opts.MaxVersion, opts.MinVersion)
	whiteouts, err := iw.collect(t)
	if err != nil {
		return err
	}
	if iw.version < 1 && maxVersion >= 1 && whiteouts {
		iw.version = 1
	}
	if err := iw.prepareXattrs(); err != nil {
		return err
	}
	iw.shareXattrs()
	iw.layout()
	return iw.write(w)
}

// collect walks the tree breadth first, creating the nodes in inode order.
// It reports whether the tree contains whiteouts.
func (iw *imageWriter) collect(t *Tree) (bool, error) {
	root := t.root
	if err := root.validate(); err != nil {
		return false, fmt.Errorf("%w: /: %w", ErrWrite, err)
	}
	if !root.Mode.IsDir() {
		return false, fmt.Errorf("%w: the root is not a directory", ErrWrite)
	}
	index := make(map[*Inode]*wnode)
	rootNode := newWnode(root, nil)
	index[root] = rootNode
	iw.nodes = append(iw.nodes, rootNode)
	whiteouts := false
	for i := 0; i < len(iw.nodes); i++ {
		n := iw.nodes[i]
		if !n.mode.IsDir() {
			continue
		}
		names := n.ino.names()
		entries := make([]wdirent, 0, len(names)+2)
		entries = append(entries, wdirent{name: ".", node: n})
		parent := n.parent
		if parent == nil {
			parent = n
		}
		entries = append(entries, wdirent{name: "..", node: parent})
		for _, name := range names {
			entries = append(entries, wdirent{name: name, target: n.ino.children[name]})
		}
		if i == 0 {
			// The synthetic whiteouts 00..ff hide the object store's
			// fan-out directories should the store ever be used as a
			// regular lower layer; existing names win.
			var selinux []Xattr
			if v, ok := root.Xattr("security.selinux"); ok {
				selinux = []Xattr{{"security.selinux", v}}
			}
			synthetic := make([]wnode, 256)
			for b, name := range whiteoutNames {
				if _, ok := n.ino.children[name]; ok {
					continue
				}
				wn := &synthetic[b]
				*wn = wnode{
					parent: n, mode: TypeChar | 0o644, nlink: 1,
					uid: n.uid, gid: n.gid, mtime: n.mtime, xattrs: selinux,
				}
				entries = append(entries, wdirent{name: name, node: wn})
			}
		}
		slices.SortFunc(entries, func(a, b wdirent) int { return strings.Compare(a.name, b.name) })
		subdirs := uint32(0)
		for j := range entries {
			e := &entries[j]
			c := e.target
			switch {
			case e.name == "." || e.name == "..":
			case c == nil: // synthetic whiteout
				e.node.num = uint32(len(iw.nodes))
				iw.nodes = append(iw.nodes, e.node)
			case c.isPrimary(n.ino, e.name):
				if err := c.validate(); err != nil {
					return false, fmt.Errorf("%w: %s: %w", ErrWrite, c.Path(), err)
				}
				if c.IsWhiteout() {
					if len(c.links) > 1 {
						return false, fmt.Errorf("%w: %s: hard-linked whiteout", ErrWrite, c.Path())
					}
					n.hasWhiteouts = true
					whiteouts = true
				}
				cn := newWnode(c, n)
				cn.num = uint32(len(iw.nodes))
				index[c] = cn
				iw.nodes = append(iw.nodes, cn)
				e.node = cn
				if c.Mode.IsDir() {
					subdirs++
				}
			case c.Mode.IsDir():
				return false, fmt.Errorf("%w: %s/%s: hard link to a directory", ErrWrite, n.ino.Path(), e.name)
			}
		}
		n.nlink = 2 + subdirs
		n.dirents = entries
	}
	// Resolve hard links now that every inode has a node.
	for _, n := range iw.nodes {
		for i := range n.dirents {
			e := &n.dirents[i]
			if e.node == nil {
				e.node = index[e.target]
				if e.node == nil {
					return false, fmt.Errorf("%w: %s: hard link to an inode outside the tree", ErrWrite, e.name)
				}
			}
		}
	}
	return whiteouts, nil
}

// newWnode creates the node of an inode with its serialized metadata.
func newWnode(ino *Inode, parent *wnode) *wnode {
	n := &wnode{
		ino: ino, parent: parent, mode: ino.Mode, nlink: ino.Nlink,
		uid: ino.UID, gid: ino.GID, mtime: ino.Mtime, size: ino.Size,
	}
	switch ino.Mode.Type() {
	case TypeChar, TypeBlock:
		n.rdev = uint32(ino.Rdev)
		if ino.Rdev == 0 && ino.Mode.Type() == TypeChar {
			// An overlay whiteout in the input becomes a regular file
			// marked with escaped whiteout attributes.
			n.mode = TypeRegular | ino.Mode&PermMask
			n.size = 0
			n.rdev = 0
		}
	case TypeSymlink:
		n.size = int64(len(ino.Target))
	case TypeRegular:
		n.external = ino.Size > 0 && len(ino.Content) == 0
	}
	return n
}

// setXattr sets or replaces an attribute in a slice.
func setXattr(xs []Xattr, name, value string) []Xattr {
	for i := range xs {
		if xs[i].Name == name {
			xs[i].Value = value
			return xs
		}
	}
	return append(xs, Xattr{name, value})
}

// prepareXattrs computes every node's effective attributes: the inode's
// own, with trusted.overlay.* escaped, plus the overlayfs attributes that
// make the image work: metacopy and redirect for external files, whiteout
// markers, and the root's opaque flag.
func (iw *imageWriter) prepareXattrs() error {
	for i, n := range iw.nodes {
		if n.ino == nil {
			continue // synthetic whiteout, already set
		}
		xs := make([]Xattr, 0, len(n.ino.Xattrs)+2)
		for _, x := range n.ino.Xattrs {
			if strings.HasPrefix(x.Name, overlayPrefix) {
				x.Name = overlayEscapePrefix + x.Name[len(overlayPrefix):]
			}
			xs = setXattr(xs, x.Name, x.Value)
		}
		if n.external {
			var metacopy string
			if d := n.ino.Digest; d != nil {
				// version 0, length 36, flags 0, FS_VERITY_HASH_ALG_SHA256
				metacopy = "\x00\x24\x00\x01" + string(d[:])
			}
			xs = setXattr(xs, xattrMetacopy, metacopy)
			if n.ino.Payload != "" {
				xs = setXattr(xs, xattrRedirect, "/"+n.ino.Payload)
			}
		}
		if n.ino.IsWhiteout() {
			xs = setXattr(xs, xattrEscWhiteout, "")
			xs = setXattr(xs, xattrUserWhiteout, "")
		}
		if n.hasWhiteouts {
			xs = setXattr(xs, xattrEscWhiteouts, "")
			xs = setXattr(xs, xattrUserWhiteouts, "")
			if iw.version >= 1 {
				xs = setXattr(xs, xattrEscOpaque, "x")
				xs = setXattr(xs, xattrUserOpaque, "x")
			}
		}
		if i == 0 {
			xs = setXattr(xs, xattrOpaque, "y")
		}
		if err := xattrSpace(xs); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrWrite, n.ino.Path(), err)
		}
		slices.SortFunc(xs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
		n.xattrs = xs
	}
	iw.minMtime = iw.nodes[0].mtime
	for _, n := range iw.nodes {
		if n.mtime.Sec < iw.minMtime.Sec || (n.mtime.Sec == iw.minMtime.Sec && n.mtime.Nsec < iw.minMtime.Nsec) {
			iw.minMtime = n.mtime
		}
		if !iw.hasACL {
			for _, x := range n.xattrs {
				if x.Name == xattrACLAccess || x.Name == xattrACLDefault {
					iw.hasACL = true
				}
			}
		}
	}
	return nil
}

// shareXattrs finds the attributes used by more than one inode, lays out
// the shared table and decides per inode which attributes it references.
func (iw *imageWriter) shareXattrs() {
	counts := make(map[string]*sharedXattr)
	key := func(x Xattr) string { return x.Name + "\x00" + x.Value }
	for _, n := range iw.nodes {
		for _, x := range n.xattrs {
			k := key(x)
			s := counts[k]
			if s == nil {
				s = &sharedXattr{Xattr: x, offset: -1}
				counts[k] = s
			}
			s.count++
		}
	}
	for _, s := range counts {
		if s.count > 1 {
			iw.shared = append(iw.shared, s)
		}
	}
	// The reference's canonical order: names descending, then longer values
	// first, then values descending.
	slices.SortFunc(iw.shared, func(a, b *sharedXattr) int {
		if c := strings.Compare(b.Name, a.Name); c != 0 {
			return c
		}
		if len(a.Value) != len(b.Value) {
			return len(b.Value) - len(a.Value)
		}
		return strings.Compare(b.Value, a.Value)
	})
	off := 0
	for _, s := range iw.shared {
		s.offset = off
		off += xattrEntryLen(s.Name, len(s.Value))
	}
	iw.sharedLen = off
	for _, n := range iw.nodes {
		n.sharedOffsets = make([]int, len(n.xattrs))
		nShared := 0
		for i, x := range n.xattrs {
			n.sharedOffsets[i] = -1
			if s := counts[key(x)]; s.offset >= 0 && nShared < maxSharedPerInode {
				n.sharedOffsets[i] = s.offset
				nShared++
			}
		}
	}
}

// dirTail computes the full dirent blocks and the tail of a directory.
func (n *wnode) dirTail() (blocks uint32, tail uint32) {
	size := 0
	for _, e := range n.dirents {
		l := direntSize + len(e.name)
		if size+l > blockSize {
			blocks++
			size = 0
		}
		size += l
	}
	if size > blockSize/2 { // never inline more than half a block
		blocks++
		size = 0
	}
	return blocks, uint32(size)
}

// layout computes each inode's form, size, position and data blocks.
func (iw *imageWriter) layout() {
	pos := int64(superOffset + superSize)
	for _, n := range iw.nodes {
		// data size and tail
		switch n.mode.Type() {
		case TypeDir:
			n.nBlocks, n.tailSize = n.dirTail()
			n.size = int64(n.nBlocks)*blockSize + int64(n.tailSize)
		case TypeSymlink:
			n.tailSize = uint32(n.size)
		case TypeRegular:
			if n.size > 0 {
				if n.external {
					_, chunks := chunking(n.size)
					n.tailSize = uint32(chunks) * 4
				} else {
					n.nBlocks = uint32(n.size / blockSize)
					n.tailSize = uint32(n.size % blockSize)
					if n.tailSize > blockSize/2 {
						n.nBlocks++
						n.tailSize = 0
					}
				}
			}
		}
		n.compact = n.mtime == iw.minMtime && n.nlink <= 0xffff && n.uid <= 0xffff && n.gid <= 0xffff &&
			n.size >= 0 && n.size <= 0xffffffff
		inodeLen := inodeExtendedSize
		if n.compact {
			inodeLen = inodeCompactSize
		}
		n.xattrLen = xattrAreaLen(n)

		ppos := pos
		pos = (pos + slotSize - 1) &^ (slotSize - 1)
		n.ipad = int(pos - ppos)
		extra := n.tailPadding(pos, inodeLen)
		n.ipad += int(extra)
		pos += extra
		n.nid = uint64(pos / slotSize)
		iw.dataBlocks += int64(n.nBlocks)
		pos += int64(inodeLen + n.xattrLen + int(n.tailSize))
	}
	iw.inodesEnd = (pos + slotSize - 1) &^ (slotSize - 1)
}

// xattrAreaLen is the size of the inline xattr area of a node.
func xattrAreaLen(n *wnode) int {
	if len(n.xattrs) == 0 {
		return 0
	}
	size := xattrHeaderSize
	for i, x := range n.xattrs {
		if n.sharedOffsets[i] >= 0 {
			size += 4
		} else {
			size += xattrEntryLen(x.Name, len(x.Value))
		}
	}
	return size
}

// tailPadding returns the padding to insert before an inode at pos so that
// its inline tail does not cross a block boundary, moving the tail to a
// data block when it cannot fit (the reference's rules, quirks included).
func (n *wnode) tailPadding(pos int64, inodeLen int) int64 {
	nonTail := int64(inodeLen + n.xattrLen)
	total := nonTail + int64(n.tailSize)
	if n.mode.Type() == TypeSymlink {
		// Inode and target should share a block. If they cannot fit in
		// one, the target goes to a data block, but the padding decision
		// still uses the size with the target.
		if total/blockSize > 0 {
			n.nBlocks++
			n.tailSize = 0
		}
		if pos/blockSize != (pos+total-1)/blockSize {
			return roundUp(pos, blockSize) - pos
		}
		return 0
	}
	remainder := blockSize - (pos+nonTail)%blockSize
	if remainder < int64(n.tailSize) {
		extra := roundUp(remainder, slotSize)
		remainder = blockSize - (pos+nonTail+extra)%blockSize
		if int64(n.tailSize) <= remainder {
			return extra
		}
		n.nBlocks++
		n.tailSize = 0
		return roundUp(pos, blockSize) - pos
	}
	return 0
}

func roundUp(x, to int64) int64 { return (x + to - 1) / to * to }

// countingWriter tracks the output offset and the first error.
type countingWriter struct {
	w   *bufio.Writer
	off int64
	err error
	buf [64]byte
}

func (c *countingWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.off += int64(n)
	c.err = err
}

func (c *countingWriter) writeString(s string) {
	if c.err != nil {
		return
	}
	n, err := c.w.WriteString(s)
	c.off += int64(n)
	c.err = err
}

var zeros [blockSize]byte

func (c *countingWriter) pad(n int64) {
	for n > 0 {
		k := min(n, blockSize)
		c.write(zeros[:k])
		n -= k
	}
}

func (c *countingWriter) align(to int64) { c.pad(roundUp(c.off, to) - c.off) }

func (iw *imageWriter) write(w io.Writer) error {
	cw := &countingWriter{w: bufio.NewWriterSize(w, 64<<10)}
	le := binary.LittleEndian

	// composefs header
	var hdr [32]byte
	le.PutUint32(hdr[0:], composefsMagic)
	le.PutUint32(hdr[4:], composefsVersion)
	if iw.hasACL {
		le.PutUint32(hdr[8:], flagHasACL)
	}
	le.PutUint32(hdr[12:], uint32(iw.version))
	cw.write(hdr[:])
	cw.pad(superOffset - int64(len(hdr)))

	// superblock
	dataStart := roundUp(iw.inodesEnd+int64(iw.sharedLen), blockSize)
	var sb [superSize]byte
	le.PutUint32(sb[0:], erofsMagic)
	le.PutUint32(sb[8:], featureCompatMtime|featureCompatXattrFilter)
	sb[12] = blockBits
	le.PutUint16(sb[14:], uint16(iw.nodes[0].nid))
	le.PutUint64(sb[16:], uint64(len(iw.nodes)))
	le.PutUint64(sb[24:], uint64(iw.minMtime.Sec))
	le.PutUint32(sb[32:], iw.minMtime.Nsec)
	le.PutUint32(sb[36:], uint32(dataStart/blockSize+iw.dataBlocks))
	le.PutUint32(sb[40:], 0) // meta_blkaddr
	le.PutUint32(sb[44:], uint32(iw.inodesEnd/blockSize))
	cw.write(sb[:])

	// inodes
	nextBlock := dataStart / blockSize
	for _, n := range iw.nodes {
		cw.pad(int64(n.ipad))
		iw.writeInode(cw, n, &nextBlock)
	}
	cw.align(slotSize)
	if cw.err == nil && cw.off != iw.inodesEnd {
		return fmt.Errorf("%w: internal error: inodes end at %d, not %d", ErrWrite, cw.off, iw.inodesEnd)
	}

	// shared xattrs, then data blocks
	for _, s := range iw.shared {
		writeXattrEntry(cw, s.Xattr)
	}
	cw.align(blockSize)
	for _, n := range iw.nodes {
		iw.writeData(cw, n)
	}
	if cw.err != nil {
		return fmt.Errorf("writing image: %w", cw.err)
	}
	if want := (dataStart/blockSize + iw.dataBlocks) * blockSize; cw.off != want {
		return fmt.Errorf("%w: internal error: image ends at %d, not %d", ErrWrite, cw.off, want)
	}
	if err := cw.w.Flush(); err != nil {
		return fmt.Errorf("writing image: %w", err)
	}
	return nil
}

// writeInode writes one inode with its xattrs and inline tail.
func (iw *imageWriter) writeInode(cw *countingWriter, n *wnode, nextBlock *int64) {
	le := binary.LittleEndian
	layout := uint16(layoutFlatPlain)
	if n.tailSize > 0 {
		layout = layoutFlatInline
	}
	var iu uint32
	size := uint64(0)
	switch n.mode.Type() {
	case TypeDir:
		size = uint64(n.nBlocks)*blockSize + uint64(n.tailSize)
	case TypeRegular:
		size = uint64(n.size)
	case TypeSymlink:
		size = uint64(n.size)
	case TypeChar, TypeBlock:
		iu = n.rdev
	}
	if n.nBlocks > 0 {
		iu = uint32(*nextBlock)
		*nextBlock += int64(n.nBlocks)
	}
	if n.mode.Type() == TypeRegular && n.external {
		layout = layoutChunkBased
		chunkBits, _ := chunking(n.size)
		iu = iu&0xffff0000 | (chunkBits - blockBits)
	}
	xattrIcount := 0
	if n.xattrLen > 0 {
		xattrIcount = (n.xattrLen-xattrHeaderSize)/4 + 1
	}
	ino := cw.buf[:]
	clear(ino)
	if n.compact {
		le.PutUint16(ino[0:], layout<<1)
		le.PutUint16(ino[2:], uint16(xattrIcount))
		le.PutUint16(ino[4:], uint16(n.mode))
		le.PutUint16(ino[6:], uint16(n.nlink))
		le.PutUint32(ino[8:], uint32(size))
		le.PutUint32(ino[16:], iu)
		le.PutUint32(ino[20:], n.num)
		le.PutUint16(ino[24:], uint16(n.uid))
		le.PutUint16(ino[26:], uint16(n.gid))
		cw.write(ino[:inodeCompactSize])
	} else {
		le.PutUint16(ino[0:], layout<<1|1)
		le.PutUint16(ino[2:], uint16(xattrIcount))
		le.PutUint16(ino[4:], uint16(n.mode))
		le.PutUint64(ino[8:], size)
		le.PutUint32(ino[16:], iu)
		le.PutUint32(ino[20:], n.num)
		le.PutUint32(ino[24:], n.uid)
		le.PutUint32(ino[28:], n.gid)
		le.PutUint64(ino[32:], uint64(n.mtime.Sec))
		le.PutUint32(ino[40:], n.mtime.Nsec)
		le.PutUint32(ino[44:], n.nlink)
		cw.write(ino[:inodeExtendedSize])
	}

	if n.xattrLen > 0 {
		var filter uint32
		nShared := 0
		for i, x := range n.xattrs {
			filter |= 1 << xattrFilterBit(x.Name)
			if n.sharedOffsets[i] >= 0 {
				nShared++
			}
		}
		var h [xattrHeaderSize]byte
		le.PutUint32(h[0:], ^filter)
		h[4] = uint8(nShared)
		cw.write(h[:])
		base := iw.inodesEnd % blockSize
		var id [4]byte
		for i := range n.xattrs {
			if off := n.sharedOffsets[i]; off >= 0 {
				le.PutUint32(id[:], uint32((base+int64(off))/4))
				cw.write(id[:])
			}
		}
		for i, x := range n.xattrs {
			if n.sharedOffsets[i] < 0 {
				writeXattrEntry(cw, x)
			}
		}
	}

	if n.tailSize == 0 {
		return
	}
	switch n.mode.Type() {
	case TypeDir:
		_, chunks := n.direntChunks()
		last := chunks[len(chunks)-1]
		writeDirents(cw, n.dirents[last[0]:last[1]])
	case TypeSymlink:
		cw.writeString(n.ino.Target)
	case TypeRegular:
		if n.external {
			var null [4]byte
			binary.LittleEndian.PutUint32(null[:], nullAddr)
			for i := uint32(0); i < n.tailSize/4; i++ {
				cw.write(null[:])
			}
		} else {
			c := n.ino.Content
			cw.write(c[len(c)-int(n.tailSize):])
		}
	}
}

// writeXattrEntry writes one attribute entry padded to 4 bytes.
func writeXattrEntry(cw *countingWriter, x Xattr) {
	index, suffix := xattrIndex(x.Name)
	var e [xattrEntrySize]byte
	e[0] = uint8(len(suffix))
	e[1] = index
	binary.LittleEndian.PutUint16(e[2:], uint16(len(x.Value)))
	cw.write(e[:])
	cw.writeString(suffix)
	cw.writeString(x.Value)
	cw.align(4)
}

// direntChunks splits a directory's entries into block-sized chunks
// ([start, end) index pairs), greedily in sorted order.
func (n *wnode) direntChunks() (sizes []int, chunks [][2]int) {
	size, first := 0, 0
	for i, e := range n.dirents {
		l := direntSize + len(e.name)
		if size+l > blockSize {
			chunks = append(chunks, [2]int{first, i})
			sizes = append(sizes, size)
			size, first = 0, i
		}
		size += l
	}
	chunks = append(chunks, [2]int{first, len(n.dirents)})
	sizes = append(sizes, size)
	return sizes, chunks
}

// writeDirents writes one chunk of directory entries: the fixed-size
// entries, then the names.
func writeDirents(cw *countingWriter, entries []wdirent) {
	le := binary.LittleEndian
	nameoff := len(entries) * direntSize
	var d [direntSize]byte
	for _, e := range entries {
		le.PutUint64(d[0:], e.node.nid)
		le.PutUint16(d[8:], uint16(nameoff))
		d[10] = fileTypeOf(e.node.mode)
		d[11] = 0
		cw.write(d[:])
		nameoff += len(e.name)
	}
	for _, e := range entries {
		cw.writeString(e.name)
	}
}

// writeData writes a node's data blocks.
func (iw *imageWriter) writeData(cw *countingWriter, n *wnode) {
	if n.nBlocks == 0 {
		return
	}
	switch n.mode.Type() {
	case TypeDir:
		_, chunks := n.direntChunks()
		if n.tailSize > 0 {
			chunks = chunks[:len(chunks)-1]
		}
		for _, c := range chunks {
			writeDirents(cw, n.dirents[c[0]:c[1]])
			cw.align(blockSize)
		}
	case TypeSymlink:
		cw.writeString(n.ino.Target)
		cw.align(blockSize)
	case TypeRegular:
		if n.external {
			var null [4]byte
			binary.LittleEndian.PutUint32(null[:], nullAddr)
			for i := 0; i < maxChunks*int(n.nBlocks); i++ {
				cw.write(null[:])
			}
			return
		}
		c := n.ino.Content
		for i := uint32(0); i < n.nBlocks; i++ {
			start := int(i) * blockSize
			if start >= len(c) {
				cw.pad(blockSize)
				continue
			}
			cw.write(c[start:min(start+blockSize, len(c))])
			cw.align(blockSize)
		}
	}
}
