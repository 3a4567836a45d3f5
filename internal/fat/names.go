package fat

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
)

// shortChars are the characters allowed in an 8.3 name besides A-Z and 0-9.
const shortChars = "!#$%&'()-@^_`{}~"

// longInvalid are the characters a long file name may not contain.
const longInvalid = "\"*/:<>?\\|"

// checkLongName validates one path element as a VFAT long file name.
func checkLongName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrName, name)
	case strings.HasSuffix(name, ".") || strings.HasSuffix(name, " "):
		return fmt.Errorf("%w: %q ends in a dot or space", ErrName, name)
	case len(utf16.Encode([]rune(name))) > 255:
		return fmt.Errorf("%w: %q is longer than 255 UTF-16 code units", ErrName, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7F || strings.ContainsRune(longInvalid, r) || r == 0xFFFD {
			return fmt.Errorf("%w: %q contains %q", ErrName, name, r)
		}
	}
	return nil
}

func isShortChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(shortChars, c) >= 0
}

// exactShort returns the 8.3 form of name when name is already a valid
// upper-case 8.3 name, so that no long-name entries are needed.
func exactShort(name string) ([11]byte, bool) {
	var s [11]byte
	base, ext, _ := strings.Cut(name, ".")
	if len(base) == 0 || len(base) > 8 || len(ext) > 3 || strings.Contains(ext, ".") ||
		(strings.Contains(name, ".") && ext == "") {
		return s, false
	}
	for i := range len(base) {
		if !isShortChar(base[i]) {
			return s, false
		}
	}
	for i := range len(ext) {
		if !isShortChar(ext[i]) {
			return s, false
		}
	}
	copy(s[:], "           ")
	copy(s[0:8], base)
	copy(s[8:11], ext)
	return s, true
}

// shortBasis converts a long name to the upper-case characters usable in a
// short name, replacing the rest with '_', split into base and extension.
func shortBasis(name string) (base, ext string) {
	clean := func(s string) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			switch {
			case r == ' ' || r == '.':
				// dropped
			case r < 0x80 && isShortChar(byte(r)):
				b.WriteRune(r)
			default:
				b.WriteByte('_')
			}
		}
		return b.String()
	}
	trimmed := strings.TrimLeft(name, ".")
	if i := strings.LastIndexByte(trimmed, '.'); i >= 0 {
		base, ext = clean(trimmed[:i]), clean(trimmed[i+1:])
	} else {
		base = clean(trimmed)
	}
	if len(ext) > 3 {
		ext = ext[:3]
	}
	if base == "" {
		base = "_"
	}
	return base, ext
}

// numericTail makes the short name BASE~N.EXT, truncating BASE so the whole
// base part stays within 8 characters.
func numericTail(base, ext string, n int) [11]byte {
	var s [11]byte
	copy(s[:], "           ")
	tail := "~" + strconv.Itoa(n)
	if len(base) > 8-len(tail) {
		base = base[:8-len(tail)]
	}
	copy(s[0:8], base+tail)
	copy(s[8:11], ext)
	return s
}

// lfnEntries encodes name as long-name directory entries, in on-disk order
// (last fragment first), for the short name with checksum sum.
func lfnEntries(name string, sum byte) []byte {
	units := utf16.Encode([]rune(name))
	n := (len(units) + lfnChars - 1) / lfnChars
	padded := make([]uint16, n*lfnChars)
	for i := range padded {
		switch {
		case i < len(units):
			padded[i] = units[i]
		case i == len(units):
			padded[i] = 0x0000
		default:
			padded[i] = 0xFFFF
		}
	}
	out := make([]byte, n*dirEntrySize)
	for k := range n {
		seq := n - k // entries are stored from the last fragment down to the first
		e := out[k*dirEntrySize:]
		e[0] = byte(seq)
		if k == 0 {
			e[0] |= 0x40
		}
		e[11] = attrLFN
		e[13] = sum
		frag := padded[(seq-1)*lfnChars : seq*lfnChars]
		for i, u := range frag {
			var off int
			switch {
			case i < 5:
				off = 1 + 2*i
			case i < 11:
				off = 14 + 2*(i-5)
			default:
				off = 28 + 2*(i-11)
			}
			e[off] = byte(u)
			e[off+1] = byte(u >> 8)
		}
	}
	return out
}

// splitPath validates a slash-separated path and returns its elements.
func splitPath(p string) ([]string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil, fmt.Errorf("%w: empty path", ErrName)
	}
	parts := strings.Split(p, "/")
	for _, e := range parts {
		if err := checkLongName(e); err != nil {
			return nil, fmt.Errorf("path %q: %w", p, err)
		}
	}
	return parts, nil
}
