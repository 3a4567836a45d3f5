package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo (proc(5)).
type mount struct {
	ID, Parent   int
	MajMin       string
	Root         string // root of the mount within its filesystem
	MountPoint   string
	Options      string // per-mount options
	FSType       string
	Source       string
	SuperOptions string // per-superblock options (for overlay: lowerdir=…)
}

// parseMountinfo parses the contents of /proc/self/mountinfo. Octal escapes
// (\040 for space and friends) are decoded in paths and in the source.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			return nil, fmt.Errorf("mountinfo line %d: no \" - \" separator", n)
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 6 || len(g) < 2 {
			return nil, fmt.Errorf("mountinfo line %d: %d+%d fields, want at least 6+2", n, len(f), len(g))
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("mountinfo line %d: bad mount ids %q %q", n, f[0], f[1])
		}
		m := mount{
			ID: id, Parent: parent, MajMin: f[2],
			Root: unescapeOctal(f[3]), MountPoint: unescapeOctal(f[4]), Options: f[5],
			FSType: g[0], Source: unescapeOctal(g[1]),
		}
		if len(g) > 2 {
			m.SuperOptions = g[2]
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	return out, nil
}

// unescapeOctal decodes the \NNN escapes the kernel uses in mountinfo and
// in shown mount options.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			v, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return s[0] <= '3'
}

// mountAt returns the topmost mount at path p (the last one listed: later
// mounts on the same point hide earlier ones).
func mountAt(ms []mount, p string) (mount, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].MountPoint == p {
			return ms[i], true
		}
	}
	return mount{}, false
}

// superOption returns every value of option key in a comma-separated option
// string ("lowerdir+=" can repeat), unescaped.
func superOption(opts, key string) []string {
	var vals []string
	for _, o := range strings.Split(opts, ",") {
		k, v, ok := strings.Cut(o, "=")
		if ok && k == key {
			vals = append(vals, unescapeOctal(v))
		}
	}
	return vals
}

// overlayLowers returns the regular and data-only lower layers of an
// overlay mount from its super options. Both the classic
// "lowerdir=a:b::data" syntax and the repeated "lowerdir+=" /
// "datadir+=" syntax (Linux 6.8+) are understood.
func overlayLowers(superOpts string) (lower, data []string) {
	for _, v := range superOption(superOpts, "lowerdir") {
		regular, dataOnly, _ := strings.Cut(v, "::")
		lower = append(lower, splitColon(regular)...)
		data = append(data, splitColon(dataOnly)...)
	}
	lower = append(lower, superOption(superOpts, "lowerdir+")...)
	data = append(data, superOption(superOpts, "datadir+")...)
	return lower, data
}

// splitColon splits an overlay layer list on ':' (a "\:" escape keeps the
// colon inside a path).
func splitColon(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ':':
			cur.WriteByte(':')
			i++
		case s[i] == ':':
			if cur.Len() > 0 {
				out = append(out, cur.String())
			}
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
