package secureboot

import (
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/sassoftware/relic/v7/lib/authenticode"
)

// ErrMalformed means a PE image is too damaged to hash or verify.
var ErrMalformed = errors.New("secureboot: malformed PE image")

// PE layout facts checkPE relies on (Microsoft PE/COFF specification).
const (
	dosHeaderSize    = 64
	lfanewOffset     = 0x3c
	fileHeaderSize   = 20 // COFF file header, after the 4-byte "PE\0\0"
	sectionEntrySize = 40
	optMagicPE32     = 0x10b
	optMagicPE32Plus = 0x20b
	// Sizes of the optional headers with all 16 data directories, which
	// relic reads whole, and the offset of NumberOfRvaAndSizes in each.
	optSizePE32, optRvaCountPE32         = 224, 92
	optSizePE32Plus, optRvaCountPE32Plus = 240, 108
	dirSecurityIndex                     = 4
	optFileAlign                         = 36 // FileAlignment, in both forms
)

// checkPE checks the PE structure that relic's Authenticode code takes for
// granted (it indexes and slices its headers without checking them), so
// that a truncated or malformed image is an error wrapping [ErrMalformed]
// rather than a panic in the library. r is left at offset 0.
func checkPE(r io.ReadSeeker) error {
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	read := func(off, n int64, what string) ([]byte, error) {
		if off < 0 || n < 0 || off > size || n > size-off {
			return nil, fmt.Errorf("%w: %s (%d bytes at %#x) beyond the end of the %d-byte file", ErrMalformed, what, n, off, size)
		}
		b := make([]byte, n)
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("%w: reading %s: %w", ErrMalformed, what, err)
		}
		return b, nil
	}
	dos, err := read(0, dosHeaderSize, "DOS header")
	if err != nil {
		return err
	}
	if dos[0] != 'M' || dos[1] != 'Z' {
		return fmt.Errorf("%w: no MZ signature", ErrMalformed)
	}
	peOff := int64(binary.LittleEndian.Uint32(dos[lfanewOffset:]))
	hdr, err := read(peOff, 4+fileHeaderSize, "PE signature and COFF header")
	if err != nil {
		return err
	}
	if string(hdr[:4]) != "PE\x00\x00" {
		return fmt.Errorf("%w: no PE signature at %#x", ErrMalformed, peOff)
	}
	nsec := int64(binary.LittleEndian.Uint16(hdr[4+2:]))
	optSize := int64(binary.LittleEndian.Uint16(hdr[4+16:]))
	optOff := peOff + 4 + fileHeaderSize
	opt, err := read(optOff, optSize, "optional header")
	if err != nil {
		return err
	}
	if optSize < 2 {
		return fmt.Errorf("%w: optional header of %d bytes", ErrMalformed, optSize)
	}
	var need, rvaAt int64
	switch magic := binary.LittleEndian.Uint16(opt); magic {
	case optMagicPE32:
		need, rvaAt = optSizePE32, optRvaCountPE32
	case optMagicPE32Plus:
		need, rvaAt = optSizePE32Plus, optRvaCountPE32Plus
	default:
		return fmt.Errorf("%w: unknown optional header magic %#x", ErrMalformed, magic)
	}
	if optSize < need {
		return fmt.Errorf("%w: optional header of %d bytes, want at least %d", ErrMalformed, optSize, need)
	}
	if binary.LittleEndian.Uint32(opt[optFileAlign:]) == 0 {
		return fmt.Errorf("%w: FileAlignment is 0", ErrMalformed) // relic divides by it
	}
	if n := binary.LittleEndian.Uint32(opt[rvaAt:]); n <= dirSecurityIndex {
		return fmt.Errorf("%w: %d data directories, no room for the certificate table", ErrMalformed, n)
	}
	secEnd := optOff + optSize + nsec*sectionEntrySize
	if _, err := read(optOff+optSize, nsec*sectionEntrySize, "section table"); err != nil {
		return err
	}
	dir := opt[rvaAt+4+dirSecurityIndex*8:]
	certOff, certSize := int64(binary.LittleEndian.Uint32(dir)), int64(binary.LittleEndian.Uint32(dir[4:]))
	if certSize != 0 && (certOff < secEnd || certOff > size || certSize > size-certOff) {
		return fmt.Errorf("%w: certificate table %#x+%#x outside the %d-byte file", ErrMalformed, certOff, certSize, size)
	}
	_, err = r.Seek(0, io.SeekStart)
	return err
}

// errLibraryFailed marks errors that come from a panic in relic, which
// checkPE should have prevented (FuzzVerifyPE looks for them).
var errLibraryFailed = errors.New("the Authenticode library failed")

// guard runs a call into relic and turns a panic in it into an error
// wrapping [ErrMalformed]: relic does not promise to survive hostile input.
func guard(what string, f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s: %w: %v", ErrMalformed, what, errLibraryFailed, p)
		}
	}()
	return f()
}

// digestPE is relic's DigestPE behind checkPE and guard.
func digestPE(r io.ReadSeeker) (*authenticode.PEDigest, error) {
	if err := checkPE(r); err != nil {
		return nil, err
	}
	var pd *authenticode.PEDigest
	err := guard("hashing", func() error {
		var err error
		pd, err = authenticode.DigestPE(r, crypto.SHA256, false)
		return err
	})
	return pd, err
}
