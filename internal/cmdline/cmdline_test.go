package cmdline

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Param
	}{
		{"empty", "  \n", nil},
		{"words", "quiet console=ttyS0 panic=-1", []Param{
			{Key: "quiet"}, {Key: "console", Value: "ttyS0", HasValue: true}, {Key: "panic", Value: "-1", HasValue: true}}},
		{"quoted value", `a="x y" b`, []Param{{Key: "a", Value: "x y", HasValue: true}, {Key: "b"}}},
		{"empty value", "root= ro", []Param{{Key: "root", HasValue: true}, {Key: "ro"}}},
		{"second equals kept", "x=a=b", []Param{{Key: "x", Value: "a=b", HasValue: true}}},
		{"init args", "quiet -- single x=1", []Param{{Key: "quiet"}, {Key: "single", Init: true}, {Key: "x", Value: "1", HasValue: true, Init: true}}},
		{"trailing newline", "init=/bin/sh\n", []Param{{Key: "init", Value: "/bin/sh", HasValue: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse(tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	p := Parse("init=/a init=/b -- init=/c")
	if v, ok := Lookup(p, "init"); !ok || v != "/b" {
		t.Errorf("Lookup = %q, %v; want /b, true", v, ok)
	}
	if _, ok := Lookup(p, "root"); ok {
		t.Error("Lookup(root) found a value")
	}
}

const h256 = "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"

func TestComposefsDigest(t *testing.T) {
	h512 := strings.Repeat("ab", 64)
	tests := []struct {
		name    string
		in      string
		want    Digest
		wantErr error
	}{
		{"legacy", "quiet composefs=" + h256, Digest{Algorithm: "sha256", Hex: h256, Form: "composefs"}, nil},
		{"legacy upper case normalised", "composefs=" + strings.ToUpper(h256), Digest{Algorithm: "sha256", Hex: h256, Form: "composefs"}, nil},
		{"legacy insecure", "composefs=?" + h256, Digest{Algorithm: "sha256", Hex: h256, Insecure: true, Form: "composefs"}, nil},
		{"self-describing", "composefs.digest=v1-sha256-12:" + h256, Digest{Algorithm: "sha256", Hex: h256, Form: "composefs.digest"}, nil},
		{"self-describing wins", "composefs=" + strings.Repeat("0", 64) + " composefs.digest=v1-sha256-12:" + h256, Digest{Algorithm: "sha256", Hex: h256, Form: "composefs.digest"}, nil},
		{"sha512", "composefs.digest=v1-sha512-12:" + h512, Digest{Algorithm: "sha512", Hex: h512, Form: "composefs.digest"}, nil},
		{"none", "quiet root=/dev/vda2", Digest{}, ErrNoDigest},
		{"init part ignored", "-- composefs=" + h256, Digest{}, ErrNoDigest},
		{"short", "composefs=abcd", Digest{}, ErrBadDigest},
		{"not hex", "composefs=" + strings.Repeat("zz", 32), Digest{}, ErrBadDigest},
		{"unknown kind", "composefs.digest=v2-sha256-12:" + h256, Digest{}, ErrBadDigest},
		{"no colon", "composefs.digest=" + h256, Digest{}, ErrBadDigest},
		{"sha512 length for sha256", "composefs.digest=v1-sha256-12:" + h512, Digest{}, ErrBadDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ComposefsDigest(Parse(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestDigestString(t *testing.T) {
	d := Digest{Algorithm: "sha256", Hex: h256, Insecure: true}
	if got, want := d.String(), "?v1-sha256-12:"+h256; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "a=b c", `x="y z" -- q`, "composefs=?" + h256, "composefs.digest=v1-sha512-12:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps := Parse(s)
		for _, p := range ps {
			if p.Key == "" && !p.HasValue {
				t.Fatalf("empty word from %q", s)
			}
		}
		d, err := ComposefsDigest(ps)
		if err == nil && len(d.Hex) != 64 && len(d.Hex) != 128 {
			t.Fatalf("accepted digest %q", d.Hex)
		}
	})
}
