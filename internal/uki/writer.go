package uki

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Payload is section content: anything with ReadAt and Size, such as
// *io.SectionReader, *bytes.Reader or *strings.Reader. It is read twice
// (once for the checksum, once to write), so it must not change meanwhile.
type Payload interface {
	io.ReaderAt
	Size() int64
}

// Sections are the payloads of a UKI. Empty payloads are left out, except
// Linux, which is required.
type Sections struct {
	Linux   Payload // the kernel image (itself an EFI PE), embedded verbatim
	Initrd  Payload // the initramfs (compressed cpio), optional
	Cmdline string  // kernel command line, stored as given
	OSRel   string  // os-release contents
	Uname   string  // kernel release (uname -r)
	// SBAT is extra SBAT CSV lines (one component per line; a "sbat,"
	// header line is ignored). They are merged after the stub's and the
	// kernel's own SBAT lines under a single "sbat,1,..." header. Empty means
	// [DefaultSBAT], ukify's default.
	SBAT string
}

// DefaultSBAT is the SBAT line ukify adds for the UKI itself when no other
// lines are given.
const DefaultSBAT = "uki,1,UKI,uki,1,https://uapi-group.org/specifications/specs/unified_kernel_image/"

const sbatHeader = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md"

// stubSection is one section header of the stub.
type stubSection struct {
	name            string
	virtualSize     uint32
	virtualAddress  uint32
	rawSize, rawPtr uint32
	characteristics uint32
}

// stubImage is the stub parsed just enough to append sections.
type stubImage struct {
	buf        []byte
	coff, opt  int // offsets of the COFF file header and the optional header
	secTab     int // offset of the section table
	sections   []stubSection
	end        int // end of the last section's raw data: where appended data starts
	fileAlign  uint64
	sectAlign  uint64
	sizeOfHdrs uint64
}

func le16(b []byte, off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }

func formatErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, a...)...)
}

// parseStub reads and checks the stub: PE32+, unsigned, aligned sections,
// nothing after the last section but a COFF symbol table (which is
// dropped).
func parseStub(r io.ReaderAt, size int64) (*stubImage, error) {
	if size < 0x40 || size > maxStubSize {
		return nil, formatErr("stub size %d out of range", size)
	}
	buf := make([]byte, size)
	if _, err := r.ReadAt(buf, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("uki: reading stub: %w", err)
	}
	if buf[0] != 'M' || buf[1] != 'Z' {
		return nil, formatErr("stub has no MZ signature")
	}
	s := &stubImage{buf: buf}
	lfanew := int(le32(buf, dosLfanewOff))
	if lfanew < 0 || lfanew+4+coffHeaderSize > len(buf) || string(buf[lfanew:lfanew+4]) != peSignature {
		return nil, formatErr("stub has no PE signature at e_lfanew %#x", lfanew)
	}
	s.coff = lfanew + 4
	s.opt = s.coff + coffHeaderSize
	nsec := int(le16(buf, s.coff+coffNumberOfSections))
	sizeOpt := int(le16(buf, s.coff+coffSizeOfOptionalHeader))
	if sizeOpt < optDataDirectory || s.opt+sizeOpt > len(buf) {
		return nil, formatErr("optional header size %d out of range", sizeOpt)
	}
	if m := le16(buf, s.opt); m != magicPE32Plus {
		return nil, formatErr("optional header magic %#x, want PE32+ (%#x)", m, magicPE32Plus)
	}
	nrva := int(le32(buf, s.opt+optNumberOfRvaAndSizes))
	if nrva > dirSecurity && optDataDirectory+8*(dirSecurity+1) <= sizeOpt {
		d := s.opt + optDataDirectory + 8*dirSecurity
		if le32(buf, d) != 0 || le32(buf, d+4) != 0 {
			return nil, ErrSigned
		}
	}
	s.sectAlign = uint64(le32(buf, s.opt+optSectionAlignment))
	s.fileAlign = uint64(le32(buf, s.opt+optFileAlignment))
	s.sizeOfHdrs = uint64(le32(buf, s.opt+optSizeOfHeaders))
	if s.fileAlign == 0 || s.fileAlign&(s.fileAlign-1) != 0 || s.sectAlign < s.fileAlign || s.sectAlign&(s.sectAlign-1) != 0 {
		return nil, formatErr("bad alignments: SectionAlignment %#x, FileAlignment %#x", s.sectAlign, s.fileAlign)
	}
	s.secTab = s.opt + sizeOpt
	if nsec == 0 || s.secTab+nsec*sectionHeaderSize > len(buf) {
		return nil, formatErr("section table (%d sections) out of range", nsec)
	}
	s.end = int(s.sizeOfHdrs)
	for i := 0; i < nsec; i++ {
		h := s.secTab + i*sectionHeaderSize
		sec := stubSection{
			name:            strings.TrimRight(string(buf[h:h+8]), "\x00"),
			virtualSize:     le32(buf, h+8),
			virtualAddress:  le32(buf, h+12),
			rawSize:         le32(buf, h+16),
			rawPtr:          le32(buf, h+20),
			characteristics: le32(buf, h+36),
		}
		if sec.rawSize > 0 {
			if uint64(sec.rawPtr)%s.fileAlign != 0 || uint64(sec.rawSize)%s.fileAlign != 0 {
				return nil, formatErr("section %s raw data (%#x+%#x) not aligned to FileAlignment %#x", sec.name, sec.rawPtr, sec.rawSize, s.fileAlign)
			}
			if uint64(sec.rawPtr) < s.sizeOfHdrs || uint64(sec.rawPtr)+uint64(sec.rawSize) > uint64(len(buf)) {
				return nil, formatErr("section %s raw data %#x+%#x outside the file (headers %#x, size %#x)", sec.name, sec.rawPtr, sec.rawSize, s.sizeOfHdrs, len(buf))
			}
			s.end = max(s.end, int(sec.rawPtr+sec.rawSize))
		}
		s.sections = append(s.sections, sec)
	}
	if s.end > len(buf) {
		return nil, formatErr("headers (%#x bytes) larger than the file", s.end)
	}
	if err := s.dropTail(); err != nil {
		return nil, err
	}
	return s, nil
}

