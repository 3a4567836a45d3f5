package main

import "strings"

// cmdline is the parsed kernel command line: parameters in order, with
// the value of each "key=value" (a bare "key" has an empty value).
type cmdline struct {
	raw    string
	params []param
}

type param struct {
	key, value string
	hasValue   bool
}

// parseCmdline splits a kernel command line the way the kernel does
// (lib/cmdline.c next_arg): parameters are separated by spaces, and double
// quotes group spaces into one parameter; the quotes themselves are
// removed. A "--" ends the kernel's own parameters; everything after it is
// for init and is not returned.
func parseCmdline(s string) cmdline {
	c := cmdline{raw: strings.TrimSpace(s)}
	var cur strings.Builder
	inQuote, have := false, false
	flush := func() {
		if !have {
			return
		}
		k, v, ok := strings.Cut(cur.String(), "=")
		c.params = append(c.params, param{key: k, value: v, hasValue: ok})
		cur.Reset()
		have = false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"':
			inQuote = !inQuote
			have = true
		case !inQuote && (ch == ' ' || ch == '\t' || ch == '\n'):
			if have && cur.String() == "--" {
				cur.Reset()
				have = false
				return c
			}
			flush()
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have && cur.String() == "--" {
		return c
	}
	flush()
	return c
}

// get returns the value of the last occurrence of key (the kernel and most
// consumers let later parameters win) and whether it is present.
func (c cmdline) get(key string) (string, bool) {
	for i := len(c.params) - 1; i >= 0; i-- {
		if c.params[i].key == key {
			return c.params[i].value, true
		}
	}
	return "", false
}
