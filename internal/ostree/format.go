package ostree

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"
	"slices"
	"strings"
	"time"
)

// Errors callers can test for with errors.Is.
var (
	// ErrFormat reports a malformed object or repository file.
	ErrFormat = errors.New("ostree: malformed data")
	// ErrChecksum reports an object whose content does not match its name.
	ErrChecksum = errors.New("ostree: checksum mismatch")
	// ErrInvalid reports input the format cannot represent (a bad file
	// name, an unsupported file type, a non-UTF-8 string).
	ErrInvalid = errors.New("ostree: invalid input")
	// ErrNotExist reports a missing object or ref; it wraps fs.ErrNotExist
	// where the cause is a missing file.
	ErrNotExist = errors.New("ostree: object not found")
)

// Checksum is the SHA-256 digest that names an object.
type Checksum [sha256.Size]byte

// String returns c as 64 lower-case hex digits, the form ostree prints.
func (c Checksum) String() string { return hex.EncodeToString(c[:]) }

// ParseChecksum parses 64 hex digits (lower case, as ostree writes them).
func ParseChecksum(s string) (Checksum, error) {
	var c Checksum
	if len(s) != 2*len(c) || strings.ToLower(s) != s {
		return c, fmt.Errorf("%w: bad checksum %q", ErrFormat, s)
	}
	if _, err := hex.Decode(c[:], []byte(s)); err != nil {
		return c, fmt.Errorf("%w: bad checksum %q", ErrFormat, s)
	}
	return c, nil
}

// ObjectType is the kind of a repository object; it decides the object's
// file name extension.
type ObjectType int

// The object types of a bare repository.
const (
	ObjectFile    ObjectType = 1 // a content object: regular file or symlink
	ObjectDirTree ObjectType = 2 // a directory listing ([DirTree])
	ObjectDirMeta ObjectType = 3 // directory metadata ([DirMeta])
	ObjectCommit  ObjectType = 4 // a commit ([Commit])
	// ObjectCommitMeta is a commit's detached metadata (a{sv}: signatures),
	// named by the commit's checksum, not its own.
	ObjectCommitMeta ObjectType = 6
)

// Ext returns the file name extension of objects of type t ("file",
// "dirtree", "dirmeta", "commit").
func (t ObjectType) Ext() string {
	switch t {
	case ObjectFile:
		return "file"
	case ObjectDirTree:
		return "dirtree"
	case ObjectDirMeta:
		return "dirmeta"
	case ObjectCommit:
		return "commit"
	case ObjectCommitMeta:
		return "commitmeta"
	}
	return fmt.Sprintf("ObjectType(%d)", int(t))
}

// ObjectPath returns the path of an object relative to the repository:
// "objects/XX/YYYY….ext", XX being the first checksum byte in hex.
func ObjectPath(c Checksum, t ObjectType) string {
	s := c.String()
	return "objects/" + s[:2] + "/" + s[2:] + "." + t.Ext()
}

// Xattr is an extended attribute: a full name ("user.foo",
// "security.selinux") and its binary value.
type Xattr struct {
	Name  string
	Value string
}

// Variant is a GVariant value with its type, as stored in commit metadata.
// The zero Variant is invalid; make one with the constructors ([String],
// [Bytes], [Uint64], …) or get one from [Reader.ReadCommit].
type Variant struct {
	t *vtype
	v any
}

var (
	typeString     = mustType("s")
	typeBytes      = mustType("ay")
	typeUint32     = mustType("u")
	typeUint64     = mustType("t")
	typeBool       = mustType("b")
	typeStrings    = mustType("as")
	typePair64     = mustType("(tt)")
	typeVardict    = mustType("a{sv}")
	typeByteArrays = mustType("aay")
)

// String returns a string variant (type "s"). s must be valid UTF-8
// without NUL bytes, or writing the variant fails.
func String(s string) Variant { return Variant{typeString, s} }

// Bytes returns a byte-array variant (type "ay").
func Bytes(b []byte) Variant { return Variant{typeBytes, slices.Clone(b)} }

// Uint32 returns a 32-bit unsigned integer variant (type "u"), stored
// little-endian like every GVariant number ostree does not byte-swap itself.
func Uint32(v uint32) Variant { return Variant{typeUint32, v} }