// dropTail removes a trailing COFF symbol and string table and zero padding
// after the last section; any other trailing data is an error.
func (s *stubImage) dropTail() error {
	buf := s.buf
	symPtr := int64(le32(buf, s.coff+coffPointerToSymbolTable))
	nsym := int64(le32(buf, s.coff+coffNumberOfSymbols))
	symStart, symEnd := int64(len(buf)), int64(len(buf))
	if symPtr != 0 {
		if symPtr < int64(s.end) {
			return formatErr("COFF symbol table at %#x lies inside section data (ends %#x)", symPtr, s.end)
		}
		symStart, symEnd = symPtr, symPtr+symbolSize*nsym
		if symEnd+4 <= int64(len(buf)) {
			if n := int64(le32(buf, int(symEnd))); n >= 4 {
				symEnd += n
			}
		}
		symEnd = min(symEnd, int64(len(buf)))
	}
	for i := int64(s.end); i < int64(len(buf)); i++ {
		if (i < symStart || i >= symEnd) && buf[i] != 0 {
			return formatErr("unexpected data at %#x after the last section (ends %#x)", i, s.end)
		}
	}
	if symPtr != 0 || nsym != 0 {
		binary.LittleEndian.PutUint32(buf[s.coff+coffPointerToSymbolTable:], 0)
		binary.LittleEndian.PutUint32(buf[s.coff+coffNumberOfSymbols:], 0)
	}
	s.buf = buf[:s.end]
	return nil
}

// appended is one section to append.
type appended struct {
	name  string
	data  Payload
	chars uint32
	va    uint32
	raw   uint32 // file offset
}

