// Package fat writes and reads FAT32 file systems as specified in
// Microsoft's "FAT: General Overview of On-Disk Format" (version 1.03) with
// VFAT long file names.
//
// The [Writer] formats a volume and fills it in one pass, in the style of
// archive/tar: [Writer.WriteHeader] names a file or directory, [Writer.Write]
// supplies a file's bytes, [Writer.Close] writes the directories, both FAT
// copies, the boot sector and FSInfo (free-cluster count and next-free hint
// set) and their backups. Missing parent directories are created on the
// way. File data goes to contiguous clusters in header order; directories
// follow the file data, except the root directory, which starts at cluster 2.
// Output is a function of the inputs only: there is no clock, no randomness
// and no map order; [Options] carries the volume ID and the timestamps.
//
// The [Reader] opens a FAT32 volume as an [io/fs.FS], long names included.
//
// Supported subset: FAT32 only (at least 65525 clusters, so volumes of at
// least about 33 MiB), 512-byte sectors, two FATs, cluster sizes chosen by
// volume size as mkfs.fat does. Out of scope: FAT12/16, updating an existing
// volume, files of 4 GiB or more, extended attributes of any kind.
//
// # Security
//
// The Reader bounds-checks every cluster number and follows each cluster
// chain for at most the volume's cluster count, so a hostile image cannot
// make it loop or read outside the volume; it does not check that chains
// are disjoint.
package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// On-disk constants.
const (
	sectorSize      = 512
	reservedSectors = 32
	numFATs         = 2
	fsInfoSector    = 1
	backupBootSect  = 6
	rootCluster     = 2
	dirEntrySize    = 32
	lfnChars        = 13
	minClusters     = 65525      // fewer clusters make the volume FAT16 by definition
	maxClusters     = 0x0FFFFFF5 // cluster numbers above are reserved
	eoc             = 0x0FFFFFFF // end-of-chain mark
	maxFileSize     = 1<<32 - 1

	attrReadOnly  = 0x01
	attrHidden    = 0x02
	attrSystem    = 0x04
	attrVolumeID  = 0x08
	attrDirectory = 0x10
	attrArchive   = 0x20
	attrLFN       = 0x0F

	ntLowerBase = 0x08 // NTRes: short base name is displayed in lower case
	ntLowerExt  = 0x10 // NTRes: short extension is displayed in lower case
)

// Sentinel errors.
var (
	// ErrTooSmall means the volume cannot hold a FAT32 file system.
	ErrTooSmall = errors.New("fat: volume too small for FAT32")
	// ErrName means a path is not a valid FAT long file name or collides
	// with another one (FAT names are case-insensitive).
	ErrName = errors.New("fat: invalid file name")
	// ErrWriteTooLong means more bytes were written than Header.Size.
	ErrWriteTooLong = errors.New("fat: write too long")
	// ErrWriteAfterClose means the Writer was used after Close.
	ErrWriteAfterClose = errors.New("fat: write after close")
	// ErrFormat means a volume being read is not a valid FAT32 file system.
	ErrFormat = errors.New("fat: not a valid FAT32 file system")
)

// SpaceError reports content that does not fit the volume: Needed and
// Available are bytes of the data area (whole clusters), counting file data
// and directories.
type SpaceError struct {
	Needed, Available int64
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("fat: content needs %d bytes of clusters, the volume has %d", e.Needed, e.Available)
}

// geometry is the layout of a volume.
type geometry struct {
	totalSectors      uint32
	sectorsPerCluster uint32
	fatSectors        uint32
	clusters          uint32 // data clusters, numbered 2..clusters+1
}

func (g geometry) clusterBytes() int64 { return int64(g.sectorsPerCluster) * sectorSize }
func (g geometry) fatOffset(i int) int64 {
	return int64(reservedSectors+uint32(i)*g.fatSectors) * sectorSize
}
func (g geometry) dataOffset() int64 { return g.fatOffset(numFATs) }
func (g geometry) clusterOffset(c uint32) int64 {
	return g.dataOffset() + int64(c-2)*g.clusterBytes()
}