// Uint64 returns a 64-bit unsigned integer variant (type "t").
func Uint64(v uint64) Variant { return Variant{typeUint64, v} }

// Bool returns a boolean variant (type "b").
func Bool(v bool) Variant { return Variant{typeBool, v} }

// Strings returns a string-array variant (type "as").
func Strings(ss []string) Variant {
	xs := make([]any, len(ss))
	for i, s := range ss {
		xs[i] = s
	}
	return Variant{typeStrings, xs}
}

// ByteArrays returns an array-of-byte-arrays variant (type "aay"), the
// type of ostree's signature lists.
func ByteArrays(bs [][]byte) Variant {
	xs := make([]any, len(bs))
	for i, b := range bs {
		xs[i] = slices.Clone(b)
	}
	return Variant{typeByteArrays, xs}
}

// AsByteArrays returns the value of an "aay" variant.
func (v Variant) AsByteArrays() ([][]byte, bool) {
	if v.t == nil || v.t.sig != "aay" {
		return nil, false
	}
	xs := v.v.([]any)
	bs := make([][]byte, len(xs))
	for i, x := range xs {
		bs[i] = x.([]byte)
	}
	return bs, true
}

// Uint64Pair returns a pair of 64-bit unsigned integers (type "(tt)"),
// the form of the backing device and inode ostree-prepare-root records in
// /run/ostree-booted.
func Uint64Pair(a, b uint64) Variant { return Variant{typePair64, []any{a, b}} }

// Dict returns a dictionary variant (type "a{sv}") holding entries in
// the given order.
func Dict(entries []MetaEntry) Variant { return Variant{typeVardict, encodeMeta(entries)} }

// Type returns the GVariant type signature of v ("s", "ay", "a{sv}", …).
func (v Variant) Type() string {
	if v.t == nil {
		return ""
	}
	return v.t.sig
}

// AsString returns the value of a "s" variant.
func (v Variant) AsString() (string, bool) {
	s, ok := v.v.(string)
	return s, ok && v.t.kind == 's'
}

// AsBytes returns the value of an "ay" variant.
func (v Variant) AsBytes() ([]byte, bool) {
	b, ok := v.v.([]byte)
	return b, ok
}

// AsUint32 returns the value of a "u" variant.
func (v Variant) AsUint32() (uint32, bool) {
	x, ok := v.v.(uint32)
	return x, ok
}

// AsUint64 returns the value of a "t" variant.
func (v Variant) AsUint64() (uint64, bool) {
	x, ok := v.v.(uint64)
	return x, ok
}

// AsBool returns the value of a "b" variant.
func (v Variant) AsBool() (bool, bool) {
	x, ok := v.v.(bool)
	return x, ok
}

// AsStrings returns the value of an "as" variant.
func (v Variant) AsStrings() ([]string, bool) {
	if v.t == nil || v.t.sig != "as" {
		return nil, false
	}
	xs := v.v.([]any)
	ss := make([]string, len(xs))
	for i, x := range xs {
		ss[i] = x.(string)
	}
	return ss, true
}

// AsUint64Pair returns the values of a "(tt)" variant.
func (v Variant) AsUint64Pair() (a, b uint64, ok bool) {
	if v.t == nil || v.t.sig != "(tt)" {
		return 0, 0, false
	}
	xs := v.v.([]any)
	return xs[0].(uint64), xs[1].(uint64), true
}

// MarshalDict returns the serialized a{sv} dictionary of entries in their
// order: the bytes of a GVariant of type a{sv} in normal form, as
// /run/ostree-booted holds them (OTCORE_RUN_BOOTED, which libostree reads
// with G_VARIANT_TYPE_VARDICT) and a commit's detached metadata object
// ([ObjectCommitMeta]) stores them.
func MarshalDict(entries []MetaEntry) ([]byte, error) {
	b, err := typeVardict.encode(nil, encodeMeta(entries))
	if err != nil {
		return nil, fmt.Errorf("ostree: a{sv}: %w", err)
	}
	return b, nil
}