// Build writes a UKI made of stub (stubSize bytes) and the given sections
// to w. The stub must be an unsigned PE32+ EFI application with room in its
// headers for the new section headers. Nothing is written when the inputs
// are refused; an error from w may leave partial output.
func Build(w io.Writer, stub io.ReaderAt, stubSize int64, s Sections) error {
	if s.Linux == nil || s.Linux.Size() == 0 {
		return ErrNoLinux
	}
	st, err := parseStub(stub, stubSize)
	if err != nil {
		return err
	}
	buf := st.buf

	// The kernel is usually a PE itself: take its SBAT lines and NX_COMPAT.
	var kernelSBAT []byte
	kernelNX := true
	if kf, err := pe.NewFile(io.NewSectionReader(s.Linux, 0, s.Linux.Size())); err == nil {
		if oh, ok := kf.OptionalHeader.(*pe.OptionalHeader64); ok {
			kernelNX = oh.DllCharacteristics&dllNXCompat != 0
		} else if oh, ok := kf.OptionalHeader.(*pe.OptionalHeader32); ok {
			kernelNX = oh.DllCharacteristics&dllNXCompat != 0
		}
		if sec := kf.Section(SectionSBAT); sec != nil {
			if kernelSBAT, err = sectionText(sec); err != nil {
				return fmt.Errorf("uki: reading the kernel's .sbat: %w", err)
			}
		}
	}

	var stubSBAT *stubSection
	sbatHdr := 0 // offset of its section header
	for i := range st.sections {
		if st.sections[i].name == SectionSBAT {
			stubSBAT = &st.sections[i]
			sbatHdr = st.secTab + i*sectionHeaderSize
		}
	}
	var oldSBAT []byte
	if stubSBAT != nil {
		n := min(stubSBAT.virtualSize, stubSBAT.rawSize)
		oldSBAT = buf[stubSBAT.rawPtr : stubSBAT.rawPtr+n]
	}
	sbat := mergeSBAT(oldSBAT, kernelSBAT, s.SBAT)

	var add []appended
	text := func(name, v string) {
		if v != "" {
			add = append(add, appended{name: name, data: strings.NewReader(v), chars: CharData})
		}
	}
	text(SectionOSRel, s.OSRel)
	text(SectionCmdline, s.Cmdline)
	text(SectionUname, s.Uname)
	add = append(add, appended{name: SectionLinux, data: s.Linux, chars: CharCode})
	if s.Initrd != nil && s.Initrd.Size() > 0 {
		add = append(add, appended{name: SectionInitrd, data: s.Initrd, chars: CharData})
	}

	var sizeOfCode, sizeOfData int64 // deltas
	if stubSBAT != nil {
		if uint32(len(sbat)) > stubSBAT.rawSize {
			return fmt.Errorf("uki: merged SBAT data (%d bytes) does not fit the stub's .sbat section (%d bytes)", len(sbat), stubSBAT.rawSize)
		}
		copy(buf[stubSBAT.rawPtr:], sbat)
		clear(buf[stubSBAT.rawPtr+uint32(len(sbat)) : stubSBAT.rawPtr+stubSBAT.rawSize])
		sizeOfData += int64(len(sbat)) - int64(stubSBAT.virtualSize)
		stubSBAT.virtualSize = uint32(len(sbat))
		binary.LittleEndian.PutUint32(buf[sbatHdr+8:], stubSBAT.virtualSize)
	} else {
		add = append(add, appended{name: SectionSBAT, data: bytes.NewReader(sbat), chars: CharData})
	}

	// Header space: the new headers must end before SizeOfHeaders and before
	// the first section's data.
	nsec := len(st.sections)
	need := st.secTab + (nsec+len(add))*sectionHeaderSize
	limit := int(st.sizeOfHdrs)
	for _, sec := range st.sections {
		if sec.rawSize > 0 {
			limit = min(limit, int(sec.rawPtr))
		}
	}
	if need > limit {
		return fmt.Errorf("%w: %d section headers need %#x bytes of headers, the stub has %#x", ErrHeaderSpace, nsec+len(add), need, limit)
	}

	// Layout.
	// Like ukify: after the end of the highest section, using VirtualSize
	// (what the loader maps; SizeOfRawData only when VirtualSize is 0).
	var lastEnd uint64
	for _, sec := range st.sections {
		n := sec.virtualSize
		if n == 0 {
			n = sec.rawSize
		}
		lastEnd = max(lastEnd, uint64(sec.virtualAddress)+uint64(n))
	}
	va := alignUp(lastEnd, st.sectAlign)
	raw := uint64(len(buf))
	for i := range add {
		a := &add[i]
		n := uint64(a.data.Size())
		if n > 0xffffffff {
			return fmt.Errorf("uki: section %s is too large (%d bytes)", a.name, n)
		}
		a.va, a.raw = uint32(va), uint32(raw)
		h := need - (len(add)-i)*sectionHeaderSize
		clear(buf[h : h+sectionHeaderSize])
		copy(buf[h:h+8], a.name)
		binary.LittleEndian.PutUint32(buf[h+8:], uint32(n))
		binary.LittleEndian.PutUint32(buf[h+12:], a.va)
		binary.LittleEndian.PutUint32(buf[h+16:], uint32(alignUp(n, st.fileAlign)))
		binary.LittleEndian.PutUint32(buf[h+20:], a.raw)
		binary.LittleEndian.PutUint32(buf[h+36:], a.chars)
		if a.chars&scnCntCode != 0 {
			sizeOfCode += int64(n)
		} else {
			sizeOfData += int64(n)
		}
		lastEnd = va + n
		va = alignUp(lastEnd, st.sectAlign)
		raw += alignUp(n, st.fileAlign)
		if raw > 0xffffffff || va > 0xffffffff {
			return fmt.Errorf("uki: image exceeds 4 GiB at section %s", a.name)
		}
	}

	o := st.opt
	put32 := func(off int, v uint32) { binary.LittleEndian.PutUint32(buf[off:], v) }
	binary.LittleEndian.PutUint16(buf[st.coff+coffNumberOfSections:], uint16(nsec+len(add)))
	put32(o+optSizeOfImage, uint32(alignUp(lastEnd, st.sectAlign)))
	put32(o+optSizeOfCode, uint32(int64(le32(buf, o+optSizeOfCode))+sizeOfCode))
	put32(o+optSizeOfInitializedData, uint32(int64(le32(buf, o+optSizeOfInitializedData))+sizeOfData))
	if !kernelNX {
		binary.LittleEndian.PutUint16(buf[o+optDllCharacteristics:], le16(buf, o+optDllCharacteristics)&^dllNXCompat)
	}
	put32(o+optCheckSum, 0)

	var c checksummer
	if err := emit(&c, buf, add, st.fileAlign); err != nil {
		return err
	}
	put32(o+optCheckSum, c.Sum32())
	return emit(w, buf, add, st.fileAlign)
}

