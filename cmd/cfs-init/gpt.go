package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// rootType is the Discoverable Partitions Specification root partition
// type of an architecture (GOARCH), "" for one cfs-compose does not build.
func rootType(goarch string) string {
	a, err := arch.Lookup(goarch)
	if err != nil {
		return ""
	}
	return a.RootPartitionType
}

// gptPartition is one used GPT partition entry.
type gptPartition struct {
	Number int    // 1-based entry index, as the kernel numbers partitions
	Type   string // type GUID, lower case
	Name   string // partition name (PARTLABEL)
}

var errNoGPT = errors.New("no GPT header")

// readGPT parses the primary GPT of a disk (512- or 4096-byte sectors),
// checking the header and entry-array CRCs.
func readGPT(r io.ReaderAt) ([]gptPartition, error) {
	var lastErr error = errNoGPT
	for _, sector := range []int64{512, 4096} {
		parts, err := readGPTSector(r, sector)
		if err == nil {
			return parts, nil
		}
		if !errors.Is(err, errNoGPT) {
			lastErr = err
		}
	}
	return nil, lastErr
}

func readGPTSector(r io.ReaderAt, sector int64) ([]gptPartition, error) {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, sector); err != nil {
		return nil, errNoGPT
	}
	if string(hdr[:8]) != "EFI PART" {
		return nil, errNoGPT
	}
	le := binary.LittleEndian
	hsize := le.Uint32(hdr[12:])
	if hsize < 92 || int64(hsize) > sector {
		return nil, fmt.Errorf("GPT header size %d out of range", hsize)
	}
	full := make([]byte, hsize)
	if _, err := r.ReadAt(full, sector); err != nil {
		return nil, fmt.Errorf("reading GPT header: %w", err)
	}
	want := le.Uint32(full[16:])
	clear(full[16:20])
	if crc32.ChecksumIEEE(full) != want {
		return nil, errors.New("GPT header CRC mismatch")
	}
	entriesLBA := int64(le.Uint64(hdr[72:]))
	count := le.Uint32(hdr[80:])
	esize := le.Uint32(hdr[84:])
	if esize < 128 || esize > 4096 || count > 1024 {
		return nil, fmt.Errorf("GPT entry array %d x %d out of range", count, esize)
	}
	arr := make([]byte, int(count)*int(esize))
	if _, err := r.ReadAt(arr, entriesLBA*sector); err != nil {
		return nil, fmt.Errorf("reading GPT entries: %w", err)
	}
	if crc32.ChecksumIEEE(arr) != le.Uint32(hdr[88:]) {
		return nil, errors.New("GPT partition entry array CRC mismatch")
	}
	var parts []gptPartition
	for i := 0; i < int(count); i++ {
		e := arr[i*int(esize) : (i+1)*int(esize)]
		if bytes.Equal(e[:16], make([]byte, 16)) {
			continue
		}
		u := make([]uint16, 36)
		for j := range u {
			u[j] = le.Uint16(e[56+2*j:])
		}
		for j, c := range u {
			if c == 0 {
				u = u[:j]
				break
			}
		}
		parts = append(parts, gptPartition{Number: i + 1, Type: guidString(e[:16]), Name: string(utf16.Decode(u))})
	}
	return parts, nil
}

// guidString formats a GPT (mixed-endian) GUID.
func guidString(b []byte) string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(b[0:]), le.Uint16(b[4:]), le.Uint16(b[6:]), b[8:10], b[10:16])
}