// ParseDict parses a serialized a{sv} dictionary in normal form.
func ParseDict(b []byte) ([]MetaEntry, error) {
	v, err := typeVardict.decodeNormal(b)
	if err != nil {
		return nil, fmt.Errorf("ostree: a{sv}: %w", err)
	}
	return decodeMeta(v.([]any)), nil
}

// AsDict returns the entries of an "a{sv}" variant, in stored order.
func (v Variant) AsDict() ([]MetaEntry, bool) {
	if v.t == nil || v.t.sig != "a{sv}" {
		return nil, false
	}
	return decodeMeta(v.v.([]any)), true
}

// MetaEntry is one entry of a commit's metadata dictionary (GVariant type
// a{sv}).
type MetaEntry struct {
	Key   string
	Value Variant
}

func encodeMeta(entries []MetaEntry) []any {
	xs := make([]any, len(entries))
	for i, e := range entries {
		xs[i] = []any{e.Key, e.Value}
	}
	return xs
}

func decodeMeta(xs []any) []MetaEntry {
	entries := make([]MetaEntry, len(xs))
	for i, x := range xs {
		kv := x.([]any)
		entries[i] = MetaEntry{Key: kv[0].(string), Value: kv[1].(Variant)}
	}
	return entries
}

// Well-known commit metadata keys.
const (
	// MetaRefBinding lists the refs a commit may be reached by ("as").
	MetaRefBinding = "ostree.ref-binding"
	// MetaCollectionBinding names the collection of a commit ("s").
	MetaCollectionBinding = "ostree.collection-binding"
	// MetaVersion is the human-readable version of a commit ("s").
	MetaVersion = "version"
	// MetaBootable marks a commit holding a bootable tree ("b").
	MetaBootable = "ostree.bootable"
	// MetaLinux is the kernel version of a bootable commit ("s").
	MetaLinux = "ostree.linux"
)

// RefBinding returns the metadata entry `ostree commit --branch=REF` adds
// (unless --no-bindings): [MetaRefBinding] with the refs sorted by byte
// order. `ostree commit` appends it after the entries given with
// --add-metadata-string and --add-metadata.
func RefBinding(refs ...string) MetaEntry {
	refs = slices.Clone(refs)
	slices.Sort(refs)
	return MetaEntry{Key: MetaRefBinding, Value: Strings(refs)}
}

// be32 byte-swaps a value ostree stores big-endian in a GVariant "u": the
// GVariant encoding is little-endian, so swapping yields big-endian bytes.
func be32(x uint32) uint32 { return bits.ReverseBytes32(x) }

// encodeXattrs returns xs sorted by name as ostree canonicalizes them; names
// are stored with their terminating NUL byte.
func encodeXattrs(xs []Xattr) ([]any, error) {
	xs = slices.Clone(xs)
	slices.SortStableFunc(xs, func(a, b Xattr) int { return cmp.Compare(a.Name, b.Name) })
	out := make([]any, len(xs))
	for i, x := range xs {
		if x.Name == "" || strings.IndexByte(x.Name, 0) >= 0 {
			return nil, fmt.Errorf("%w: extended attribute name %q", ErrInvalid, x.Name)
		}
		out[i] = []any{append([]byte(x.Name), 0), []byte(x.Value)}
	}
	return out, nil
}

func decodeXattrs(v any) ([]Xattr, error) {
	xs := v.([]any)
	out := make([]Xattr, 0, len(xs))
	for i, x := range xs {
		kv := x.([]any)
		name, value := kv[0].([]byte), kv[1].([]byte)
		if len(name) < 2 || name[len(name)-1] != 0 || slices.Index(name[:len(name)-1], 0) >= 0 {
			return nil, fmt.Errorf("%w: bad extended attribute name %q", ErrFormat, name)
		}
		n := string(name[:len(name)-1])
		if i > 0 && n < out[i-1].Name {
			return nil, fmt.Errorf("%w: extended attributes not sorted", ErrFormat)
		}
		out = append(out, Xattr{Name: n, Value: string(value)})
	}
	return out, nil
}