// emit writes the patched stub and the appended sections, padded.
func emit(w io.Writer, stub []byte, add []appended, fileAlign uint64) error {
	if _, err := w.Write(stub); err != nil {
		return fmt.Errorf("uki: writing stub: %w", err)
	}
	var zeros [4096]byte
	for _, a := range add {
		n := a.data.Size()
		if _, err := io.Copy(w, io.NewSectionReader(a.data, 0, n)); err != nil {
			return fmt.Errorf("uki: writing section %s: %w", a.name, err)
		}
		for pad := int64(alignUp(uint64(n), fileAlign)) - n; pad > 0; {
			k := min(pad, int64(len(zeros)))
			if _, err := w.Write(zeros[:k]); err != nil {
				return fmt.Errorf("uki: writing section %s: %w", a.name, err)
			}
			pad -= k
		}
	}
	return nil
}

// mergeSBAT builds the .sbat contents the way ukify does: one "sbat,"
// header line, then the component lines of the stub, the kernel and the
// extra text (DefaultSBAT when extra is empty), then a newline and a NUL.
func mergeSBAT(stub, kernel []byte, extra string) []byte {
	if strings.TrimSpace(extra) == "" {
		extra = DefaultSBAT
	}
	var lines []string
	for _, src := range []string{string(stub), string(kernel), extra} {
		for _, l := range strings.Split(strings.TrimRight(src, "\x00"), "\n") {
			l = strings.TrimRight(l, "\r")
			if l == "" || strings.HasPrefix(l, "sbat,") {
				continue
			}
			lines = append(lines, l)
		}
	}
	return []byte(sbatHeader + "\n" + strings.Join(lines, "\n") + "\n\x00")
}

// sectionText returns a debug/pe section's bytes up to its virtual size.
func sectionText(sec *pe.Section) ([]byte, error) {
	n := min(sec.VirtualSize, sec.Size)
	b := make([]byte, n)
	if _, err := sec.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}
