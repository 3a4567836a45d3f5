// Package cmdline parses Linux kernel command lines and the composefs
// arguments they carry.
//
// Splitting follows the kernel's rules (kernel/params.c next_arg) closely:
// words are separated by ASCII whitespace, a double quote toggles quoting
// (so `opt="a b"` is one word) and is removed, and the first '=' splits a word
// into key and value.
// Everything after a bare "--" is for init and is kept as [Param] values with
// Init set.
//
// The composefs arguments are the two forms bootc and composefs-rs use:
//
//	composefs=<hex>                      legacy form, SHA-256 fs-verity digest
//	composefs.digest=v1-sha256-12:<hex>  self-describing form (v1-sha512-12 also parsed)
//
// A '?' right after '=' marks the digest insecure (fs-verity optional).
//
// # Security
//
// The parser accepts any byte string and never panics; it is fuzzed. Digest
// parsing checks the hex length against the algorithm.
package cmdline

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Errors returned by [ComposefsDigest].
var (
	// ErrNoDigest means the command line carries no composefs argument.
	ErrNoDigest = errors.New("cmdline: no composefs digest on the command line")
	// ErrBadDigest means a composefs argument is malformed.
	ErrBadDigest = errors.New("cmdline: malformed composefs digest")
)

// Param is one kernel command-line word.
type Param struct {
	Key      string // text before the first '=' (the whole word when there is none)
	Value    string // text after the first '='
	HasValue bool   // the word contained '='
	Init     bool   // the word came after "--" and belongs to init
}

// Parse splits a kernel command line into parameters, in order.
func Parse(s string) []Param {
	var out []Param
	init := false
	for {
		s = strings.TrimLeft(s, " \t\n\r\v\f")
		if s == "" {
			return out
		}
		var b strings.Builder
		quoted := false
		i := 0
		for ; i < len(s); i++ {
			c := s[i]
			if c == '"' {
				quoted = !quoted
				continue
			}
			if !quoted && isSpace(c) {
				break
			}
			b.WriteByte(c)
		}
		s = s[i:]
		word := b.String()
		if word == "" { // a bare "" pair
			continue
		}
		if word == "--" && !init {
			init = true
			continue
		}
		p := Param{Init: init}
		p.Key, p.Value, p.HasValue = strings.Cut(word, "=")
		out = append(out, p)
	}
}

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

// Lookup returns the value of the last kernel (non-init) parameter named
// key, as the kernel and systemd do for repeated parameters.
func Lookup(params []Param, key string) (value string, ok bool) {
	for _, p := range params {
		if !p.Init && p.Key == key {
			value, ok = p.Value, true
		}
	}
	return value, ok
}

// Digest is a composefs image digest taken from the command line.
type Digest struct {
	Algorithm string // "sha256" or "sha512"
	Hex       string // lower-case hex fs-verity digest
	Insecure  bool   // '?' prefix: the image may lack fs-verity
	Form      string // the argument it came from: "composefs" or "composefs.digest"
}

// String returns the digest in the self-describing form, e.g.
// "v1-sha256-12:<hex>" (with "?" in front when insecure).
func (d Digest) String() string {
	q := ""
	if d.Insecure {
		q = "?"
	}
	return q + "v1-" + d.Algorithm + "-12:" + d.Hex
}

// ComposefsDigest returns the composefs digest a command line carries. The
// first composefs.digest= entry wins over composefs=; with neither it
// returns [ErrNoDigest], and a malformed one is an error wrapping
// [ErrBadDigest].
func ComposefsDigest(params []Param) (Digest, error) {
	var legacy *Param
	for i := range params {
		p := &params[i]
		if p.Init {
			continue
		}
		switch p.Key {
		case "composefs.digest":
			return parseSelfDescribing(p.Value)
		case "composefs":
			if legacy == nil {
				legacy = p
			}
		}
	}
	if legacy == nil {
		return Digest{}, ErrNoDigest
	}
	d := Digest{Algorithm: "sha256", Form: "composefs"}
	v := legacy.Value
	if strings.HasPrefix(v, "?") {
		d.Insecure, v = true, v[1:]
	}
	h, err := parseHex(v, 32)
	if err != nil {
		return Digest{}, fmt.Errorf("%w: composefs=%s: %v", ErrBadDigest, legacy.Value, err)
	}
	d.Hex = h
	return d, nil
}

func parseSelfDescribing(v string) (Digest, error) {
	d := Digest{Form: "composefs.digest"}
	s := v
	if strings.HasPrefix(s, "?") {
		d.Insecure, s = true, s[1:]
	}
	kind, hx, ok := strings.Cut(s, ":")
	if !ok {
		return Digest{}, fmt.Errorf("%w: composefs.digest=%s: want v1-sha256-12:<hex>", ErrBadDigest, v)
	}
	var size int
	switch kind {
	case "v1-sha256-12":
		d.Algorithm, size = "sha256", 32
	case "v1-sha512-12":
		d.Algorithm, size = "sha512", 64
	default:
		return Digest{}, fmt.Errorf("%w: composefs.digest=%s: unknown kind %q (want v1-sha256-12 or v1-sha512-12)", ErrBadDigest, v, kind)
	}
	h, err := parseHex(hx, size)
	if err != nil {
		return Digest{}, fmt.Errorf("%w: composefs.digest=%s: %v", ErrBadDigest, v, err)
	}
	d.Hex = h
	return d, nil
}

func parseHex(s string, size int) (string, error) {
	if len(s) != 2*size {
		return "", fmt.Errorf("want %d hex digits, got %d", 2*size, len(s))
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("not hex: %v", err)
	}
	return hex.EncodeToString(b), nil
}
