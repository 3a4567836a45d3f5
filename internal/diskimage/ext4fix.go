package diskimage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// ext4 on-disk offsets and flags used by normalizeExt4 (Linux
// Documentation/filesystems/ext4, "Super Block", "Block Group Descriptors",
// "Index Nodes").
const (
	sbOffset            = 1024
	sbMagic             = 0xEF53
	incompat64Bit       = 0x80
	incompatMetaBG      = 0x10
	incompatCsumSeed    = 0x2000
	roCompatMetadataCsm = 0x400
	bgInodeUninit       = 0x1
	goodOldInodeSize    = 128
	immutableFlag       = 0x10 // EXT4_IMMUTABLE_FL in i_flags
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32cRaw is the kernel's crc32c_le: no pre- or post-inversion.
func crc32cRaw(crc uint32, p []byte) uint32 {
	return ^crc32.Update(^crc, castagnoli, p)
}

// ext4Inode is a handle on one inode of a file system inside a file.
type ext4FS struct {
	f          io.ReaderAt
	base       int64 // byte offset of the file system in f
	blockSize  int64
	inodeSize  int64
	perGroup   uint32
	groups     uint32
	descSize   int64
	descStart  int64 // byte offset of the group descriptor table
	csum       bool
	is64       bool
	csumSeed   uint32
	inodeCount uint32
}

func openExt4(f io.ReaderAt, base int64) (*ext4FS, error) {
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, base+sbOffset); err != nil {
		return nil, fmt.Errorf("reading ext4 superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[56:]) != sbMagic {
		return nil, fmt.Errorf("no ext4 superblock at offset %d", base)
	}
	e := &ext4FS{f: f, base: base}
	e.inodeCount = le.Uint32(sb[0:])
	blocks := uint64(le.Uint32(sb[4:]))
	firstData := le.Uint32(sb[20:])
	e.blockSize = 1024 << le.Uint32(sb[24:])
	blocksPerGroup := le.Uint32(sb[32:])
	e.perGroup = le.Uint32(sb[40:])
	e.inodeSize = int64(le.Uint16(sb[88:]))
	incompat := le.Uint32(sb[96:])
	roCompat := le.Uint32(sb[100:])
	e.descSize = 32
	if incompat&incompat64Bit != 0 {
		e.is64 = true
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
		e.descSize = int64(le.Uint16(sb[254:]))
	}
	switch {
	case e.blockSize > 65536 || blocksPerGroup == 0 || e.perGroup == 0:
		return nil, fmt.Errorf("unexpected ext4 geometry: block size %d, %d blocks and %d inodes per group", e.blockSize, blocksPerGroup, e.perGroup)
	case e.inodeSize < goodOldInodeSize || e.inodeSize > e.blockSize || e.descSize < 32:
		return nil, fmt.Errorf("unexpected ext4 inode size %d or descriptor size %d", e.inodeSize, e.descSize)
	case incompat&incompatMetaBG != 0:
		return nil, fmt.Errorf("ext4 meta_bg layout is not supported")
	}
	e.groups = uint32((blocks - uint64(firstData) + uint64(blocksPerGroup) - 1) / uint64(blocksPerGroup))
	e.descStart = int64(firstData+1) * e.blockSize
	if roCompat&roCompatMetadataCsm != 0 {
		e.csum = true
		if incompat&incompatCsumSeed != 0 {
			e.csumSeed = le.Uint32(sb[0x270:])
		} else {
			e.csumSeed = crc32cRaw(^uint32(0), sb[104:120])
		}
	}
	return e, nil
}

// normalizeExt4 removes what mke2fs -d copies from the source tree beyond
// its content, in the ext4 file system at byte offset base of f: it sets
// the access and change times of every in-use inode to t (seconds,
// nanoseconds zero), because nobody controls them in a source tree (reading
// it changes atimes, materialising it sets ctimes), and it puts extended
// attributes in a canonical order (see canonicalXattrs), because mke2fs
// keeps the source file system's listing order. Inode and xattr block
// checksums are updated. Modification times are the tree's and stay.
// The inodes in immutable get the immutable flag (EXT4_IMMUTABLE_FL).
func normalizeExt4(f interface {
	io.ReaderAt
	io.WriterAt
}, base int64, t int64, immutable map[uint32]bool) (changed int, err error) {
	e, err := openExt4(f, base)
	if err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	lo := uint32(t)
	extra := uint32((t-int64(int32(lo)))>>32) & 3 // epoch bits for times past 2038
	rw := blockIO{
		read: func(blk uint64, b []byte) error {
			_, err := f.ReadAt(b, base+int64(blk)*e.blockSize)
			return err
		},
		write: func(blk uint64, b []byte) error {
			_, err := f.WriteAt(b, base+int64(blk)*e.blockSize)
			return err
		},
	}
	desc := make([]byte, e.descSize)
	bitmap := make([]byte, e.blockSize)
	table := make([]byte, int64(e.perGroup)*e.inodeSize)
	for g := range e.groups {
		if _, err := f.ReadAt(desc, base+e.descStart+int64(g)*e.descSize); err != nil {
			return changed, fmt.Errorf("reading group descriptor %d: %w", g, err)
		}
		if le.Uint16(desc[18:])&bgInodeUninit != 0 {
			continue
		}
		bitmapBlk := uint64(le.Uint32(desc[4:]))
		tableBlk := uint64(le.Uint32(desc[8:]))
		if e.descSize >= 64 {
			bitmapBlk |= uint64(le.Uint32(desc[0x24:])) << 32
			tableBlk |= uint64(le.Uint32(desc[0x28:])) << 32
		}
		if _, err := f.ReadAt(bitmap, base+int64(bitmapBlk)*e.blockSize); err != nil {
			return changed, fmt.Errorf("reading inode bitmap of group %d: %w", g, err)
		}
		if _, err := f.ReadAt(table, base+int64(tableBlk)*e.blockSize); err != nil {
			return changed, fmt.Errorf("reading inode table of group %d: %w", g, err)
		}
		dirty := make([]bool, int64(len(table))/e.blockSize+1)
		for i := range e.perGroup {
			if bitmap[i/8]&(1<<(i%8)) == 0 {
				continue
			}
			ino := table[int64(i)*e.inodeSize : int64(i+1)*e.inodeSize]
			if le.Uint16(ino[0:]) == 0 { // reserved inode without a file
				continue
			}
			extraSize := int64(0)
			if e.inodeSize > goodOldInodeSize {
				extraSize = int64(le.Uint16(ino[0x80:]))
			}
			fits := func(off, n int64) bool { return goodOldInodeSize+extraSize >= off+n }
			le.PutUint32(ino[8:], lo)  // i_atime
			le.PutUint32(ino[12:], lo) // i_ctime
			if fits(0x84, 4) {
				le.PutUint32(ino[0x84:], extra) // i_ctime_extra
			}
			if fits(0x8C, 4) {
				le.PutUint32(ino[0x8C:], extra) // i_atime_extra
			}
			if immutable[g*e.perGroup+i+1] {
				le.PutUint32(ino[0x20:], le.Uint32(ino[0x20:])|immutableFlag) // i_flags
			}
			if _, err := e.canonicalXattrs(ino, extraSize, rw); err != nil {
				return changed, fmt.Errorf("inode %d: %w", g*e.perGroup+i+1, err)
			}
			if e.csum {
				inum := g*e.perGroup + i + 1
				var n [4]byte
				le.PutUint32(n[:], inum)
				seed := crc32cRaw(e.csumSeed, n[:])
				seed = crc32cRaw(seed, ino[0x64:0x68]) // i_generation
				le.PutUint16(ino[0x7C:], 0)
				hasHi := e.inodeSize > goodOldInodeSize && fits(0x82, 2)
				if hasHi {
					le.PutUint16(ino[0x82:], 0)
				}
				sum := crc32cRaw(seed, ino)
				le.PutUint16(ino[0x7C:], uint16(sum))
				if hasHi {
					le.PutUint16(ino[0x82:], uint16(sum>>16))
				}
			}
			dirty[int64(i)*e.inodeSize/e.blockSize] = true
			changed++
		}
		// Write back only the table blocks that changed, so untouched
		// (possibly sparse) parts of the image stay as they are.
		for b, d := range dirty {
			if !d {
				continue
			}
			off := int64(b) * e.blockSize
			end := min(off+e.blockSize, int64(len(table)))
			if _, err := f.WriteAt(table[off:end], base+int64(tableBlk)*e.blockSize+off); err != nil {
				return changed, fmt.Errorf("writing inode table of group %d: %w", g, err)
			}
		}
	}
	return changed, nil
}