// FileHeader is the metadata of a content object: owner, st_mode (file
// type included), and extended attributes, plus the target of a symbolic
// link. It is not stored in a bare repository (the object file carries it)
// but it is part of the object's checksum.
type FileHeader struct {
	UID, GID uint32
	// Mode is the st_mode: S_IFREG or S_IFLNK and the permission bits.
	Mode uint32
	// Rdev is always 0 in objects ostree writes.
	Rdev uint32
	// Target is the target of a symbolic link, "" for a regular file.
	Target string
	// Xattrs are the extended attributes; they are sorted by name when
	// encoded.
	Xattrs []Xattr
}

var typeFileHeader = mustType("(uuuusa(ayay))")

const (
	modeTypeMask = 0o170000
	modeRegular  = 0o100000
	modeSymlink  = 0o120000
	modeDir      = 0o040000
)

// MarshalBinary returns the GVariant "(uuuusa(ayay))" of h (uid, gid and
// mode big-endian). It fails for a mode that is neither a regular file nor
// a symbolic link, or a symlink without target.
func (h *FileHeader) MarshalBinary() ([]byte, error) {
	if err := h.validate(ErrInvalid); err != nil {
		return nil, err
	}
	xs, err := encodeXattrs(h.Xattrs)
	if err != nil {
		return nil, err
	}
	return typeFileHeader.encode(nil, []any{be32(h.UID), be32(h.GID), be32(h.Mode), be32(h.Rdev), h.Target, xs})
}

func (h *FileHeader) validate(errKind error) error {
	switch h.Mode & modeTypeMask {
	case modeRegular:
		if h.Target != "" {
			return fmt.Errorf("%w: regular file with a symlink target", errKind)
		}
	case modeSymlink:
		if h.Target == "" {
			return fmt.Errorf("%w: symlink without target", errKind)
		}
	default:
		return fmt.Errorf("%w: content object of mode %o", errKind, h.Mode)
	}
	if h.Mode&^(modeTypeMask|0o7777) != 0 {
		return fmt.Errorf("%w: mode %o has unknown bits", errKind, h.Mode)
	}
	return nil
}

// ParseFileHeader parses the GVariant of a file header.
func ParseFileHeader(b []byte) (*FileHeader, error) {
	v, err := typeFileHeader.decodeNormal(b)
	if err != nil {
		return nil, fmt.Errorf("file header: %w", err)
	}
	f := v.([]any)
	h := &FileHeader{UID: be32(f[0].(uint32)), GID: be32(f[1].(uint32)), Mode: be32(f[2].(uint32)), Rdev: be32(f[3].(uint32)), Target: f[4].(string)}
	if h.Xattrs, err = decodeXattrs(f[5]); err != nil {
		return nil, fmt.Errorf("file header: %w", err)
	}
	if err := h.validate(ErrFormat); err != nil {
		return nil, fmt.Errorf("file header: %w", err)
	}
	return h, nil
}

// checksumHeader returns a SHA-256 hash holding the checksum input of a
// content object's header: the header variant's size as a big-endian
// 32-bit number, 4 zero bytes, then the variant. For a regular file the
// content follows.
func (h *FileHeader) checksumHeader() (hash.Hash, error) {
	b, err := h.MarshalBinary()
	if err != nil {
		return nil, err
	}
	s := sha256.New()
	var prefix [8]byte
	binary.BigEndian.PutUint32(prefix[:4], uint32(len(b)))
	s.Write(prefix[:])
	s.Write(b)
	return s, nil
}

// FileChecksum returns the checksum of the content object with header h
// and content r (nil for a symbolic link).
func FileChecksum(h *FileHeader, r io.Reader) (Checksum, error) {
	s, err := h.checksumHeader()
	if err != nil {
		return Checksum{}, err
	}
	if h.Mode&modeTypeMask == modeRegular && r != nil {
		if _, err := io.Copy(s, r); err != nil {
			return Checksum{}, err
		}
	}
	return Checksum(s.Sum(nil)), nil
}

// DirMeta is the metadata of a directory (a dirmeta object).
type DirMeta struct {
	UID, GID uint32
	// Mode is the st_mode, S_IFDIR included.
	Mode uint32
	// Xattrs are sorted by name when encoded.
	Xattrs []Xattr
}

var typeDirMeta = mustType("(uuua(ayay))")

