package composefs

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Dumpfiles are the text form of a tree, one line per name, as read by
// `mkcomposefs --from-file` and written by `composefs-info dump`:
//
//	PATH SIZE MODE NLINK UID GID RDEV MTIME PAYLOAD CONTENT DIGEST [XATTR...]
//
// Fields are separated by one space, lines end with "\n" (a missing final
// newline is accepted unless [DumpfileOptions].Strict; a line may end
// before CONTENT, and one space at its end is ignored). PATH is absolute; parents come before their
// entries and "/" comes first. SIZE, NLINK, UID, GID and RDEV are decimal;
// MODE is octal st_mode with the type bits (bits above the low 16 are
// dropped, as mkcomposefs does), prefixed with "@" for a hard link
// (whose PAYLOAD is the path of the linked file; its other fields are not
// interpreted); MTIME is "SEC.NSEC"; PAYLOAD (symlink target or backing
// path), CONTENT (inline content) and DIGEST (64 hex digits) are "-" when
// absent; each XATTR is "NAME=VALUE". PATH, PAYLOAD, CONTENT and XATTR
// parts are escaped: "\\", "\n", "\r", "\t" and "\xHH" are the only escapes.

// maxDumpLine bounds one dumpfile line (the longest legitimate line, with a
// 4095-byte escaped path, 5000 bytes of escaped content and 64 KiB of
// escaped extended attributes, is far shorter).
const maxDumpLine = 1 << 20

// DumpfileError is a syntax or consistency error in a dumpfile, located by
// line and column (both 1-based; the column is the byte offset of the
// field or character at fault).
type DumpfileError struct {
	Line, Column int
	Err          error
}

func (e *DumpfileError) Error() string {
	return fmt.Sprintf("line %d, column %d: %v", e.Line, e.Column, e.Err)
}

func (e *DumpfileError) Unwrap() error { return e.Err }

// Dumpfile field indexes, in line order.
const (
	fieldPath = iota
	fieldSize
	fieldMode
	fieldNlink
	fieldUID
	fieldGID
	fieldRdev
	fieldMtime
	fieldPayload
	fieldContent
	fieldDigest
	numFixedFields
)

var fieldNames = [numFixedFields]string{"PATH", "SIZE", "MODE", "NLINK", "UID", "GID", "RDEV", "MTIME", "PAYLOAD", "CONTENT", "DIGEST"}

// field is one space-separated part of a line and its 1-based column.
type field struct {
	text []byte
	col  int
}

// hardlinkFixup is a hard link line, resolved once all lines are read.
type hardlinkFixup struct {
	line, col    int
	path, target string
}

// dumpParser holds the state of ReadDumpfile.
type dumpParser struct {
	tree     *Tree
	strict   bool // DumpfileOptions.Strict
	haveRoot bool
	fixups   []hardlinkFixup
	pending  map[string]int // path of a hard link line -> index in fixups
}

// DumpfileOptions are the parsing rules of [ReadDumpfileOptions].
type DumpfileOptions struct {
	// Strict adds the checks mkcomposefs makes when the environment
	// variable CFS_PARSE_STRICT is set: the last line must end with a
	// newline, RDEV must be 0 except for devices, and a symlink's SIZE must
	// be the length of its target and its CONTENT empty. Without Strict
	// these are accepted (a symlink's SIZE and CONTENT are then ignored), as
	// mkcomposefs does by default.
	Strict bool
}

// ReadDumpfile parses a dumpfile into a new tree with mkcomposefs's default
// (non-strict) rules; it is [ReadDumpfileOptions] with nil options.
func ReadDumpfile(r io.Reader) (*Tree, error) {
	return ReadDumpfileOptions(r, nil)
}

