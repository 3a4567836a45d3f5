package uki

import (
	"debug/pe"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/cmdline"
)

// ErrNoSection means the UKI lacks the section asked for.
var ErrNoSection = errors.New("uki: section not present")

// File is an open UKI (or any PE32+ EFI image).
type File struct {
	Machine          uint16 // COFF machine (pe.IMAGE_FILE_MACHINE_AMD64, ..._ARM64)
	ImageBase        uint64
	EntryPoint       uint32 // AddressOfEntryPoint (RVA)
	SectionAlignment uint32
	FileAlignment    uint32
	SizeOfHeaders    uint32
	SizeOfImage      uint32
	SizeOfCode       uint32
	SizeOfInitData   uint32 // SizeOfInitializedData
	CheckSum         uint32 // as stored in the optional header
	// Signed is true when the security directory (Authenticode certificate
	// table) is present.
	Signed bool
	// NumberOfSymbols and PointerToSymbolTable are the COFF symbol table
	// fields (zero in a well-formed image).
	PointerToSymbolTable, NumberOfSymbols uint32
	Sections                              []*Section

	r      io.ReaderAt
	size   int64
	closer io.Closer
}

// Section is one PE section of a [File].
type Section struct {
	Name            string
	VirtualAddress  uint32 // RVA
	VirtualSize     uint32 // bytes of payload
	Offset          uint32 // PointerToRawData
	Size            uint32 // SizeOfRawData
	Characteristics uint32

	sr *io.SectionReader
}

// Open returns a reader of the section's payload (VirtualSize bytes, or the
// raw size when that is smaller). Each call returns a fresh reader.
func (s *Section) Open() io.ReadSeeker {
	return io.NewSectionReader(s.sr, 0, s.sr.Size())
}

// Data returns the section's payload.
func (s *Section) Data() ([]byte, error) {
	b := make([]byte, s.sr.Size())
	if _, err := io.ReadFull(s.Open(), b); err != nil {
		return nil, fmt.Errorf("uki: reading section %s: %w", s.Name, err)
	}
	return b, nil
}

// Open opens the named file with [NewFile]; Close releases it.
func Open(name string) (*File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	u, err := NewFile(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	u.closer = f
	return u, nil
}

// Close closes the file opened by [Open]; it does nothing for [NewFile].
func (f *File) Close() error {
	if f.closer == nil {
		return nil
	}
	err := f.closer.Close()
	f.closer = nil
	return err
}

// NewFile reads the PE headers of a UKI of size bytes from r.
func NewFile(r io.ReaderAt, size int64) (*File, error) {
	p, err := pe.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	defer p.Close()
	oh, ok := p.OptionalHeader.(*pe.OptionalHeader64)
	if !ok {
		return nil, fmt.Errorf("%w: not a PE32+ image", ErrFormat)
	}
	f := &File{
		Machine:              p.Machine,
		ImageBase:            oh.ImageBase,
		EntryPoint:           oh.AddressOfEntryPoint,
		SectionAlignment:     oh.SectionAlignment,
		FileAlignment:        oh.FileAlignment,
		SizeOfHeaders:        oh.SizeOfHeaders,
		SizeOfImage:          oh.SizeOfImage,
		SizeOfCode:           oh.SizeOfCode,
		SizeOfInitData:       oh.SizeOfInitializedData,
		CheckSum:             oh.CheckSum,
		PointerToSymbolTable: p.PointerToSymbolTable,
		NumberOfSymbols:      p.NumberOfSymbols,
		r:                    r,
		size:                 size,
	}
	if oh.NumberOfRvaAndSizes > dirSecurity {
		d := oh.DataDirectory[dirSecurity]
		f.Signed = d.VirtualAddress != 0 || d.Size != 0
	}
	for _, s := range p.Sections {
		if int64(s.Offset)+int64(s.Size) > size {
			return nil, fmt.Errorf("%w: section %s data %#x+%#x beyond the end of the file (%#x)", ErrFormat, s.Name, s.Offset, s.Size, size)
		}
		n := s.VirtualSize
		if n == 0 || n > s.Size {
			n = s.Size
		}
		f.Sections = append(f.Sections, &Section{
			Name:            s.Name,
			VirtualAddress:  s.VirtualAddress,
			VirtualSize:     s.VirtualSize,
			Offset:          s.Offset,
			Size:            s.Size,
			Characteristics: s.Characteristics,
			sr:              io.NewSectionReader(r, int64(s.Offset), int64(n)),
		})
	}
	return f, nil
}

// Section returns the first section with the given name, or nil.
func (f *File) Section(name string) *Section {
	for _, s := range f.Sections {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// text returns a text section without trailing NULs and line breaks.
func (f *File) text(name string) (string, error) {
	s := f.Section(name)
	if s == nil {
		return "", fmt.Errorf("%w: %s", ErrNoSection, name)
	}
	b, err := s.Data()
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\x00\n"), nil
}

// Cmdline returns the embedded kernel command line (.cmdline).
func (f *File) Cmdline() (string, error) { return f.text(SectionCmdline) }

// OSRelease returns the embedded os-release (.osrel).
func (f *File) OSRelease() (string, error) { return f.text(SectionOSRel) }

// Uname returns the embedded kernel release (.uname).
func (f *File) Uname() (string, error) { return f.text(SectionUname) }

// ComposefsDigest returns the composefs digest on the embedded command
// line; see [cmdline.ComposefsDigest] for the forms and errors.
func (f *File) ComposefsDigest() (cmdline.Digest, error) {
	c, err := f.Cmdline()
	if err != nil {
		return cmdline.Digest{}, err
	}
	return cmdline.ComposefsDigest(cmdline.Parse(c))
}

// ComputeChecksum computes the PE checksum of the whole file, to compare
// with [File.CheckSum].
func (f *File) ComputeChecksum() (uint32, error) {
	var lfanew [4]byte
	if _, err := f.r.ReadAt(lfanew[:], dosLfanewOff); err != nil {
		return 0, fmt.Errorf("uki: reading e_lfanew: %w", err)
	}
	off := int64(le32(lfanew[:], 0)) + 4 + coffHeaderSize + optCheckSum
	sum, err := peChecksum(f.r, f.size, off)
	if err != nil {
		return 0, fmt.Errorf("uki: computing checksum: %w", err)
	}
	return sum, nil
}
