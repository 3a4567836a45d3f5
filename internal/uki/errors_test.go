package uki

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/testdeb"
	"github.com/cfs-compose/cfs-compose/internal/uki/ukitest"
)

func synthStub(nsec int, hdrSize, sa, fa uint32, trailing []byte) []byte {
	return ukitest.Stub(nsec, hdrSize, sa, fa, trailing)
}

// withSymtab appends a COFF symbol table (n symbols and a string table)
// and points the header at it.
func withSymtab(stub []byte, n int) []byte {
	off := len(stub)
	stub = append(stub, make([]byte, n*symbolSize)...)
	strtab := []byte("\x0a\x00\x00\x00sym\x00ab\x00")
	stub = append(stub, strtab...)
	binary.LittleEndian.PutUint32(stub[0x44+coffPointerToSymbolTable:], uint32(off))
	binary.LittleEndian.PutUint32(stub[0x44+coffNumberOfSymbols:], uint32(n))
	return stub
}

func TestBuildErrors(t *testing.T) {
	linux := strings.NewReader("kernel")
	signed := synthStub(3, 0x400, 0x1000, 0x200, nil)
	binary.LittleEndian.PutUint32(signed[0x44+coffHeaderSize+optDataDirectory+8*dirSecurity:], 0x1000)
	pe32 := synthStub(3, 0x400, 0x1000, 0x200, nil)
	binary.LittleEndian.PutUint16(pe32[0x44+coffHeaderSize:], 0x10b)
	unaligned := synthStub(3, 0x400, 0x1000, 0x200, nil)
	binary.LittleEndian.PutUint32(unaligned[0x44+coffHeaderSize+240+20:], 0x401)
	symInside := withSymtab(synthStub(3, 0x400, 0x1000, 0x200, nil), 2)
	binary.LittleEndian.PutUint32(symInside[0x44+coffPointerToSymbolTable:], 0x500)
	tests := []struct {
		name    string
		stub    []byte
		linux   Payload
		wantErr error
		wantMsg string
	}{
		{"no kernel", synthStub(3, 0x400, 0x1000, 0x200, nil), nil, ErrNoLinux, ""},
		{"empty kernel", synthStub(3, 0x400, 0x1000, 0x200, nil), strings.NewReader(""), ErrNoLinux, ""},
		{"signed stub", signed, linux, ErrSigned, ""},
		{"no header room", synthStub(3, 0x200, 0x1000, 0x200, nil), linux, ErrHeaderSpace, "need"},
		{"not PE", []byte(strings.Repeat("x", 512)), linux, ErrFormat, "MZ"},
		{"PE32", pe32, linux, ErrFormat, "PE32+"},
		{"unaligned section", unaligned, linux, ErrFormat, "not aligned"},
		{"trailing data", synthStub(3, 0x400, 0x1000, 0x200, []byte("junk")), linux, ErrFormat, "after the last section"},
		{"symtab inside sections", symInside, linux, ErrFormat, "inside section data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Build(&buf, bytes.NewReader(tt.stub), int64(len(tt.stub)), Sections{Linux: tt.linux, Cmdline: "x"})
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
			if buf.Len() != 0 {
				t.Errorf("%d bytes written on error", buf.Len())
			}
		})
	}
}

func TestSBATTooLarge(t *testing.T) {
	stub := synthStub(3, 0x400, 0x1000, 0x200, nil)
	var buf bytes.Buffer
	err := Build(&buf, bytes.NewReader(stub), int64(len(stub)), Sections{Linux: strings.NewReader("k"), SBAT: strings.Repeat("x,1,X,x,1,https://example.org/\n", 40)})
	if err == nil || !strings.Contains(err.Error(), "does not fit the stub's .sbat") {
		t.Fatalf("err = %v", err)
	}
}

// TestSymbolTableDropped covers old gnu-efi stubs (bookworm systemd 252):
// SectionAlignment = FileAlignment = 0x200 and a trailing COFF symbol
// table, which must be removed.
func TestSymbolTableDropped(t *testing.T) {
	stub := withSymtab(synthStub(4, 0x400, 0x200, 0x200, nil), 5)
	var buf bytes.Buffer
	err := Build(&buf, bytes.NewReader(stub), int64(len(stub)), Sections{Linux: strings.NewReader("kernel!"), Cmdline: "quiet", Initrd: strings.NewReader("rd")})
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	sf, err := NewFile(bytes.NewReader(stub), int64(len(stub)))
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, sf, f)
	if f.Sections[4].Offset != 0x400+4*0x200 {
		t.Errorf("appended data starts at %#x, want right after the stub's sections (symbol table dropped)", f.Sections[4].Offset)
	}
}

// TestBookwormStub builds from the real bookworm systemd 252 stub, which
// carries a COFF symbol table.
func TestBookwormStub(t *testing.T) {
	boot := testdeb.PackageFrom(t, "bookworm", "systemd-boot-efi", "amd64", "252")
	stubPath := filepath.Join(boot, "usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	stubF, err := Open(stubPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stubF.Close()
	if stubF.PointerToSymbolTable == 0 {
		t.Fatalf("bookworm stub has no symbol table: the test premise changed")
	}
	in := realInputs{stub: stubPath, kernel: filepath.Join(boot, "usr/lib/systemd/boot/efi/linuxx64.efi.stub"), uname: "test"}
	// Any PE works as .linux for layout purposes; use the stub itself.
	out := buildFile(t, t.TempDir(), in, []byte("initrd"), "quiet")
	f, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkLayout(t, stubF, f)
	data, _ := os.ReadFile(out)
	if _, err := NewFile(bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func FuzzNewFile(f *testing.F) {
	f.Add(synthStub(3, 0x400, 0x1000, 0x200, nil))
	f.Add(withSymtab(synthStub(2, 0x400, 0x200, 0x200, nil), 2))
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := NewFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, s := range u.Sections {
			s.Data()
		}
		u.Cmdline()
		u.ComposefsDigest()
		u.ComputeChecksum()
		var buf bytes.Buffer
		Build(&buf, bytes.NewReader(data), int64(len(data)), Sections{Linux: strings.NewReader("k"), Cmdline: "c"})
	})
}