// ReadDumpfileOptions parses a dumpfile into a new tree; nil opts means the
// zero [DumpfileOptions]. Errors are [*DumpfileError] values naming the
// line and column at fault, or errors from r.
func ReadDumpfileOptions(r io.Reader, opts *DumpfileOptions) (*Tree, error) {
	p := &dumpParser{tree: NewTree(), pending: make(map[string]int)}
	if opts != nil {
		p.strict = opts.Strict
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for lineNo := 1; ; lineNo++ {
		line = line[:0]
		for {
			chunk, err := br.ReadSlice('\n')
			line = append(line, chunk...)
			if len(line) > maxDumpLine {
				return nil, &DumpfileError{lineNo, 1, fmt.Errorf("line longer than %d bytes", maxDumpLine)}
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				if len(line) == 0 {
					return p.finish(lineNo)
				}
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading dumpfile line %d: %w", lineNo, err)
			}
			break
		}
		text := bytes.TrimSuffix(line, []byte{'\n'})
		if p.strict && len(text) == len(line) {
			return nil, &DumpfileError{lineNo, len(text) + 1, errors.New("missing newline at the end of the last line")}
		}
		if err := p.parseLine(lineNo, text); err != nil {
			return nil, err
		}
		if len(text) == len(line) { // last line without newline
			return p.finish(lineNo + 1)
		}
	}
}

// finish resolves hard links after the last line.
func (p *dumpParser) finish(lines int) (*Tree, error) {
	if !p.haveRoot {
		return nil, &DumpfileError{lines, 1, errors.New("no entries: the root directory \"/\" is missing")}
	}
	for _, f := range p.fixups {
		// Follow chains of hard links to hard links.
		target := f.target
		seen := map[string]bool{f.path: true}
		for {
			i, ok := p.pending[target]
			if !ok {
				break
			}
			if seen[target] {
				return nil, &DumpfileError{f.line, f.col, fmt.Errorf("hard link %s: cycle of hard links", f.path)}
			}
			seen[target] = true
			target = p.fixups[i].target
		}
		ino, err := p.tree.Lookup(target)
		if err != nil {
			return nil, &DumpfileError{f.line, f.col, fmt.Errorf("hard link %s: no target %q", f.path, f.target)}
		}
		if ino.Mode.IsDir() {
			return nil, &DumpfileError{f.line, f.col, fmt.Errorf("hard link %s: target %s is a directory", f.path, f.target)}
		}
		nlink := ino.Nlink
		if err := p.tree.Remove(f.path); err != nil {
			return nil, &DumpfileError{f.line, f.col, err}
		}
		if err := p.tree.Link(f.path, target); err != nil {
			return nil, &DumpfileError{f.line, f.col, err}
		}
		ino.Nlink = nlink // the dumpfile's NLINK of the target is authoritative
	}
	return p.tree, nil
}

func (p *dumpParser) parseLine(lineNo int, text []byte) error {
	fail := func(col int, format string, args ...any) error {
		return &DumpfileError{lineNo, col, fmt.Errorf(format, args...)}
	}
	if i := bytes.IndexByte(text, 0); i >= 0 {
		return fail(i+1, "NUL character in line")
	}
	// Split into fields at single spaces.
	var fields []field
	col := 1
	for rest := text; ; {
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			fields = append(fields, field{rest, col})
			break
		}
		fields = append(fields, field{rest[:i], col})
		rest = rest[i+1:]
		col += i + 1
	}
	// A space at the very end of a line ends the last field: mkcomposefs
	// looks for extended attributes only while text remains.
	if n := len(fields); n > numFixedFields && len(fields[n-1].text) == 0 {
		fields = fields[:n-1]
	}
	endCol := len(text) + 1
	get := func(i int) (field, error) {
		if i < len(fields) {
			return fields[i], nil
		}
		if i == fieldContent || i == fieldDigest {
			// mkcomposefs reads a line that ends early as ending in empty
			// fields; only these two can be empty.
			return field{nil, endCol}, nil
		}
		return field{}, fail(endCol, "missing field %s", fieldNames[i])
	}

	pf := fields[fieldPath]
	rawPath, err := unescape(pf.text)
	if err != nil {
		return fail(pf.col+err.(*escapeError).off, "PATH: %v", err)
	}
	pth := string(rawPath)
	if err := checkDumpPath(pth); err != nil {
		return fail(pf.col, "PATH %q: %v", pth, err)
	}

	mf, err := get(fieldMode)
	if err != nil {
		return err
	}
	modeText := mf.text
	isLink := len(modeText) > 0 && modeText[0] == '@'
	if isLink {
		modeText = modeText[1:]
	}
	// mkcomposefs keeps the low 32 bits of MODE as st_mode and checks its
	// file type; the image stores the low 16 bits (i_mode). Upstream's
	// test assets rely on this ("20720777" is a symlink, mode 120777).
	mode, err := strconv.ParseUint(string(modeText), 8, 64)
	if err != nil || !isDigits(modeText) || !Mode(uint16(mode)).validType() {
		return fail(mf.col, "MODE: invalid mode %q", mf.text)
	}
	ino := &Inode{Mode: Mode(uint16(mode))}

	if isLink {
		if ino.Mode.IsDir() {
			return fail(mf.col, "MODE: directories cannot be hard links")
		}
		if pth == "/" {
			return fail(pf.col, "PATH: the root cannot be a hard link")
		}
		lf, err := get(fieldPayload)
		if err != nil {
			return err
		}
		target, err := unescapeOptional(lf.text)
		if err != nil {
			return fail(lf.col+err.(*escapeError).off, "PAYLOAD: %v", err)
		}
		if target == nil {
			return fail(lf.col, "PAYLOAD: hard link without a target path")
		}
		tpath := string(target)
		if !strings.HasPrefix(tpath, "/") {
			tpath = "/" + tpath
		}
		if tpath == pth {
			return fail(lf.col, "PAYLOAD: hard link %s links to itself", pth)
		}
		// A placeholder holds the name until the links are resolved.
		if err := p.addEntry(pth, &Inode{Mode: TypeRegular}); err != nil {
			return fail(pf.col, "%v", err)
		}
		p.pending[pth] = len(p.fixups)
		p.fixups = append(p.fixups, hardlinkFixup{lineNo, lf.col, pth, tpath})
		return nil
	}

	var nums [numFixedFields]uint64
	for _, i := range []int{fieldSize, fieldNlink, fieldUID, fieldGID, fieldRdev} {
		f, err := get(i)
		if err != nil {
			return err
		}
		bits := 32
		if i == fieldSize || i == fieldRdev {
			bits = 64
		}
		v, err := strconv.ParseUint(string(f.text), 10, bits)
		if err != nil || !isDigits(f.text) {
			return fail(f.col, "%s: invalid number %q", fieldNames[i], f.text)
		}
		nums[i] = v
	}
	if nums[fieldSize] > 1<<63-1 {
		return fail(fields[fieldSize].col, "SIZE: %d out of range", nums[fieldSize])
	}
	ino.Size = int64(nums[fieldSize])
	ino.Nlink = uint32(nums[fieldNlink])
	ino.UID = uint32(nums[fieldUID])
	ino.GID = uint32(nums[fieldGID])
	if t := ino.Mode.Type(); t == TypeChar || t == TypeBlock {
		ino.Rdev = nums[fieldRdev]
	} else if p.strict && nums[fieldRdev] != 0 {
		return fail(fields[fieldRdev].col, "RDEV: non-zero device number %d on a non-device", nums[fieldRdev])
	}

	tf, err := get(fieldMtime)
	if err != nil {
		return err
	}
	mt, ok := parseMtime(tf.text)
	if !ok {
		return fail(tf.col, "MTIME: invalid time %q (want SEC.NSEC)", tf.text)
	}
	ino.Mtime = mt

	lf, err := get(fieldPayload)
	if err != nil {
		return err
	}
	payload, err := unescapeOptional(lf.text)
	if err != nil {
		return fail(lf.col+err.(*escapeError).off, "PAYLOAD: %v", err)
	}
	cf, err := get(fieldContent)
	if err != nil {
		return err
	}
	content, err := unescapeOptional(cf.text)
	if err != nil {
		return fail(cf.col+err.(*escapeError).off, "CONTENT: %v", err)
	}
	if content != nil {
		if t := ino.Mode.Type(); (t == TypeRegular || t == TypeSymlink) && int64(len(content)) != ino.Size {
			return fail(cf.col, "CONTENT: %d bytes of content for SIZE %d", len(content), ino.Size)
		}
		if ino.Mode.Type() == TypeRegular && len(content) > MaxInlineContent {
			return fail(cf.col, "CONTENT: inline content of %d bytes exceeds %d", len(content), MaxInlineContent)
		}
	}
	df, err := get(fieldDigest)
	if err != nil {
		return err
	}
	var digest *[32]byte
	switch {
	case string(df.text) == "-":
	case len(df.text) == 0 && ino.Mode.Type() != TypeRegular:
		// mkcomposefs ignores the (empty) digest of anything but a file.
	default:
		var d [32]byte
		if len(df.text) != 64 {
			return fail(df.col, "DIGEST: want 64 hex digits, got %q", df.text)
		}
		if _, err := hex.Decode(d[:], df.text); err != nil {
			return fail(df.col, "DIGEST: want 64 hex digits, got %q", df.text)
		}
		digest = &d
	}

	switch ino.Mode.Type() {
	case TypeSymlink:
		if len(payload) == 0 {
			return fail(lf.col, "PAYLOAD: symlink without a target")
		}
		ino.Target = string(payload)
		// Without Strict, a symlink's SIZE and CONTENT are ignored (the
		// size is the target's length).
		if p.strict && ino.Size != int64(len(payload)) {
			return fail(fields[fieldSize].col, "SIZE: %d for a symlink target of %d bytes", ino.Size, len(payload))
		}
		if p.strict && len(content) > 0 {
			return fail(cf.col, "CONTENT: a symlink cannot have content")
		}
		if digest != nil {
			return fail(df.col, "DIGEST: only regular files have a digest")
		}
	case TypeRegular:
		ino.Payload = string(payload)
		if len(content) > 0 {
			ino.Content = content
		}
		ino.Digest = digest
	default:
		if payload != nil {
			return fail(lf.col, "PAYLOAD: only symlinks and regular files have a payload")
		}
		if len(content) > 0 {
			return fail(cf.col, "CONTENT: only regular files have content")
		}
		if digest != nil {
			return fail(df.col, "DIGEST: only regular files have a digest")
		}
	}

	for _, f := range fields[min(len(fields), numFixedFields):] {
		eq := bytes.IndexByte(f.text, '=')
		if eq < 0 {
			return fail(f.col, "extended attribute %q: missing =", f.text)
		}
		name, err := unescape(f.text[:eq])
		if err != nil {
			return fail(f.col+err.(*escapeError).off, "extended attribute name: %v", err)
		}
		value, err := unescape(f.text[eq+1:])
		if err != nil {
			return fail(f.col+eq+1+err.(*escapeError).off, "extended attribute value: %v", err)
		}
		if err := ino.SetXattr(string(name), string(value)); err != nil {
			return fail(f.col, "%v", err)
		}
	}

	if err := ino.validate(); err != nil {
		return fail(1, "%s: %v", pth, err)
	}
	if pth == "/" {
		if p.haveRoot {
			return fail(pf.col, "PATH: second root directory")
		}
		if !ino.Mode.IsDir() {
			return fail(mf.col, "MODE: the root must be a directory")
		}
		p.haveRoot = true
	}
	if err := p.addEntry(pth, ino); err != nil {
		return fail(pf.col, "%v", err)
	}
	return nil
}

