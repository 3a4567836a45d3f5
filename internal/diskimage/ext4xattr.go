package diskimage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
)

// Extended attribute storage (Linux Documentation/filesystems/ext4,
// "Extended Attributes"): an in-inode area after i_extra_isize and at most
// one external block per inode.
const (
	xattrMagic       = 0xEA020000
	xattrEntryHeader = 16
	xattrBlockHeader = 32
)

// xattr is one extended attribute as stored on disk.
type xattr struct {
	index byte // name index (1 user., 6 security., ...)
	name  []byte
	value []byte
}

// less is the kernel's and libext2fs's order: index, name length, name.
func (a xattr) less(b xattr) bool {
	if a.index != b.index {
		return a.index < b.index
	}
	if len(a.name) != len(b.name) {
		return len(a.name) < len(b.name)
	}
	return bytes.Compare(a.name, b.name) < 0
}

func xattrEntryLen(nameLen int) int { return (xattrEntryHeader + nameLen + 3) &^ 3 }
func xattrValueLen(n int) int       { return (n + 3) &^ 3 }

// hash is ext4_xattr_hash_entry (with signed chars, as e2fsprogs 1.47.0
// and the x86 kernel compute it; identical for ASCII names).
func (a xattr) hash() uint32 {
	var h uint32
	for _, c := range a.name {
		h = h<<5 ^ h>>27 ^ uint32(int32(int8(c)))
	}
	if len(a.value) > 0 {
		v := make([]byte, xattrValueLen(len(a.value)))
		copy(v, a.value)
		for i := 0; i < len(v); i += 4 {
			h = h<<16 ^ h>>16 ^ binary.LittleEndian.Uint32(v[i:])
		}
	}
	return h
}

// parseXattrs reads the entries starting at off in buf; values are at
// valueBase+e_value_offs.
func parseXattrs(buf []byte, off, valueBase int) ([]xattr, error) {
	var out []xattr
	le := binary.LittleEndian
	for {
		if off+4 > len(buf) {
			return nil, fmt.Errorf("xattr entries run past their area")
		}
		if le.Uint32(buf[off:]) == 0 {
			return out, nil
		}
		if off+xattrEntryHeader > len(buf) {
			return nil, fmt.Errorf("xattr entry header runs past its area")
		}
		nameLen := int(buf[off])
		if off+xattrEntryLen(nameLen) > len(buf) {
			return nil, fmt.Errorf("xattr name runs past its area")
		}
		if le.Uint32(buf[off+4:]) != 0 {
			return nil, fmt.Errorf("xattr values in inodes (ea_inode) are not supported")
		}
		vOff := valueBase + int(le.Uint16(buf[off+2:]))
		vLen := int(le.Uint32(buf[off+8:]))
		if vOff < 0 || vOff+vLen > len(buf) {
			return nil, fmt.Errorf("xattr value outside its area")
		}
		out = append(out, xattr{
			index: buf[off+1],
			name:  append([]byte(nil), buf[off+xattrEntryHeader:off+xattrEntryHeader+nameLen]...),
			value: append([]byte(nil), buf[vOff:vOff+vLen]...),
		})
		off += xattrEntryLen(nameLen)
	}
}

// layoutXattrs writes entries into area (zeroed first): entries from
// entryOff on, values packed downward from the end; value offsets are
// relative to valueBase. It returns how many entries fit.
func layoutXattrs(area []byte, entryOff, valueBase int, xs []xattr) int {
	clear(area[entryOff:])
	le := binary.LittleEndian
	end := len(area)
	off := entryOff
	for i, x := range xs {
		el, vl := xattrEntryLen(len(x.name)), xattrValueLen(len(x.value))
		if off+el+4 > end-vl { // keep room for the 4-byte end marker
			return i
		}
		end -= vl
		copy(area[end:], x.value)
		e := area[off:]
		e[0] = byte(len(x.name))
		e[1] = x.index
		if len(x.value) > 0 {
			le.PutUint16(e[2:], uint16(end-valueBase))
		}
		le.PutUint32(e[8:], uint32(len(x.value)))
		le.PutUint32(e[12:], x.hash())
		copy(e[xattrEntryHeader:], x.name)
		off += el
	}
	return len(xs)
}

// fitsXattrs reports whether xs fit an area of size bytes whose entries
// start at entryOff.
func fitsXattrs(size, entryOff int, xs []xattr) bool {
	n := entryOff + 4
	for _, x := range xs {
		n += xattrEntryLen(len(x.name)) + xattrValueLen(len(x.value))
	}
	return n <= size
}

