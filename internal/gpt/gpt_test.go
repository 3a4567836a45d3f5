package gpt

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// memDisk is an in-memory disk for WriteAt/ReadAt.
type memDisk []byte

func (m memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }
func (m memDisk) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m[off:]), nil }

// nameFor returns a partition name; the 4096-byte variant carries a
// surrogate pair, which sgdisk (used with 512) cannot print.
func nameFor(ss int) string {
	if ss == 4096 {
		return "root ü 𝄞"
	}
	return "root ü"
}

func testTable(ss int) *Table {
	first := uint64(2048)
	if ss == 4096 {
		first = 256
	}
	return &Table{
		SectorSize: ss,
		DiskGUID:   MustParseGUID("01234567-89ab-4cde-8f01-23456789abcd"),
		Partitions: []Partition{
			{Type: TypeESP, GUID: MustParseGUID("11111111-2222-4333-8444-555555555555"), FirstLBA: first, LastLBA: first + 255, Name: "esp"},
			{Type: TypeLinuxRootX86_64, GUID: MustParseGUID("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"), FirstLBA: first + 256, LastLBA: first + 767, Attributes: 1 << 60, Name: nameFor(ss)},
		},
	}
}

func TestGUIDRoundTrip(t *testing.T) {
	for _, s := range []string{"c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"} {
		g := MustParseGUID(s)
		if g.String() != s {
			t.Errorf("String() = %s, want %s", g, s)
		}
		var b [16]byte
		g.putMixed(b[:])
		if mixedGUID(b[:]) != g {
			t.Errorf("mixed-endian round trip of %s failed", s)
		}
	}
	// The ESP type GUID's documented on-disk bytes.
	var b [16]byte
	TypeESP.putMixed(b[:])
	want := []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	if !bytes.Equal(b[:], want) {
		t.Errorf("ESP on-disk bytes = %x, want %x", b, want)
	}
	for _, bad := range []string{"", "c12a7328f81f11d2ba4b00a0c93ec93b", "g12a7328-f81f-11d2-ba4b-00a0c93ec93b"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) succeeded", bad)
		}
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		tab := testTable(ss)
		disk := make(memDisk, 8<<20)
		if err := tab.Write(disk, int64(len(disk))); err != nil {
			t.Fatalf("ss=%d: Write: %v", ss, err)
		}
		got, err := Read(disk, int64(len(disk)), ss)
		if err != nil {
			t.Fatalf("ss=%d: Read: %v", ss, err)
		}
		if got.DiskGUID != tab.DiskGUID || !reflect.DeepEqual(got.Partitions, tab.Partitions) {
			t.Errorf("ss=%d: round trip mismatch:\n got %+v\nwant %+v", ss, got, tab)
		}
		if !reflect.DeepEqual(got.Slots, []int{1, 2}) {
			t.Errorf("ss=%d: slots = %v", ss, got.Slots)
		}
	}
}

func TestReadDetectsCorruption(t *testing.T) {
	size := int64(8 << 20)
	tests := []struct {
		name   string
		mutate func(d memDisk)
		want   error
	}{
		{"blank disk", func(d memDisk) { clear(d) }, ErrNoTable},
		{"primary header CRC", func(d memDisk) { d[512+40] ^= 1 }, ErrCorrupt},
		{"primary entry array", func(d memDisk) { d[1024+60] ^= 1 }, ErrCorrupt},
		{"backup header", func(d memDisk) { d[size-512+48] ^= 1 }, ErrCorrupt},
		{"backup entry array", func(d memDisk) { d[size-512-32*512+60] ^= 1 }, ErrCorrupt},
		{"no protective MBR", func(d memDisk) { d[446+4] = 0 }, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disk := make(memDisk, size)
			if err := testTable(512).Write(disk, size); err != nil {
				t.Fatal(err)
			}
			tt.mutate(disk)
			_, err := Read(disk, size, 512)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Read error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteRejectsBadLayout(t *testing.T) {
	size := int64(8 << 20)
	tests := []struct {
		name   string
		mutate func(t *Table)
		substr string
	}{
		{"overlap", func(t *Table) { t.Partitions[1].FirstLBA = t.Partitions[0].LastLBA }, "overlaps"},
		{"before first usable", func(t *Table) { t.Partitions[0].FirstLBA = 10 }, "outside the usable range"},
		{"past end", func(t *Table) { t.Partitions[1].LastLBA = uint64(size / 512) }, "outside the usable range"},
		{"no type", func(t *Table) { t.Partitions[0].Type = GUID{} }, "no type GUID"},
		{"long name", func(t *Table) { t.Partitions[0].Name = strings.Repeat("x", 37) }, "longer than 36"},
		{"sector size", func(t *Table) { t.SectorSize = 1024 }, "sector size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := testTable(512)
			tt.mutate(tab)
			err := tab.Write(make(memDisk, size), size)
			if !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), tt.substr) {
				t.Fatalf("Write error = %v, want ErrLayout containing %q", err, tt.substr)
			}
		})
	}
}

// TestSgdiskVerify checks a written table with gdisk's verifier.
func TestSgdiskVerify(t *testing.T) {
	sgdisk, err := exec.LookPath("sgdisk")
	if err != nil {
		t.Skip("sgdisk (gdisk package) not installed: cannot cross-check the table")
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(64 << 20)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := testTable(512).Write(f, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sgdisk, "-v", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v: %v\n%s", err, out)
	}
	out, err = exec.Command(sgdisk, "-i", "2", path).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -i 2: %v\n%s", err, out)
	}
	for _, want := range []string{"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE", "'root ü'"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("sgdisk -i 2 lacks %q:\n%s", want, out)
		}
	}
}

func FuzzRead(f *testing.F) {
	disk := make(memDisk, 128*512)
	tab := &Table{SectorSize: 512, DiskGUID: MustParseGUID("01234567-89ab-4cde-8f01-23456789abcd"),
		Partitions: []Partition{{Type: TypeESP, FirstLBA: 34, LastLBA: 40, Name: "esp"}}}
	if err := tab.Write(disk, int64(len(disk))); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(disk))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := Read(memDisk(b), int64(len(b)), 512)
		if err != nil {
			return
		}
		for _, p := range tab.Partitions {
			if p.FirstLBA > p.LastLBA {
				t.Fatalf("accepted inverted partition %+v", p)
			}
		}
	})
}
