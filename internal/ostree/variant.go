package ostree

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"
)

// This file implements the GVariant serialization format (normal form,
// little-endian) for the types ostree objects use. Values are kept in a
// small internal representation:
//
//	y uint8, b bool, n int16, q uint16, i int32, u uint32, x int64,
//	t uint64, h int32, d float64, s/o/g string, v Variant,
//	ay []byte, other arrays []any, tuples and dict entries []any.
//
// Decoding is strict: a value must be in normal form (the encoder's output
// for the decoded value), which is checked by re-encoding it.

const (
	// maxTypeLen bounds a type signature (GLib allows 255 bytes).
	maxTypeLen = 255
	// maxDepth bounds container and variant nesting (GLib's
	// G_VARIANT_MAX_RECURSION_DEPTH is 128).
	maxDepth = 128
)

// vtype is a parsed GVariant type.
type vtype struct {
	sig    string
	kind   byte     // the first character of sig
	elem   *vtype   // array element type
	fields []*vtype // tuple or dict entry members
	align  int      // alignment: 1, 2, 4 or 8
	fixed  int      // fixed size in bytes; 0 for variable-size types
}

var basicTypes = map[byte]struct{ align, fixed int }{
	'y': {1, 1}, 'b': {1, 1}, 'n': {2, 2}, 'q': {2, 2}, 'i': {4, 4}, 'u': {4, 4},
	'h': {4, 4}, 'x': {8, 8}, 't': {8, 8}, 'd': {8, 8},
	's': {1, 0}, 'o': {1, 0}, 'g': {1, 0}, 'v': {8, 0},
}

// parseType parses a signature holding exactly one complete type. Maybe
// types are not supported.
func parseType(sig string) (*vtype, error) {
	if len(sig) == 0 || len(sig) > maxTypeLen {
		return nil, fmt.Errorf("%w: bad type signature %q", ErrFormat, sig)
	}
	t, n, err := parseTypeAt(sig, 0, 0)
	if err != nil {
		return nil, err
	}
	if n != len(sig) {
		return nil, fmt.Errorf("%w: bad type signature %q", ErrFormat, sig)
	}
	return t, nil
}

// mustType parses a signature known to be valid.
func mustType(sig string) *vtype {
	t, err := parseType(sig)
	if err != nil {
		panic(err)
	}
	return t
}

func parseTypeAt(sig string, i, depth int) (*vtype, int, error) {
	bad := fmt.Errorf("%w: bad type signature %q", ErrFormat, sig)
	if i >= len(sig) || depth > maxDepth {
		return nil, 0, bad
	}
	c := sig[i]
	if b, ok := basicTypes[c]; ok {
		return &vtype{sig: sig[i : i+1], kind: c, align: b.align, fixed: b.fixed}, i + 1, nil
	}
	switch c {
	case 'a':
		e, j, err := parseTypeAt(sig, i+1, depth+1)
		if err != nil {
			return nil, 0, err
		}
		return &vtype{sig: sig[i:j], kind: 'a', elem: e, align: e.align}, j, nil
	case '(', '{':
		end := byte(')')
		if c == '{' {
			end = '}'
		}
		t := &vtype{kind: c, align: 1}
		j := i + 1
		for {
			if j >= len(sig) {
				return nil, 0, bad
			}
			if sig[j] == end {
				j++
				break
			}
			f, k, err := parseTypeAt(sig, j, depth+1)
			if err != nil {
				return nil, 0, err
			}
			t.fields = append(t.fields, f)
			t.align = max(t.align, f.align)
			j = k
		}
		if c == '{' {
			// A dict entry has a basic key type and one value type.
			if len(t.fields) != 2 {
				return nil, 0, bad
			}
			if _, basic := basicTypes[t.fields[0].kind]; !basic || t.fields[0].kind == 'v' {
				return nil, 0, bad
			}
		}
		t.sig = sig[i:j]
		// A tuple is fixed-size when all its members are; its size is
		// padded to its alignment, and the empty tuple takes one byte.
		size := 0
		for _, f := range t.fields {
			if f.fixed == 0 {
				size = -1
				break
			}
			size = alignUp(size, f.align) + f.fixed
		}
		if size >= 0 {
			t.fixed = max(alignUp(size, t.align), 1)
		}
		return t, j, nil
	}
	return nil, 0, bad
}

func alignUp(n, a int) int { return (n + a - 1) &^ (a - 1) }

// pad appends zero bytes to b up to alignment a. Containers start at
// offsets aligned to their own alignment, which is at least that of their
// members, so absolute alignment in b equals relative alignment.
func pad(b []byte, a int) []byte {
	for len(b)%a != 0 {
		b = append(b, 0)
	}
	return b
}