// addEntry adds one line's inode, with the reference tool's messages.
func (p *dumpParser) addEntry(pth string, ino *Inode) error {
	if pth != "/" {
		if !p.haveRoot {
			return errors.New("the root directory \"/\" must be the first entry")
		}
		parts, err := splitPath(pth)
		if err != nil {
			return err
		}
		if len(parts) == 0 {
			return fmt.Errorf("path %s names the root", pth)
		}
		if _, ok := p.pending[pth]; ok {
			return fmt.Errorf("path %s already exists", pth)
		}
		dir, err := p.tree.walkTo(parts[:len(parts)-1])
		if err != nil || !dir.Mode.IsDir() {
			return fmt.Errorf("parent directory of %s is missing or not a directory", pth)
		}
		if _, ok := dir.children[parts[len(parts)-1]]; ok {
			return fmt.Errorf("path %s already exists", pth)
		}
	}
	if err := p.tree.Add(pth, ino); err != nil {
		return errors.Unwrap(err)
	}
	return nil
}

// checkDumpPath checks that p is "/" or an absolute path of valid names.
func checkDumpPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if p[0] != '/' {
		return errors.New("path must be absolute")
	}
	if p == "/" {
		return nil
	}
	depth := 0
	for _, name := range strings.Split(p[1:], "/") {
		switch {
		case name == "":
			return errors.New("empty path component")
		case name == "." || name == "..":
			return errors.New(". and .. are not allowed")
		case len(name) > MaxNameLen:
			return fmt.Errorf("name longer than %d bytes", MaxNameLen)
		case strings.IndexByte(name, 0) >= 0:
			// mkcomposefs would silently cut the name at the NUL.
			return errors.New("NUL character in name")
		}
		depth++
	}
	if depth > MaxDepth {
		return fmt.Errorf("more than %d components", MaxDepth)
	}
	return nil
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseMtime parses "SEC.NSEC" (SEC may be negative; NSEC is a plain
// integer below 10^9: "1.5" is 1 s + 5 ns).
func parseMtime(b []byte) (Timespec, bool) {
	dot := bytes.IndexByte(b, '.')
	if dot < 0 {
		return Timespec{}, false
	}
	secText, nsecText := b[:dot], b[dot+1:]
	digits := secText
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if !isDigits(digits) || !isDigits(nsecText) {
		return Timespec{}, false
	}
	sec, err := strconv.ParseInt(string(secText), 10, 64)
	if err != nil {
		return Timespec{}, false
	}
	nsec, err := strconv.ParseUint(string(nsecText), 10, 32)
	if err != nil || nsec >= 1e9 {
		return Timespec{}, false
	}
	return Timespec{sec, uint32(nsec)}, true
}

// escapeError is a bad escape sequence at byte offset off of a field.
type escapeError struct {
	off int
	msg string
}

func (e *escapeError) Error() string { return e.msg }

// unescape decodes the escapes of a dumpfile field.
func unescape(b []byte) ([]byte, error) {
	if bytes.IndexByte(b, '\\') < 0 {
		return bytes.Clone(b), nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(b) {
			return nil, &escapeError{i, "backslash at the end of the field"}
		}
		i++
		switch b[i] {
		case '\\':
			out = append(out, '\\')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'x':
			if i+2 >= len(b) {
				return nil, &escapeError{i - 1, "\\x needs two hex digits"}
			}
			hi, ok1 := unhex(b[i+1])
			lo, ok2 := unhex(b[i+2])
			if !ok1 || !ok2 {
				return nil, &escapeError{i - 1, fmt.Sprintf("invalid hex escape \\x%c%c", b[i+1], b[i+2])}
			}
			out = append(out, hi<<4|lo)
			i += 2
		default:
			return nil, &escapeError{i - 1, fmt.Sprintf("unsupported escape \\%c", b[i])}
		}
	}
	return out, nil
}

// unescapeOptional decodes a field that is "-" when absent (nil result).
func unescapeOptional(b []byte) ([]byte, error) {
	if len(b) == 1 && b[0] == '-' {
		return nil, nil
	}
	v, err := unescape(b)
	if v == nil && err == nil {
		v = []byte{}
	}
	return v, err
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Escaping styles of composefs-info.
const (
	escStandard = 0
	escNoSpace  = 1 << iota // keep spaces (ls)
	escEqual                // escape '=' (extended attributes)
	escLoneDash             // escape a lone "-" (optional fields)
)

// appendEscaped appends s escaped the way composefs-info prints it.
func appendEscaped(b []byte, s string, style int) []byte {
	const hexdigits = "0123456789abcdef"
	if style&escLoneDash != 0 && s == "-" {
		return append(b, `\x2d`...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\r':
			b = append(b, `\r`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c == '=' && style&escEqual != 0,
			c == ' ' && style&escNoSpace == 0,
			c < 0x20 || c > 0x7e:
			b = append(b, '\\', 'x', hexdigits[c>>4], hexdigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}

// WriteDumpfile writes t as a dumpfile in depth-first, byte-sorted order,
// byte-identical to `composefs-info dump` of an image of the same tree.
// The primary name of each inode gets a full line; its other names get hard
// link lines ("@" mode, PAYLOAD = primary path) that repeat the inode's
// metadata, as composefs-info writes them.
func WriteDumpfile(w io.Writer, t *Tree) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	err := t.Walk(func(name string, ino *Inode, isLink bool) error {
		line = appendDumpLine(line[:0], name, ino, isLink)
		_, err := bw.Write(line)
		return err
	})
	if err != nil {
		return fmt.Errorf("writing dumpfile: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing dumpfile: %w", err)
	}
	return nil
}

// appendDumpLine appends the dumpfile line of one name.
func appendDumpLine(b []byte, name string, ino *Inode, isLink bool) []byte {
	b = appendEscaped(b, name, escStandard)
	size := ino.Size
	if ino.Mode.Type() == TypeSymlink {
		size = int64(len(ino.Target))
	}
	b = append(b, ' ')
	b = strconv.AppendInt(b, size, 10)
	b = append(b, ' ')
	if isLink {
		b = append(b, '@')
	}
	b = strconv.AppendUint(b, uint64(ino.Mode), 8)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(ino.Nlink), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(ino.UID), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(ino.GID), 10)
	b = append(b, ' ')
	var rdev uint64
	if t := ino.Mode.Type(); t == TypeChar || t == TypeBlock {
		rdev = ino.Rdev
	}
	b = strconv.AppendUint(b, rdev, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, ino.Mtime.Sec, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(ino.Mtime.Nsec), 10)
	b = append(b, ' ')
	var payload string
	hasPayload := true
	switch {
	case isLink:
		payload = ino.Path()
	case ino.Mode.Type() == TypeSymlink:
		payload = ino.Target
	case ino.Mode.Type() == TypeRegular && ino.Payload != "":
		payload = ino.Payload
	default:
		hasPayload = false
	}
	if hasPayload {
		b = appendEscaped(b, payload, escLoneDash)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	if ino.Mode.Type() == TypeRegular && len(ino.Content) > 0 {
		b = appendEscaped(b, string(ino.Content), escLoneDash)
	} else {
		b = append(b, '-')
	}
	b = append(b, ' ')
	if ino.Mode.Type() == TypeRegular && ino.Digest != nil {
		b = hex.AppendEncode(b, ino.Digest[:])
	} else {
		b = append(b, '-')
	}
	for _, x := range ino.Xattrs {
		b = append(b, ' ')
		b = appendEscaped(b, x.Name, escEqual)
		b = append(b, '=')
		b = appendEscaped(b, x.Value, escEqual)
	}
	return append(b, '\n')
}