// canonicalXattrs rewrites an inode's extended attributes in a canonical
// form that depends only on the set of attributes: sorted, the longest
// prefix that fits in the inode, the rest (at least one, when the inode
// has an xattr block) in its block. mke2fs -d stores them in the order the
// source file system lists them, which differs between file systems and
// between materialisations of the same tree. ino is the inode's bytes
// (modified in place); readBlock and writeBlock access the inode's xattr
// block, whose checksum writeBlock's caller must not worry about: it is
// recomputed here. It reports whether anything changed.
func (e *ext4FS) canonicalXattrs(ino []byte, extraSize int64, rw blockIO) (bool, error) {
	le := binary.LittleEndian
	ibodyStart := int(goodOldInodeSize + extraSize)
	hasIbody := int64(ibodyStart)+4 <= e.inodeSize && le.Uint32(ino[ibodyStart:]) == xattrMagic
	blk := uint64(le.Uint32(ino[0x68:]))
	if e.is64 {
		blk |= uint64(le.Uint16(ino[0x76:])) << 32
	}
	if !hasIbody && blk == 0 {
		return false, nil
	}
	var all []xattr
	var ibody []byte
	if hasIbody {
		ibody = ino[ibodyStart+4:]
		xs, err := parseXattrs(ibody, 0, 0)
		if err != nil {
			return false, fmt.Errorf("in-inode xattrs: %w", err)
		}
		all = append(all, xs...)
	}
	var block []byte
	if blk != 0 {
		block = make([]byte, e.blockSize)
		if err := rw.read(blk, block); err != nil {
			return false, fmt.Errorf("reading xattr block %d: %w", blk, err)
		}
		if le.Uint32(block[0:]) != xattrMagic || le.Uint32(block[8:]) != 1 {
			return false, fmt.Errorf("xattr block %d: bad header", blk)
		}
		if le.Uint32(block[4:]) != 1 {
			return false, fmt.Errorf("xattr block %d is shared by %d inodes; mkfs.ext4 -d does not share blocks", blk, le.Uint32(block[4:]))
		}
		xs, err := parseXattrs(block, xattrBlockHeader, 0)
		if err != nil {
			return false, fmt.Errorf("xattr block %d: %w", blk, err)
		}
		all = append(all, xs...)
	}
	if len(all) < 2 && blk == 0 {
		return false, nil // a single in-inode attribute is already canonical
	}
	sort.Slice(all, func(i, j int) bool { return all[i].less(all[j]) })

	// Split: the longest sorted prefix that fits in the inode; with a
	// block, at least one attribute stays in the block.
	n := 0
	if ibody != nil || int64(ibodyStart)+4 <= e.inodeSize {
		for n < len(all) && fitsXattrs(int(e.inodeSize)-ibodyStart-4, 0, all[:n+1]) {
			n++
		}
	}
	if blk != 0 && n == len(all) {
		n--
	}
	if blk == 0 && n < len(all) {
		return false, fmt.Errorf("xattrs of the inode no longer fit in it")
	}
	oldIno := append([]byte(nil), ino...)
	if n > 0 {
		le.PutUint32(ino[ibodyStart:], xattrMagic)
		if layoutXattrs(ino[ibodyStart+4:], 0, 0, all[:n]) != n {
			return false, fmt.Errorf("in-inode xattr layout overflow")
		}
	} else if int64(ibodyStart)+4 <= e.inodeSize {
		clear(ino[ibodyStart:])
	}
	changed := !bytes.Equal(oldIno, ino)
	if blk != 0 {
		nb := make([]byte, e.blockSize)
		copy(nb, block[:xattrBlockHeader])
		if layoutXattrs(nb, xattrBlockHeader, 0, all[n:]) != len(all)-n {
			return false, fmt.Errorf("xattr block %d layout overflow", blk)
		}
		// Header hash over the entry hashes (ext2fs_ext_attr_block_rehash).
		var h uint32
		for _, x := range all[n:] {
			h = h<<16 ^ h>>16 ^ x.hash()
		}
		le.PutUint32(nb[12:], h)
		if e.csum {
			le.PutUint32(nb[16:], 0)
			var b8 [8]byte
			le.PutUint64(b8[:], blk)
			le.PutUint32(nb[16:], crc32cRaw(crc32cRaw(e.csumSeed, b8[:]), nb))
		}
		if !bytes.Equal(nb, block) {
			if err := rw.write(blk, nb); err != nil {
				return false, fmt.Errorf("writing xattr block %d: %w", blk, err)
			}
			changed = true
		}
	}
	return changed, nil
}

// blockIO reads and writes whole file system blocks.
type blockIO struct {
	read  func(blk uint64, b []byte) error
	write func(blk uint64, b []byte) error
}