// MarshalBinary returns the dirmeta object "(uuua(ayay))" of m.
func (m *DirMeta) MarshalBinary() ([]byte, error) {
	if m.Mode&modeTypeMask != modeDir {
		return nil, fmt.Errorf("%w: directory of mode %o", ErrInvalid, m.Mode)
	}
	xs, err := encodeXattrs(m.Xattrs)
	if err != nil {
		return nil, err
	}
	return typeDirMeta.encode(nil, []any{be32(m.UID), be32(m.GID), be32(m.Mode), xs})
}

// ParseDirMeta parses a dirmeta object.
func ParseDirMeta(b []byte) (*DirMeta, error) {
	v, err := typeDirMeta.decodeNormal(b)
	if err != nil {
		return nil, fmt.Errorf("dirmeta: %w", err)
	}
	f := v.([]any)
	m := &DirMeta{UID: be32(f[0].(uint32)), GID: be32(f[1].(uint32)), Mode: be32(f[2].(uint32))}
	if m.Mode&modeTypeMask != modeDir {
		return nil, fmt.Errorf("dirmeta: %w: mode %o is not a directory", ErrFormat, m.Mode)
	}
	if m.Xattrs, err = decodeXattrs(f[3]); err != nil {
		return nil, fmt.Errorf("dirmeta: %w", err)
	}
	return m, nil
}

// TreeFile is a non-directory entry of a [DirTree].
type TreeFile struct {
	Name     string
	Checksum Checksum // of the content object
}

// TreeDir is a subdirectory entry of a [DirTree].
type TreeDir struct {
	Name     string
	Contents Checksum // of its dirtree object
	Meta     Checksum // of its dirmeta object
}

// DirTree lists a directory (a dirtree object). Files and Dirs must each be
// sorted by name in byte order, names unique across both.
type DirTree struct {
	Files []TreeFile
	Dirs  []TreeDir
}

var typeDirTree = mustType("(a(say)a(sayay))")

// ValidName reports whether name can be a directory entry: not empty, not
// "." or "..", without "/" or NUL, valid UTF-8 (GVariant strings must be).
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w: file name %q", ErrInvalid, name)
	}
	return nil
}

func (t *DirTree) validate(errKind error) error {
	for i, f := range t.Files {
		if validName(f.Name) != nil || i > 0 && f.Name <= t.Files[i-1].Name {
			return fmt.Errorf("%w: file name %q unsorted or invalid", errKind, f.Name)
		}
	}
	for i, d := range t.Dirs {
		if validName(d.Name) != nil || i > 0 && d.Name <= t.Dirs[i-1].Name {
			return fmt.Errorf("%w: directory name %q unsorted or invalid", errKind, d.Name)
		}
		if _, dup := slices.BinarySearchFunc(t.Files, d.Name, func(f TreeFile, n string) int { return cmp.Compare(f.Name, n) }); dup {
			return fmt.Errorf("%w: name %q is both file and directory", errKind, d.Name)
		}
	}
	return nil
}

// MarshalBinary returns the dirtree object "(a(say)a(sayay))" of t.
func (t *DirTree) MarshalBinary() ([]byte, error) {
	if err := t.validate(ErrInvalid); err != nil {
		return nil, err
	}
	files := make([]any, len(t.Files))
	for i, f := range t.Files {
		files[i] = []any{f.Name, f.Checksum[:]}
	}
	dirs := make([]any, len(t.Dirs))
	for i, d := range t.Dirs {
		dirs[i] = []any{d.Name, d.Contents[:], d.Meta[:]}
	}
	return typeDirTree.encode(nil, []any{files, dirs})
}

func checksumOf(b []byte) (Checksum, error) {
	var c Checksum
	if len(b) != len(c) {
		return c, fmt.Errorf("%w: checksum of %d bytes", ErrFormat, len(b))
	}
	copy(c[:], b)
	return c, nil
}

