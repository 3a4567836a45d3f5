// Package composefs reads and writes composefs images: EROFS metadata images
// whose regular files point, through overlayfs "metacopy" and "redirect"
// extended attributes, into a content-addressed object store.
//
// The package has three parts around one model:
//
//   - [Tree] and [Inode], the in-memory filesystem tree. A tree is built
//     incrementally by path ([Tree.Add], [Tree.Link], [Tree.Remove],
//     [Tree.RemoveChildren], [Tree.MkdirAll]), walked in sorted order
//     ([Tree.Walk]) and read like a filesystem ([Tree.FS]).
//   - Dumpfiles, the text form of a tree used by mkcomposefs --from-file and
//     composefs-info dump: [ReadDumpfile] and [WriteDumpfile].
//   - Images: [WriteImage] serializes a tree into an EROFS composefs image;
//     [NewReader] parses an image back into a tree.
//
// # Format coverage
//
// The writer produces images byte-identical to mkcomposefs from composefs
// 1.0.8 (libcomposefs soname 1.4.0) for image format versions 0 and 1, given
// the same tree and the same minimum and maximum versions: composefs header,
// EROFS superblock, compact and extended inodes in breadth-first order,
// inline tails with the reference padding rules, the shared extended
// attribute table, the xattr name filter, chunk-based external files, the 256
// synthetic root whiteouts, whiteout and trusted.overlay.* escaping, and the
// HAS_ACL header flag. Not produced (and not accepted by the reader): EROFS
// compression, multiple devices, long xattr name prefixes and the "V2"
// format of composefs-rs.
//
// The reader accepts what the writer (or mkcomposefs) produces, and turns it
// back into the tree it was made from, hiding composefs-internal data the
// same way composefs-info does: the synthetic root whiteouts, the root's
// trusted.overlay.opaque, metacopy and redirect attributes (they become
// [Inode.Digest] and [Inode.Payload]) and whiteout markers; escaped
// trusted.overlay.overlay.* attributes are unescaped.
//
// # Deviations from mkcomposefs
//
// Where mkcomposefs 1.0.8 silently accepts input it then writes incorrectly
// or crashes on, this package returns an error instead (device numbers that
// do not fit the 32-bit on-disk encoding, hard-linked whiteouts, which newer
// upstream rejects too) or writes a correct image (inline content of more
// than one block whose tail does not fit next to its inode, where
// mkcomposefs aborts). The dumpfile parser follows mkcomposefs's parsing
// rules, the default ones and, with [DumpfileOptions].Strict, those of
// CFS_PARSE_STRICT, and passes mkcomposefs's own test assets (see
// upstream_test.go). It is stricter where mkcomposefs would silently drop
// or misread data: numbers must be plain decimal (octal for MODE) within
// their field's range (mkcomposefs takes what strtoull makes of them and
// truncates; MODE alone keeps mkcomposefs's truncation to its low 16 bits,
// which upstream's assets rely on), paths must be absolute without empty,
// "." or ".." components or NUL characters (mkcomposefs cuts the name at
// the NUL), a file's DIGEST must be 64 hex digits (mkcomposefs stores
// undefined bytes for a short or missing one), and content, payloads and
// digests are only accepted on file types that can store them.
//
// [WriteImage] is a function rather than a Writer type: an image's layout
// depends on the whole tree, so nothing can be written before the tree is
// complete.
//
// # Security
//
// [NewReader] and [ReadDumpfile] are meant for untrusted input: every offset,
// length and count is checked against the input before use, recursion is
// bounded by [MaxDepth], memory use is bounded by the input size, and
// malformed input yields an error wrapping [ErrFormat] (images) or a
// [*DumpfileError] (dumpfiles), never a panic. A tree's paths can never
// escape its root: every path is cleaned lexically as if rooted at "/", and
// symbolic links are never followed when paths are resolved inside the tree
// (except by [Tree.FS], which resolves them within the tree).
package composefs