// offsetSize returns the framing offset size GVariant uses for a container
// whose body is body bytes long and that needs n offsets.
func offsetSize(body, n int) int {
	switch {
	case n == 0:
		return 0
	case body+n <= math.MaxUint8:
		return 1
	case body+2*n <= math.MaxUint16:
		return 2
	case body+4*n <= math.MaxUint32:
		return 4
	}
	return 8
}

// readOffsetSize returns the framing offset size of a container of size n.
func readOffsetSize(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= math.MaxUint8:
		return 1
	case n <= math.MaxUint16:
		return 2
	case uint64(n) <= math.MaxUint32:
		return 4
	}
	return 8
}

func appendOffset(b []byte, off, size int) []byte {
	for i := 0; i < size; i++ {
		b = append(b, byte(uint64(off)>>(8*i)))
	}
	return b
}

func readOffset(b []byte, size int) int {
	var v uint64
	for i := size - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if v > math.MaxInt32 {
		return math.MaxInt32 // out of range for any input we accept
	}
	return int(v)
}

// encode appends the serialization of v (of type t) to b, which must be
// aligned to t.align.
func (t *vtype) encode(b []byte, v any) ([]byte, error) {
	base := len(b)
	typeErr := func() ([]byte, error) {
		return nil, fmt.Errorf("ostree: internal error: value %T for GVariant type %s", v, t.sig)
	}
	switch t.kind {
	case 'y':
		x, ok := v.(uint8)
		if !ok {
			return typeErr()
		}
		return append(b, x), nil
	case 'b':
		x, ok := v.(bool)
		if !ok {
			return typeErr()
		}
		if x {
			return append(b, 1), nil
		}
		return append(b, 0), nil
	case 'n':
		x, ok := v.(int16)
		if !ok {
			return typeErr()
		}
		return binary.LittleEndian.AppendUint16(b, uint16(x)), nil
	case 'q':
		x, ok := v.(uint16)
		if !ok {
			return typeErr()
		}
		return binary.LittleEndian.AppendUint16(b, x), nil
	case 'i', 'h':
		x, ok := v.(int32)
		if !ok {
			return typeErr()
		}
		return binary.LittleEndian.AppendUint32(b, uint32(x)), nil
	case 'u':
		x, ok := v.(uint32)
		if !ok {
			return typeErr()
		}
		return binary.LittleEndian.AppendUint32(b, x), nil
	case 'x':
		x, ok := v.(int64)
		if !ok {
			return typeErr()
		}
		return binary.LittleEndian.AppendUint64(b, uint64(x)), nil
	case 't':
		x, ok := v.(uint64)
		if !ok {
			return typeErr()
		}
		return binary.LittleEndian.AppendUint64(b, x), nil
	case 'd':
		x, ok := v.(float64)
		if !ok {
			return typeErr()
		}
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(x)), nil
	case 's', 'o', 'g':
		x, ok := v.(string)
		if !ok {
			return typeErr()
		}
		if !utf8.ValidString(x) || bytes.IndexByte([]byte(x), 0) >= 0 {
			return nil, fmt.Errorf("%w: string %q is not UTF-8 without NUL", ErrInvalid, x)
		}
		b = append(b, x...)
		return append(b, 0), nil
	case 'v':
		x, ok := v.(Variant)
		if !ok || x.t == nil {
			return typeErr()
		}
		b, err := x.t.encode(b, x.v)
		if err != nil {
			return nil, err
		}
		b = append(b, 0)
		return append(b, x.t.sig...), nil
	case 'a':
		if t.elem.kind == 'y' {
			x, ok := v.([]byte)
			if !ok {
				return typeErr()
			}
			return append(b, x...), nil
		}
		xs, ok := v.([]any)
		if !ok {
			return typeErr()
		}
		var ends []int
		for _, x := range xs {
			b = pad(b, t.elem.align)
			var err error
			if b, err = t.elem.encode(b, x); err != nil {
				return nil, err
			}
			if t.elem.fixed == 0 {
				ends = append(ends, len(b)-base)
			}
		}
		size := offsetSize(len(b)-base, len(ends))
		for _, e := range ends {
			b = appendOffset(b, e, size)
		}
		return b, nil
	case '(', '{':
		xs, ok := v.([]any)
		if !ok || len(xs) != len(t.fields) {
			return typeErr()
		}
		var ends []int
		for i, f := range t.fields {
			b = pad(b, f.align)
			var err error
			if b, err = f.encode(b, xs[i]); err != nil {
				return nil, err
			}
			if f.fixed == 0 && i != len(t.fields)-1 {
				ends = append(ends, len(b)-base)
			}
		}
		if t.fixed != 0 {
			if len(b) == base {
				b = append(b, 0)
			}
			return pad(b, t.align), nil
		}
		size := offsetSize(len(b)-base, len(ends))
		for i := len(ends) - 1; i >= 0; i-- {
			b = appendOffset(b, ends[i], size)
		}
		return b, nil
	}
	return typeErr()
}