// ParseDirTree parses a dirtree object.
func ParseDirTree(b []byte) (*DirTree, error) {
	v, err := typeDirTree.decodeNormal(b)
	if err != nil {
		return nil, fmt.Errorf("dirtree: %w", err)
	}
	f := v.([]any)
	t := &DirTree{}
	for _, x := range f[0].([]any) {
		e := x.([]any)
		c, err := checksumOf(e[1].([]byte))
		if err != nil {
			return nil, fmt.Errorf("dirtree: %w", err)
		}
		t.Files = append(t.Files, TreeFile{Name: e[0].(string), Checksum: c})
	}
	for _, x := range f[1].([]any) {
		e := x.([]any)
		c, err := checksumOf(e[1].([]byte))
		if err != nil {
			return nil, fmt.Errorf("dirtree: %w", err)
		}
		m, err := checksumOf(e[2].([]byte))
		if err != nil {
			return nil, fmt.Errorf("dirtree: %w", err)
		}
		t.Dirs = append(t.Dirs, TreeDir{Name: e[0].(string), Contents: c, Meta: m})
	}
	if err := t.validate(ErrFormat); err != nil {
		return nil, fmt.Errorf("dirtree: %w", err)
	}
	return t, nil
}

// Related is an entry of a commit's related-objects list (unused by ostree
// itself, always empty in commits it writes).
type Related struct {
	Name     string
	Checksum Checksum
}

// Commit is a commit object.
type Commit struct {
	// Metadata is the a{sv} dictionary, in stored order.
	Metadata []MetaEntry
	// Parent is the previous commit; nil for none.
	Parent *Checksum
	// Related is normally empty.
	Related []Related
	// Subject and Body are the commit message.
	Subject, Body string
	// Timestamp is the commit time in seconds (stored as a big-endian
	// 64-bit number of seconds since the Unix epoch; sub-second parts are
	// dropped). It must not be before 1970.
	Timestamp time.Time
	// RootContents and RootMeta name the root directory's dirtree and
	// dirmeta objects.
	RootContents, RootMeta Checksum
}

var typeCommit = mustType("(a{sv}aya(say)sstayay)")

// MarshalBinary returns the commit object "(a{sv}aya(say)sstayay)" of c.
func (c *Commit) MarshalBinary() ([]byte, error) {
	parent := []byte{}
	if c.Parent != nil {
		parent = c.Parent[:]
	}
	related := make([]any, len(c.Related))
	for i, r := range c.Related {
		related[i] = []any{r.Name, r.Checksum[:]}
	}
	ts := c.Timestamp.Unix()
	if ts < 0 {
		return nil, fmt.Errorf("%w: commit timestamp before 1970", ErrInvalid)
	}
	return typeCommit.encode(nil, []any{
		encodeMeta(c.Metadata), parent, related, c.Subject, c.Body,
		bits.ReverseBytes64(uint64(ts)), c.RootContents[:], c.RootMeta[:],
	})
}

// Lookup returns the value of the first metadata entry named key.
func (c *Commit) Lookup(key string) (Variant, bool) {
	for _, e := range c.Metadata {
		if e.Key == key {
			return e.Value, true
		}
	}
	return Variant{}, false
}

// ParseCommit parses a commit object.
func ParseCommit(b []byte) (*Commit, error) {
	v, err := typeCommit.decodeNormal(b)
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	f := v.([]any)
	c := &Commit{Metadata: decodeMeta(f[0].([]any)), Subject: f[3].(string), Body: f[4].(string)}
	if p := f[1].([]byte); len(p) > 0 {
		pc, err := checksumOf(p)
		if err != nil {
			return nil, fmt.Errorf("commit: parent: %w", err)
		}
		c.Parent = &pc
	}
	for _, x := range f[2].([]any) {
		e := x.([]any)
		rc, err := checksumOf(e[1].([]byte))
		if err != nil {
			return nil, fmt.Errorf("commit: related: %w", err)
		}
		c.Related = append(c.Related, Related{Name: e[0].(string), Checksum: rc})
	}
	ts := bits.ReverseBytes64(f[5].(uint64))
	if ts > 1<<62 {
		return nil, fmt.Errorf("commit: %w: timestamp %d out of range", ErrFormat, ts)
	}
	c.Timestamp = time.Unix(int64(ts), 0).UTC()
	if c.RootContents, err = checksumOf(f[6].([]byte)); err != nil {
		return nil, fmt.Errorf("commit: root contents: %w", err)
	}
	if c.RootMeta, err = checksumOf(f[7].([]byte)); err != nil {
		return nil, fmt.Errorf("commit: root metadata: %w", err)
	}
	return c, nil
}
