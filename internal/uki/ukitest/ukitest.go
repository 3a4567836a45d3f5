// Package ukitest makes minimal synthetic EFI stubs for tests of UKI
// assembly and inspection, where a real systemd stub is not needed.
package ukitest

import "encoding/binary"

// Stub returns a minimal PE32+ x86_64 EFI application: nsec sections of
// 0x200 raw bytes (.text, .data, .sbat, .reloc, repeating), headers of
// hdrSize bytes, the given SectionAlignment and FileAlignment, and trailing
// bytes after the last section. The third section, .sbat, holds a valid
// SBAT header line. The image is not executable.
func Stub(nsec int, hdrSize, sectionAlign, fileAlign uint32, trailing []byte) []byte {
	const (
		lfanew  = 0x40
		optSize = 240
	)
	le16 := binary.LittleEndian.PutUint16
	le32 := binary.LittleEndian.PutUint32
	buf := make([]byte, int(hdrSize)+nsec*0x200)
	copy(buf, "MZ")
	le32(buf[0x3c:], lfanew)
	copy(buf[lfanew:], "PE\x00\x00")
	coff := lfanew + 4
	le16(buf[coff:], 0x8664)
	le16(buf[coff+2:], uint16(nsec))
	le16(buf[coff+16:], optSize)
	le16(buf[coff+18:], 0x22e)
	opt := coff + 20
	le16(buf[opt:], 0x20b)
	le32(buf[opt+16:], 0x1000) // AddressOfEntryPoint
	le32(buf[opt+32:], sectionAlign)
	le32(buf[opt+36:], fileAlign)
	le32(buf[opt+60:], hdrSize)
	le16(buf[opt+68:], 10) // EFI application
	le16(buf[opt+70:], 0x160)
	le32(buf[opt+108:], 16)
	sec := opt + optSize
	va := alignUp(hdrSize, sectionAlign)
	const sbat = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\nstub,1,Test,stub,1,https://example.org/\n"
	for i := 0; i < nsec; i++ {
		h := sec + i*40
		name := []string{".text", ".data", ".sbat", ".reloc"}[i%4]
		copy(buf[h:], name)
		size := uint32(0x100)
		raw := hdrSize + uint32(i)*0x200
		if name == ".sbat" {
			size = uint32(copy(buf[raw:], sbat))
		}
		le32(buf[h+8:], size)
		le32(buf[h+12:], va)
		le32(buf[h+16:], 0x200)
		le32(buf[h+20:], raw)
		le32(buf[h+36:], 0x40000040)
		va += alignUp(size, sectionAlign)
	}
	le32(buf[opt+56:], va) // SizeOfImage
	return append(buf, trailing...)
}

func alignUp(v, a uint32) uint32 { return (v + a - 1) / a * a }
