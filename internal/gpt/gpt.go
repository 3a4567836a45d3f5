// Package gpt reads and writes GUID Partition Tables as defined in the UEFI
// Specification 2.10, section 5.3.
//
// A [Table] is the public model: the disk GUID, the sector size and the
// partition entries in slot order. [Table.Write] lays down a protective MBR,
// the primary header and entry array at LBA 1, and the backup entry array
// and header at the end of the disk; [Read] parses and cross-checks both
// copies. The entry array always has 128 slots of 128 bytes, the layout every
// partitioning tool writes, so it covers 32 sectors at 512-byte sectors and
// 4 sectors at 4096-byte sectors.
//
// Out of scope: hybrid MBRs, repairing a damaged table, entry arrays of any
// other size when writing (reading accepts any size the header declares, up
// to [MaxEntries] entries).
//
// # Security
//
// [Read] checks every offset, count and CRC before it trusts a field and
// never allocates more than [MaxEntries]*[EntrySize] bytes, so it is safe on
// untrusted disk images. It does not reject overlapping partitions.
package gpt

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sizes and limits of the on-disk format.
const (
	EntrySize   = 128  // bytes per partition entry written by Table.Write
	NumEntries  = 128  // entry slots written by Table.Write
	MaxEntries  = 4096 // largest entry count Read accepts
	NameLen     = 36   // UTF-16 code units in a partition name
	headerSize  = 92
	revision1_0 = 0x00010000
)

// Sentinel errors.
var (
	// ErrNoTable means the disk carries no GPT signature.
	ErrNoTable = errors.New("gpt: no GUID partition table")
	// ErrCorrupt means a header or entry array fails a consistency check.
	ErrCorrupt = errors.New("gpt: corrupt partition table")
	// ErrLayout means a Table cannot be written as given.
	ErrLayout = errors.New("gpt: invalid layout")
)

// GUID is a globally unique identifier held in the byte order of its text
// form (RFC 9562). On disk GPT stores the first three fields little-endian;
// the encoding is handled here, callers never see it.
type GUID [16]byte

// Well-known partition type GUIDs (Discoverable Partitions Specification).
var (
	TypeESP             = MustParseGUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b") // EFI System Partition
	TypeLinuxRootX86_64 = MustParseGUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709") // Linux root (x86-64)
	TypeLinuxRootARM64  = MustParseGUID("b921b045-1df0-41c3-af44-4c6f280d3fae") // Linux root (ARM64)
	TypeLinuxData       = MustParseGUID("0fc63daf-8483-4772-8e79-3d69d8477de4") // Linux filesystem data
)

// ParseGUID parses the 36-character text form
// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (either case).
func ParseGUID(s string) (GUID, error) {
	var g GUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return g, fmt.Errorf("gpt: malformed GUID %q", s)
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(g[:], []byte(h)); err != nil {
		return GUID{}, fmt.Errorf("gpt: malformed GUID %q: %w", s, err)
	}
	return g, nil
}

