// Package ocilayer applies OCI image layers to a composefs tree without
// unpacking them: each layer is an uncompressed tar stream read once, entry
// by entry; file content streams into a composefs object store (hashed
// while it is written) and metadata goes into a [composefs.Tree].
//
// # Layer semantics
//
// The semantics are those of the OCI image specification (image-layout
// "Applying Changesets") as implemented by umoci's layer unpacker for a
// plain directory, so that the tree equals what `mkcomposefs` produces when
// scanning the same image unpacked with umoci:
//
//   - Entries are applied in order; a later entry replaces an earlier one at
//     the same path, except that a directory over a directory only updates
//     the directory's metadata (mode, owner, mtime, extended attributes).
//   - Parent directories are resolved inside the tree, following symbolic
//     links as the kernel would with the tree as the root (".." and
//     absolute targets never leave it); missing parents are created with
//     mode 0755, owner 0:0 and the entry's mtime.
//   - "DIR/.wh.NAME" removes NAME from DIR, and "DIR/.wh..wh..opq" removes
//     every entry of DIR, except for paths the same layer itself created
//     (whatever order the entries come in). Whiteout entries never appear
//     in the tree, whatever their entry type (a directory named
//     ".wh..wh..opq" is the opaque marker too).
//   - No name in the tree starts with ".wh." (image-spec, "Whiteouts"). A
//     whiteout that names no entry ("DIR/.wh.", and "DIR/.wh.." or
//     "DIR/.wh...", which would remove DIR or its parent) is an error
//     wrapping [ErrWhiteout], as the specification asks and as
//     containers/storage's overlay driver fails on it. Entries below a
//     ".wh..wh." name (AUFS metadata such as ".wh..wh.plnk", or below a
//     directory named like the opaque marker) are skipped, as
//     containers/storage skips AUFS metadata; entries below any other
//     ".wh." name are an [ErrWhiteout] error.
//   - Hard links become independent copies of their target (nlink 1), as
//     in a directory scan by mkcomposefs, which does not detect hard
//     links. The target must exist and not be a directory.
//   - Regular files of at most [composefs.InlineThreshold] bytes are stored
//     inline in the tree; larger ones go to the object store and get its
//     digest and payload ([composefs.Inode.SetObject]). Symbolic links,
//     character and block devices (a 0:0 character device becomes an
//     overlay whiteout, as on disk), FIFOs, permission bits including
//     setuid, setgid and sticky, uid, gid, nanosecond mtimes and PAX
//     extended attributes ("SCHILY.xattr.NAME", including
//     security.capability and security.selinux) are kept. PAX global
//     headers are ignored.
//
// # Security
//
// Layers are untrusted input. Entry names are cleaned as if rooted at "/",
// so ".." components and absolute names cannot climb above the root, and
// symbolic links are resolved inside the tree; the only writes outside
// memory are content-addressed objects handed to the object store, never a
// path taken from the layer. Header sizes are bounded by archive/tar (1 MiB
// for PAX records and long names); names, symlink targets, extended
// attributes and device numbers are checked against the composefs limits.
// A malformed or inconsistent layer (a hard link to a missing target or a
// directory, a non-directory replacing the root, a file where a parent
// directory is needed, too many symbolic link hops, a truncated stream)
// yields an error naming the entry; the tree may then be partially
// updated and should be discarded.
package ocilayer