// decodeNormal decodes data as a value of type t and checks that data is
// the value's normal form.
func (t *vtype) decodeNormal(data []byte) (any, error) {
	v, err := t.decode(data, 0)
	if err != nil {
		return nil, err
	}
	again, err := t.encode(make([]byte, 0, len(data)), v)
	if err != nil || !bytes.Equal(again, data) {
		return nil, fmt.Errorf("%w: %s value not in GVariant normal form", ErrFormat, t.sig)
	}
	return v, nil
}

// decode decodes d, exactly the bytes of one value of type t.
func (t *vtype) decode(d []byte, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%w: values nested too deeply", ErrFormat)
	}
	if t.fixed != 0 && len(d) != t.fixed {
		return nil, fmt.Errorf("%w: %s value of %d bytes, want %d", ErrFormat, t.sig, len(d), t.fixed)
	}
	le := binary.LittleEndian
	switch t.kind {
	case 'y':
		return d[0], nil
	case 'b':
		if d[0] > 1 {
			return nil, fmt.Errorf("%w: boolean value %d", ErrFormat, d[0])
		}
		return d[0] == 1, nil
	case 'n':
		return int16(le.Uint16(d)), nil
	case 'q':
		return le.Uint16(d), nil
	case 'i', 'h':
		return int32(le.Uint32(d)), nil
	case 'u':
		return le.Uint32(d), nil
	case 'x':
		return int64(le.Uint64(d)), nil
	case 't':
		return le.Uint64(d), nil
	case 'd':
		return math.Float64frombits(le.Uint64(d)), nil
	case 's', 'o', 'g':
		if len(d) == 0 || d[len(d)-1] != 0 || bytes.IndexByte(d[:len(d)-1], 0) >= 0 || !utf8.Valid(d[:len(d)-1]) {
			return nil, fmt.Errorf("%w: bad string", ErrFormat)
		}
		return string(d[:len(d)-1]), nil
	case 'v':
		i := bytes.LastIndexByte(d, 0)
		if i < 0 {
			return nil, fmt.Errorf("%w: variant without type", ErrFormat)
		}
		ct, err := parseType(string(d[i+1:]))
		if err != nil {
			return nil, err
		}
		cv, err := ct.decode(d[:i], depth+1)
		if err != nil {
			return nil, err
		}
		return Variant{t: ct, v: cv}, nil
	case 'a':
		if t.elem.kind == 'y' {
			return slices.Clone(d), nil
		}
		xs := []any{}
		if t.elem.fixed != 0 {
			if len(d)%t.elem.fixed != 0 {
				return nil, fmt.Errorf("%w: %s array of %d bytes", ErrFormat, t.sig, len(d))
			}
			for off := 0; off < len(d); off += t.elem.fixed {
				x, err := t.elem.decode(d[off:off+t.elem.fixed], depth+1)
				if err != nil {
					return nil, err
				}
				xs = append(xs, x)
			}
			return xs, nil
		}
		if len(d) == 0 {
			return xs, nil
		}
		osz := readOffsetSize(len(d))
		if len(d) < osz {
			return nil, fmt.Errorf("%w: truncated array", ErrFormat)
		}
		table := readOffset(d[len(d)-osz:], osz)
		if table > len(d) || (len(d)-table)%osz != 0 || table == len(d) {
			return nil, fmt.Errorf("%w: bad array framing", ErrFormat)
		}
		n := (len(d) - table) / osz
		start := 0
		for i := 0; i < n; i++ {
			end := readOffset(d[table+i*osz:], osz)
			start = alignUp(start, t.elem.align)
			if start > end || end > table {
				return nil, fmt.Errorf("%w: bad array framing", ErrFormat)
			}
			x, err := t.elem.decode(d[start:end], depth+1)
			if err != nil {
				return nil, err
			}
			xs = append(xs, x)
			start = end
		}
		return xs, nil
	case '(', '{':
		osz := readOffsetSize(len(d))
		if t.fixed != 0 {
			osz = 0
		}
		offEnd := len(d)
		pos := 0
		xs := make([]any, len(t.fields))
		for i, f := range t.fields {
			start := alignUp(pos, f.align)
			var end int
			switch {
			case f.fixed != 0:
				end = start + f.fixed
			case i == len(t.fields)-1:
				end = offEnd
			default:
				if offEnd < osz {
					return nil, fmt.Errorf("%w: bad tuple framing", ErrFormat)
				}
				offEnd -= osz
				end = readOffset(d[offEnd:], osz)
			}
			if start > end || end > offEnd {
				return nil, fmt.Errorf("%w: bad tuple framing", ErrFormat)
			}
			x, err := f.decode(d[start:end], depth+1)
			if err != nil {
				return nil, err
			}
			xs[i] = x
			pos = end
		}
		return xs, nil
	}
	return nil, fmt.Errorf("%w: unsupported type %s", ErrFormat, t.sig)
}
