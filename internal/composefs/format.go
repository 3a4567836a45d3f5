package composefs

import (
	"encoding/binary"
	"math/bits"
	"strings"
)

// On-disk layout of a composefs image (see FORMAT.md in the golden corpus
// and the kernel's Documentation/filesystems/erofs.rst): a 32-byte composefs
// header at offset 0, the EROFS superblock at 1024, inodes from 1152 on
// 32-byte slots, the shared extended attribute table right after the last
// inode, then 4096-byte data blocks. All integers are little-endian.
const (
	blockSize   = 4096
	blockBits   = 12
	slotSize    = 32
	superOffset = 1024
	superSize   = 128

	composefsMagic   = 0xd078629a
	composefsVersion = 1 // version of the composefs header
	flagHasACL       = 1 << 0

	erofsMagic               = 0xe0f5e1e2
	featureCompatMtime       = 0x2
	featureCompatXattrFilter = 0x4

	inodeCompactSize  = 32
	inodeExtendedSize = 64

	// i_format data layouts
	layoutFlatPlain  = 0
	layoutFlatInline = 2
	layoutChunkBased = 4

	xattrHeaderSize = 12
	xattrEntrySize  = 4
	xattrFilterSeed = 0x25bbe08f
	// maxSharedPerInode is the number of shared attributes one inode may
	// reference (EROFS_XATTR_LONG_PREFIX in the reference implementation).
	maxSharedPerInode = 128

	direntSize = 12

	nullAddr         = 0xffffffff
	maxChunks        = 1024
	chunkBlkbitsMask = 0x1f

	// MaxVersion is the highest image format version supported.
	MaxVersion = 1
)

// EROFS directory entry file types.
const (
	ftUnknown = 0
	ftReg     = 1
	ftDir     = 2
	ftChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
)

// Extended attribute name prefixes of EROFS, in the order libcomposefs
// tries them. Names that match none are stored whole with index 0.
var xattrPrefixes = []struct {
	prefix string
	index  uint8
}{
	{"user.", 1},
	{"system.posix_acl_access", 2},
	{"system.posix_acl_default", 3},
	{"trusted.", 4},
	{"security.", 6},
}

// xattrIndex splits an attribute name into its EROFS prefix index and the
// stored suffix.
func xattrIndex(name string) (uint8, string) {
	for _, p := range xattrPrefixes {
		if strings.HasPrefix(name, p.prefix) {
			return p.index, name[len(p.prefix):]
		}
	}
	return 0, name
}

// xattrPrefix returns the name prefix of an EROFS prefix index.
func xattrPrefix(index uint8) (string, bool) {
	for _, p := range xattrPrefixes {
		if p.index == index {
			return p.prefix, true
		}
	}
	return "", index == 0
}

// Overlayfs extended attributes composefs writes and hides.
const (
	overlayPrefix        = "trusted.overlay."
	overlayEscapePrefix  = "trusted.overlay.overlay."
	xattrMetacopy        = "trusted.overlay.metacopy"
	xattrRedirect        = "trusted.overlay.redirect"
	xattrOpaque          = "trusted.overlay.opaque"
	xattrEscWhiteout     = "trusted.overlay.overlay.whiteout"
	xattrEscWhiteouts    = "trusted.overlay.overlay.whiteouts"
	xattrEscOpaque       = "trusted.overlay.overlay.opaque"
	xattrUserWhiteout    = "user.overlay.whiteout"
	xattrUserWhiteouts   = "user.overlay.whiteouts"
	xattrUserOpaque      = "user.overlay.opaque"
	xattrACLAccess       = "system.posix_acl_access"
	xattrACLDefault      = "system.posix_acl_default"
	metacopyDigestLength = 4 + 32
)

// xattrEntryLen is the on-disk size of one attribute entry, padded to 4.
func xattrEntryLen(name string, valueLen int) int {
	_, suffix := xattrIndex(name)
	return (xattrEntrySize + len(suffix) + valueLen + 3) &^ 3
}

// xxh32 is the 32-bit xxHash of b with the given seed, used for the EROFS
// xattr name filter.
func xxh32(b []byte, seed uint32) uint32 {
	const (
		p1 uint32 = 2654435761
		p2 uint32 = 2246822519
		p3 uint32 = 3266489917
		p4 uint32 = 668265263
		p5 uint32 = 374761393
	)
	round := func(acc, in uint32) uint32 {
		return bits.RotateLeft32(acc+in*p2, 13) * p1
	}
	n := len(b)
	var h uint32
	if n >= 16 {
		v1, v2, v3, v4 := seed+p1+p2, seed+p2, seed, seed-p1
		for len(b) >= 16 {
			v1 = round(v1, binary.LittleEndian.Uint32(b))
			v2 = round(v2, binary.LittleEndian.Uint32(b[4:]))
			v3 = round(v3, binary.LittleEndian.Uint32(b[8:]))
			v4 = round(v4, binary.LittleEndian.Uint32(b[12:]))
			b = b[16:]
		}
		h = bits.RotateLeft32(v1, 1) + bits.RotateLeft32(v2, 7) + bits.RotateLeft32(v3, 12) + bits.RotateLeft32(v4, 18)
	} else {
		h = seed + p5
	}
	h += uint32(n)
	for len(b) >= 4 {
		h += binary.LittleEndian.Uint32(b) * p3
		h = bits.RotateLeft32(h, 17) * p4
		b = b[4:]
	}
	for _, c := range b {
		h += uint32(c) * p5
		h = bits.RotateLeft32(h, 11) * p1
	}
	h ^= h >> 15
	h *= p2
	h ^= h >> 13
	h *= p3
	h ^= h >> 16
	return h
}

// xattrFilterBit returns the bloom filter bit of an attribute name.
func xattrFilterBit(name string) uint32 {
	index, suffix := xattrIndex(name)
	return xxh32([]byte(suffix), xattrFilterSeed+uint32(index)) & 31
}

// chunking returns the chunk size in bits and the number of chunks an
// external file of size bytes is described with.
func chunking(size int64) (chunkBits uint32, chunks int64) {
	chunkBits = uint32(bits.Len64(uint64(size - 1)))
	if size <= 1 {
		chunkBits = 0
	}
	if chunkBits < blockBits {
		chunkBits = blockBits
	}
	if chunkBits-blockBits > chunkBlkbitsMask {
		chunkBits = chunkBlkbitsMask + blockBits
	}
	chunkSize := int64(1) << chunkBits
	return chunkBits, (size + chunkSize - 1) / chunkSize
}

// fileTypeOf returns the EROFS directory entry type of a mode.
func fileTypeOf(m Mode) uint8 {
	switch m.Type() {
	case TypeRegular:
		return ftReg
	case TypeDir:
		return ftDir
	case TypeChar:
		return ftChr
	case TypeBlock:
		return ftBlk
	case TypeFIFO:
		return ftFifo
	case TypeSocket:
		return ftSock
	case TypeSymlink:
		return ftSymlink
	}
	return ftUnknown
}
