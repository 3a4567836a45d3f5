package ostree

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestVariantVectors checks the codec against serializations from the
// GVariant specification ("GVariant Serialisation" examples) and hand
// derivations of the framing rules.
func TestVariantVectors(t *testing.T) {
	tests := []struct {
		name string
		sig  string
		v    any
		hex  string
	}{
		{"string", "s", "hello world", "68656c6c6f20776f726c6400"},
		{"tuple si", "(si)", []any{"foo", int32(-1)}, "666f6f00ffffffff04"},
		{"string array", "as", []any{"i", "can", "has", "strings?"}, "690063616e0068617300737472696e67733f0002060a13"},
		{"byte array", "ay", []byte{1, 2, 3}, "010203"},
		{"empty array", "as", []any{}, ""},
		{"bool", "b", true, "01"},
		{"u64", "t", uint64(0x0102030405060708), "0807060504030201"},
		{"variant", "v", String("x"), "78000073"},
		{"dict sv", "a{sv}", []any{[]any{"k", Bool(true)}}, "6b00000000000000010062020c"},
		{"fixed tuple", "(yu)", []any{uint8(1), uint32(2)}, "0100000002000000"},
		{"empty tuple", "()", []any{}, "00"},
		{"nested", "(a(say)a(sayay))", []any{[]any{[]any{"a", []byte{9}}}, []any{}}, "610009020405"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ty := mustType(tt.sig)
			got, err := ty.encode(nil, tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != tt.hex {
				t.Fatalf("encode = %x, want %s", got, tt.hex)
			}
			back, err := ty.decodeNormal(got)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := ty.encode(nil, back)
			if !bytes.Equal(again, got) {
				t.Fatalf("round trip %x", again)
			}
		})
	}
}

// TestVariantOffsetSizes crosses the 1-, 2- and 4-byte framing offset
// boundaries with arrays of strings.
func TestVariantOffsetSizes(t *testing.T) {
	ty := mustType("as")
	for _, n := range []int{1, 100, 126, 127, 128, 200, 30000, 40000} {
		var xs []any
		for i := 0; i < n; i++ {
			xs = append(xs, strings.Repeat("x", i%3))
		}
		b, err := ty.encode(nil, xs)
		if err != nil {
			t.Fatal(err)
		}
		v, err := ty.decodeNormal(b)
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if len(v.([]any)) != n {
			t.Fatalf("n=%d: decoded %d", n, len(v.([]any)))
		}
	}
}

func TestVariantRejects(t *testing.T) {
	tests := []struct {
		name, sig, hex string
	}{
		{"unterminated string", "s", "6869"},
		{"interior nul", "s", "68006900"},
		{"bad utf8", "s", "ff00"},
		{"bool 2", "b", "02"},
		{"short u32", "u", "010203"},
		{"offset past end", "as", "610009"},
		{"not normal padding", "(yu)", "0101000002000000"},
		{"variant bad type", "v", "0000ff"},
		{"variant no nul", "v", "73"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tt.hex)
			if _, err := mustType(tt.sig).decodeNormal(b); !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
		})
	}
	for _, sig := range []string{"", "a", "(s", "{vs}", "m", "{s}", "z", "ss"} {
		if _, err := parseType(sig); err == nil {
			t.Errorf("parseType(%q) accepted", sig)
		}
	}
}

// TestMarshalDict checks the a{sv} serialization /run/ostree-booted uses
// against hand derivations of the GVariant framing rules (key, padding to
// the variant's 8-byte alignment, value, NUL, type, key-end offset; the
// array's element-end offsets) and that ParseDict reads it back.
func TestMarshalDict(t *testing.T) {
	key := hex.EncodeToString([]byte("backing-root-device-inode")) + "00"
	tests := []struct {
		name    string
		entries []MetaEntry
		hex     string
	}{
		{"empty", nil, ""},
		{"bool", []MetaEntry{{Key: "sysroot-ro", Value: Bool(true)}},
			hex.EncodeToString([]byte("sysroot-ro")) + "00" + "0000000000" + "010062" + "0b" + "14"},
		{"device inode pair", []MetaEntry{{Key: "backing-root-device-inode", Value: Uint64Pair(0x803, 12)}},
			key + "000000000000" + "0308000000000000" + "0c00000000000000" + "00" + hex.EncodeToString([]byte("(tt)")) + "1a" + "36"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MarshalDict(tt.entries)
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != tt.hex {
				t.Fatalf("MarshalDict = %x, want %s", got, tt.hex)
			}
			back, err := ParseDict(got)
			if err != nil {
				t.Fatal(err)
			}
			if len(back) != len(tt.entries) {
				t.Fatalf("ParseDict: %d entries, want %d", len(back), len(tt.entries))
			}
			for i, e := range back {
				if e.Key != tt.entries[i].Key || e.Value.Type() != tt.entries[i].Value.Type() {
					t.Errorf("entry %d: %s %s, want %s %s", i, e.Key, e.Value.Type(), tt.entries[i].Key, tt.entries[i].Value.Type())
				}
			}
		})
	}
	d, err := MarshalDict([]MetaEntry{{Key: "k", Value: Uint64Pair(1, 2)}})
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseDict(d)
	if err != nil {
		t.Fatal(err)
	}
	if a, b, ok := back[0].Value.AsUint64Pair(); !ok || a != 1 || b != 2 {
		t.Errorf("AsUint64Pair = %d, %d, %v; want 1, 2, true", a, b, ok)
	}
	if _, _, ok := Bool(true).AsUint64Pair(); ok {
		t.Error("AsUint64Pair of a bool succeeded")
	}
	if _, err := ParseDict([]byte{1, 2, 3}); err == nil {
		t.Error("ParseDict accepted garbage")
	}
}
