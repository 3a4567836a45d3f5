package uki

import "errors"

// Section names of a UKI (UAPI Group UKI specification).
const (
	SectionLinux   = ".linux"
	SectionInitrd  = ".initrd"
	SectionCmdline = ".cmdline"
	SectionOSRel   = ".osrel"
	SectionUname   = ".uname"
	SectionSBAT    = ".sbat"
)

// Section characteristics used for appended sections.
const (
	scnCntCode        = 0x00000020
	scnCntInitialized = 0x00000040
	scnMemRead        = 0x40000000

	// CharData is the Characteristics value of appended data sections.
	CharData = scnCntInitialized | scnMemRead
	// CharCode is the Characteristics value of the appended .linux section.
	CharCode = scnCntCode | scnMemRead
)

// PE layout constants (Microsoft PE/COFF specification).
const (
	dosLfanewOff      = 0x3c
	peSignature       = "PE\x00\x00"
	coffHeaderSize    = 20
	sectionHeaderSize = 40
	symbolSize        = 18
	magicPE32Plus     = 0x20b

	// Offsets inside the COFF file header.
	coffNumberOfSections     = 2
	coffPointerToSymbolTable = 8
	coffNumberOfSymbols      = 12
	coffSizeOfOptionalHeader = 16

	// Offsets inside the PE32+ optional header.
	optSizeOfCode            = 4
	optSizeOfInitializedData = 8
	optSectionAlignment      = 32
	optFileAlignment         = 36
	optSizeOfImage           = 56
	optSizeOfHeaders         = 60
	optCheckSum              = 64
	optDllCharacteristics    = 70
	optNumberOfRvaAndSizes   = 108
	optDataDirectory         = 112
	dirSecurity              = 4

	dllNXCompat = 0x0100

	// maxStubSize bounds the stub read into memory.
	maxStubSize = 64 << 20
)

// Errors callers can test for with errors.Is.
var (
	// ErrSigned means the stub already carries an Authenticode signature.
	ErrSigned = errors.New("uki: stub is already signed (security directory present)")
	// ErrHeaderSpace means the stub's headers have no room for the new
	// section headers.
	ErrHeaderSpace = errors.New("uki: not enough header space for the new section headers")
	// ErrFormat means the stub or UKI is not a PE32+ image this package
	// understands.
	ErrFormat = errors.New("uki: unsupported or malformed PE image")
	// ErrNoLinux means [Sections.Linux] is missing.
	ErrNoLinux = errors.New("uki: no kernel (.linux) given")
)

func alignUp(v, a uint64) uint64 {
	if a == 0 {
		return v
	}
	return (v + a - 1) / a * a
}