// MustParseGUID is [ParseGUID] for constants; it panics on a malformed GUID.
func MustParseGUID(s string) GUID {
	g, err := ParseGUID(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the lower-case text form.
func (g GUID) String() string {
	h := hex.EncodeToString(g[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// IsZero reports whether g is the all-zero (unused) GUID.
func (g GUID) IsZero() bool { return g == GUID{} }

// putMixed stores g in GPT's mixed-endian on-disk form.
func (g GUID) putMixed(b []byte) {
	binary.LittleEndian.PutUint32(b[0:], binary.BigEndian.Uint32(g[0:]))
	binary.LittleEndian.PutUint16(b[4:], binary.BigEndian.Uint16(g[4:]))
	binary.LittleEndian.PutUint16(b[6:], binary.BigEndian.Uint16(g[6:]))
	copy(b[8:16], g[8:16])
}

// mixedGUID reads a GUID in GPT's mixed-endian on-disk form.
func mixedGUID(b []byte) GUID {
	var g GUID
	binary.BigEndian.PutUint32(g[0:], binary.LittleEndian.Uint32(b[0:]))
	binary.BigEndian.PutUint16(g[4:], binary.LittleEndian.Uint16(b[4:]))
	binary.BigEndian.PutUint16(g[6:], binary.LittleEndian.Uint16(b[6:]))
	copy(g[8:16], b[8:16])
	return g
}

// Partition is one used entry of the table.
type Partition struct {
	Type       GUID   // partition type; never zero for a used entry
	GUID       GUID   // unique partition GUID (PARTUUID)
	FirstLBA   uint64 // first sector, inclusive
	LastLBA    uint64 // last sector, inclusive
	Attributes uint64 // attribute bits (bit 0 required, bit 60 read-only, ...)
	Name       string // partition name (PARTLABEL), at most 36 UTF-16 code units
}

// Size returns the partition size in bytes for the given sector size.
func (p *Partition) Size(sectorSize int) int64 {
	return int64(p.LastLBA-p.FirstLBA+1) * int64(sectorSize)
}

// Table is a GUID partition table.
type Table struct {
	// SectorSize is the logical sector size in bytes: 512 or 4096.
	SectorSize int
	// DiskGUID identifies the disk.
	DiskGUID GUID
	// Partitions holds the used entries; Partitions[i] occupies slot i+1
	// (the kernel's partition number). Read leaves out empty slots but keeps
	// the numbering in Slots.
	Partitions []Partition
	// Slots, when read, is the 1-based slot number of each partition in
	// Partitions. Write ignores it and writes Partitions to slots 1..n.
	Slots []int
}

// UsableRange returns the first and last LBA a partition may occupy on a
// disk of size bytes with this table's sector size.
func (t *Table) UsableRange(size int64) (first, last uint64, err error) {
	if t.SectorSize != 512 && t.SectorSize != 4096 {
		return 0, 0, fmt.Errorf("%w: sector size %d (want 512 or 4096)", ErrLayout, t.SectorSize)
	}
	ss := int64(t.SectorSize)
	arraySectors := (NumEntries*EntrySize + ss - 1) / ss
	total := size / ss
	first = uint64(2 + arraySectors)
	if total < 2*(2+arraySectors)+1 {
		return 0, 0, fmt.Errorf("%w: disk of %d bytes is too small for a GPT", ErrLayout, size)
	}
	last = uint64(total - 2 - arraySectors)
	return first, last, nil
}

// Write writes the protective MBR, the primary table and the backup table of
// t to w, a disk of size bytes. It writes only those sectors; everything
// else on the disk is left alone. Partitions must lie inside
// [Table.UsableRange], must not overlap, and need a non-zero Type.
func (t *Table) Write(w WriterAt, size int64) error {
	first, last, err := t.UsableRange(size)
	if err != nil {
		return err
	}
	if len(t.Partitions) > NumEntries {
		return fmt.Errorf("%w: %d partitions (at most %d)", ErrLayout, len(t.Partitions), NumEntries)
	}
	ss := int64(t.SectorSize)
	total := uint64(size / ss)
	array := make([]byte, NumEntries*EntrySize)
	for i, p := range t.Partitions {
		if p.Type.IsZero() {
			return fmt.Errorf("%w: partition %d (%q) has no type GUID", ErrLayout, i+1, p.Name)
		}
		if p.FirstLBA < first || p.LastLBA > last || p.FirstLBA > p.LastLBA {
			return fmt.Errorf("%w: partition %d (%q) spans LBA %d-%d outside the usable range %d-%d",
				ErrLayout, i+1, p.Name, p.FirstLBA, p.LastLBA, first, last)
		}
		for j := range i {
			q := t.Partitions[j]
			if p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA {
				return fmt.Errorf("%w: partition %d (%q) overlaps partition %d (%q)", ErrLayout, i+1, p.Name, j+1, q.Name)
			}
		}
		name, err := encodeName(p.Name)
		if err != nil {
			return fmt.Errorf("%w: partition %d: %w", ErrLayout, i+1, err)
		}
		e := array[i*EntrySize:]
		p.Type.putMixed(e[0:])
		p.GUID.putMixed(e[16:])
		binary.LittleEndian.PutUint64(e[32:], p.FirstLBA)
		binary.LittleEndian.PutUint64(e[40:], p.LastLBA)
		binary.LittleEndian.PutUint64(e[48:], p.Attributes)
		copy(e[56:128], name)
	}
	arrayCRC := crc32IEEE(array)
	arraySectors := uint64(len(array)) / uint64(ss)

	primary := t.header(1, total-1, first, last, 2, arrayCRC)
	backup := t.header(total-1, 1, first, last, total-1-arraySectors, arrayCRC)

	writes := []struct {
		lba  uint64
		data []byte
	}{
		{0, protectiveMBR(total, int(ss))},
		{1, padSector(primary, int(ss))},
		{2, array},
		{total - 1 - arraySectors, array},
		{total - 1, padSector(backup, int(ss))},
	}
	for _, wr := range writes {
		if _, err := w.WriteAt(wr.data, int64(wr.lba)*ss); err != nil {
			return fmt.Errorf("gpt: writing LBA %d: %w", wr.lba, err)
		}
	}
	return nil
}

// WriterAt is the subset of io.WriterAt Write needs.
type WriterAt interface {
	WriteAt(p []byte, off int64) (n int, err error)
}

func (t *Table) header(my, alt, first, last, arrayLBA uint64, arrayCRC uint32) []byte {
	h := make([]byte, headerSize)
	copy(h[0:8], "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], revision1_0)
	binary.LittleEndian.PutUint32(h[12:], headerSize)
	binary.LittleEndian.PutUint64(h[24:], my)
	binary.LittleEndian.PutUint64(h[32:], alt)
	binary.LittleEndian.PutUint64(h[40:], first)
	binary.LittleEndian.PutUint64(h[48:], last)
	t.DiskGUID.putMixed(h[56:])
	binary.LittleEndian.PutUint64(h[72:], arrayLBA)
	binary.LittleEndian.PutUint32(h[80:], NumEntries)
	binary.LittleEndian.PutUint32(h[84:], EntrySize)
	binary.LittleEndian.PutUint32(h[88:], arrayCRC)
	binary.LittleEndian.PutUint32(h[16:], crc32IEEE(h))
	return h
}

// protectiveMBR returns sector 0: one partition record of type 0xEE covering
// the disk from LBA 1 (capped at 2^32-1 sectors).
func protectiveMBR(totalSectors uint64, ss int) []byte {
	b := make([]byte, ss)
	r := b[446:462]
	r[0] = 0x00                // not bootable
	r[1], r[2], r[3] = 0, 2, 0 // CHS of LBA 1
	r[4] = 0xEE                // GPT protective
	r[5], r[6], r[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(r[8:], 1)
	n := totalSectors - 1
	if n > 0xFFFFFFFF {
		n = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(r[12:], uint32(n))
	b[510], b[511] = 0x55, 0xAA
	return b
}

func padSector(b []byte, ss int) []byte {
	s := make([]byte, ss)
	copy(s, b)
	return s
}

// encodeName encodes a partition name as UTF-16LE in 72 bytes.
func encodeName(s string) ([]byte, error) {
	b := make([]byte, 2*NameLen)
	n := 0
	for _, r := range s {
		var units []uint16
		switch {
		case r == 0:
			return nil, fmt.Errorf("partition name %q contains NUL", s)
		case r < 0x10000:
			units = []uint16{uint16(r)}
		default:
			r -= 0x10000
			units = []uint16{uint16(0xD800 + (r >> 10)), uint16(0xDC00 + (r & 0x3FF))}
		}
		for _, u := range units {
			if n == NameLen {
				return nil, fmt.Errorf("partition name %q is longer than %d UTF-16 code units", s, NameLen)
			}
			binary.LittleEndian.PutUint16(b[2*n:], u)
			n++
		}
	}
	return b, nil
}

// decodeName decodes a NUL-terminated UTF-16LE partition name.
func decodeName(b []byte) string {
	var sb strings.Builder
	for i := 0; i+1 < len(b); i += 2 {
		u := rune(binary.LittleEndian.Uint16(b[i:]))
		if u == 0 {
			break
		}
		if u >= 0xD800 && u < 0xDC00 && i+3 < len(b) {
			lo := rune(binary.LittleEndian.Uint16(b[i+2:]))
			if lo >= 0xDC00 && lo < 0xE000 {
				sb.WriteRune(0x10000 + (u-0xD800)<<10 + (lo - 0xDC00))
				i += 2
				continue
			}
		}
		sb.WriteRune(u)
	}
	return sb.String()
}
