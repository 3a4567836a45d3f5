package gpt

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

func crc32IEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

// Read parses the GPT of a disk of size bytes with the given logical sector
// size (512 or 4096). It checks the protective MBR, both headers, their
// CRCs, and that the backup agrees with the primary; ErrNoTable means there
// is no GPT signature at LBA 1, ErrCorrupt anything else that is wrong.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if sectorSize != 512 && sectorSize != 4096 {
		return nil, fmt.Errorf("gpt: sector size %d (want 512 or 4096)", sectorSize)
	}
	ss := int64(sectorSize)
	total := uint64(size / ss)
	if total < 3 {
		return nil, ErrNoTable
	}
	mbr := make([]byte, ss)
	if _, err := r.ReadAt(mbr, 0); err != nil {
		return nil, fmt.Errorf("gpt: reading protective MBR: %w", err)
	}
	primary, err := readHeader(r, 1, total, ss)
	if err != nil {
		return nil, err
	}
	if mbr[510] != 0x55 || mbr[511] != 0xAA || !hasProtectiveRecord(mbr) {
		return nil, fmt.Errorf("%w: no protective MBR", ErrCorrupt)
	}
	if primary.alt != total-1 {
		return nil, fmt.Errorf("%w: primary header points to backup at LBA %d, disk ends at LBA %d", ErrCorrupt, primary.alt, total-1)
	}
	backup, err := readHeader(r, total-1, total, ss)
	if err != nil {
		return nil, fmt.Errorf("backup header: %w", err)
	}
	if backup.alt != 1 || backup.first != primary.first || backup.last != primary.last ||
		backup.disk != primary.disk || backup.count != primary.count ||
		backup.entrySize != primary.entrySize || backup.arrayCRC != primary.arrayCRC {
		return nil, fmt.Errorf("%w: backup header disagrees with the primary", ErrCorrupt)
	}
	array, err := readArray(r, primary, total, ss)
	if err != nil {
		return nil, err
	}
	if _, err := readArray(r, backup, total, ss); err != nil {
		return nil, fmt.Errorf("backup entries: %w", err)
	}
	t := &Table{SectorSize: sectorSize, DiskGUID: primary.disk}
	for i := range int(primary.count) {
		e := array[i*int(primary.entrySize):]
		typ := mixedGUID(e[0:])
		if typ.IsZero() {
			continue
		}
		p := Partition{
			Type:       typ,
			GUID:       mixedGUID(e[16:]),
			FirstLBA:   binary.LittleEndian.Uint64(e[32:]),
			LastLBA:    binary.LittleEndian.Uint64(e[40:]),
			Attributes: binary.LittleEndian.Uint64(e[48:]),
			Name:       decodeName(e[56:128]),
		}
		if p.FirstLBA < primary.first || p.LastLBA > primary.last || p.FirstLBA > p.LastLBA {
			return nil, fmt.Errorf("%w: entry %d spans LBA %d-%d outside the usable range %d-%d",
				ErrCorrupt, i+1, p.FirstLBA, p.LastLBA, primary.first, primary.last)
		}
		t.Partitions = append(t.Partitions, p)
		t.Slots = append(t.Slots, i+1)
	}
	return t, nil
}

func hasProtectiveRecord(mbr []byte) bool {
	for i := range 4 {
		if mbr[446+16*i+4] == 0xEE {
			return true
		}
	}
	return false
}

type header struct {
	my, alt, first, last, arrayLBA uint64
	disk                           GUID
	count, entrySize, arrayCRC     uint32
}

func readHeader(r io.ReaderAt, lba, total uint64, ss int64) (*header, error) {
	b := make([]byte, ss)
	if _, err := r.ReadAt(b, int64(lba)*ss); err != nil {
		return nil, fmt.Errorf("gpt: reading header at LBA %d: %w", lba, err)
	}
	if string(b[0:8]) != "EFI PART" {
		if lba == 1 {
			return nil, ErrNoTable
		}
		return nil, fmt.Errorf("%w: no header signature at LBA %d", ErrCorrupt, lba)
	}
	hs := binary.LittleEndian.Uint32(b[12:])
	if hs < headerSize || int64(hs) > ss {
		return nil, fmt.Errorf("%w: header size %d at LBA %d", ErrCorrupt, hs, lba)
	}
	want := binary.LittleEndian.Uint32(b[16:])
	h := make([]byte, hs)
	copy(h, b)
	clear(h[16:20])
	if got := crc32IEEE(h); got != want {
		return nil, fmt.Errorf("%w: header CRC at LBA %d is %08x, computed %08x", ErrCorrupt, lba, want, got)
	}
	hd := &header{
		my:        binary.LittleEndian.Uint64(b[24:]),
		alt:       binary.LittleEndian.Uint64(b[32:]),
		first:     binary.LittleEndian.Uint64(b[40:]),
		last:      binary.LittleEndian.Uint64(b[48:]),
		disk:      mixedGUID(b[56:]),
		arrayLBA:  binary.LittleEndian.Uint64(b[72:]),
		count:     binary.LittleEndian.Uint32(b[80:]),
		entrySize: binary.LittleEndian.Uint32(b[84:]),
		arrayCRC:  binary.LittleEndian.Uint32(b[88:]),
	}
	switch {
	case hd.my != lba:
		return nil, fmt.Errorf("%w: header at LBA %d says it is at LBA %d", ErrCorrupt, lba, hd.my)
	case hd.count == 0 || hd.count > MaxEntries:
		return nil, fmt.Errorf("%w: %d partition entries", ErrCorrupt, hd.count)
	case hd.entrySize < EntrySize || hd.entrySize%8 != 0 || hd.entrySize > 1024:
		return nil, fmt.Errorf("%w: partition entry size %d", ErrCorrupt, hd.entrySize)
	case hd.first > hd.last || hd.last >= total:
		return nil, fmt.Errorf("%w: usable range %d-%d on a disk of %d sectors", ErrCorrupt, hd.first, hd.last, total)
	}
	return hd, nil
}

func readArray(r io.ReaderAt, h *header, total uint64, ss int64) ([]byte, error) {
	n := uint64(h.count) * uint64(h.entrySize)
	sectors := (n + uint64(ss) - 1) / uint64(ss)
	if h.arrayLBA < 2 || h.arrayLBA+sectors > total {
		return nil, fmt.Errorf("%w: entry array at LBA %d outside the disk", ErrCorrupt, h.arrayLBA)
	}
	array := make([]byte, n)
	if _, err := r.ReadAt(array, int64(h.arrayLBA)*ss); err != nil {
		return nil, fmt.Errorf("gpt: reading entry array at LBA %d: %w", h.arrayLBA, err)
	}
	if got := crc32IEEE(array); got != h.arrayCRC {
		return nil, fmt.Errorf("%w: entry array CRC at LBA %d is %08x, computed %08x", ErrCorrupt, h.arrayLBA, h.arrayCRC, got)
	}
	return array, nil
}