// newGeometry chooses cluster and FAT sizes for a volume of size bytes.
func newGeometry(size int64) (geometry, error) {
	var g geometry
	if size/sectorSize > 0xFFFFFFFF {
		return g, fmt.Errorf("fat: volume of %d bytes exceeds the FAT32 limit of 2 TiB", size)
	}
	g.totalSectors = uint32(size / sectorSize)
	// Cluster sizes by volume size, as in mkfs.fat and Microsoft's format.
	const mib, gib = 1 << 20, 1 << 30
	var cb int64
	switch {
	case size <= 260*mib:
		cb = 512
	case size <= 8*gib:
		cb = 4096
	case size <= 16*gib:
		cb = 8192
	case size <= 32*gib:
		cb = 16384
	default:
		cb = 32768
	}
	g.sectorsPerCluster = uint32(cb / sectorSize)
	if g.totalSectors <= reservedSectors+numFATs {
		return g, fmt.Errorf("%w: %d bytes", ErrTooSmall, size)
	}
	// Smallest FAT (a multiple of 8 sectors, so the data area is 4 KiB
	// aligned) that maps every cluster left after the FATs.
	fat := uint32(8)
	for {
		if reservedSectors+numFATs*fat >= g.totalSectors {
			return g, fmt.Errorf("%w: %d bytes", ErrTooSmall, size)
		}
		clusters := (g.totalSectors - reservedSectors - numFATs*fat) / g.sectorsPerCluster
		need := ((clusters+2)*4 + sectorSize - 1) / sectorSize
		need = (need + 7) &^ 7
		if need <= fat {
			g.fatSectors, g.clusters = fat, clusters
			break
		}
		fat = need
	}
	if g.clusters < minClusters {
		min := int64(reservedSectors)*sectorSize + numFATs*int64((minClusters+2)*4+4095)&^4095 + minClusters*cb
		return g, fmt.Errorf("%w: %d bytes give %d clusters of %d bytes, FAT32 needs at least %d clusters (about %d bytes)",
			ErrTooSmall, size, g.clusters, cb, minClusters, min)
	}
	if g.clusters > maxClusters-2 {
		g.clusters = maxClusters - 2
	}
	return g, nil
}

// dosDateTime encodes t (taken as UTC) as FAT date and time words with
// 2-second resolution, clamped to 1980-01-01..2107-12-31.
func dosDateTime(t time.Time) (date, tim uint16) {
	t = t.UTC()
	switch {
	case t.Year() < 1980:
		return 1<<5 | 1, 0
	case t.Year() > 2107:
		return 127<<9 | 12<<5 | 31, 23<<11 | 59<<5 | 29
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	tim = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, tim
}

// fromDOS decodes FAT date and time words as UTC.
func fromDOS(date, tim uint16) time.Time {
	return time.Date(1980+int(date>>9), time.Month(date>>5&0xF), int(date&0x1F),
		int(tim>>11), int(tim>>5&0x3F), int(tim&0x1F)*2, 0, time.UTC)
}

// shortChecksum is the LFN checksum of an 11-byte short name.
func shortChecksum(name []byte) byte {
	var sum byte
	for _, c := range name[:11] {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// putDirEntry encodes a short directory entry.
func putDirEntry(b []byte, short [11]byte, attr, ntres byte, cluster, size uint32, mtime time.Time) {
	copy(b[0:11], short[:])
	b[11] = attr
	b[12] = ntres
	date, tim := dosDateTime(mtime)
	binary.LittleEndian.PutUint16(b[14:], tim)  // creation time
	binary.LittleEndian.PutUint16(b[16:], date) // creation date
	binary.LittleEndian.PutUint16(b[18:], date) // last access date
	binary.LittleEndian.PutUint16(b[20:], uint16(cluster>>16))
	binary.LittleEndian.PutUint16(b[22:], tim)
	binary.LittleEndian.PutUint16(b[24:], date)
	binary.LittleEndian.PutUint16(b[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(b[28:], size)
}
