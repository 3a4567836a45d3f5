// Package ostree writes and reads ostree repositories in "bare" mode, the
// mode of a deployed system's /ostree/repo, byte-exact with what ostree
// 2025.2 (`ostree init --mode=bare` and `ostree commit`) produces.
//
// The package has four parts around one object model ([FileHeader],
// [DirMeta], [DirTree], [Commit], named by [Checksum]):
//
//   - The object formats: GVariant serialization in normal form of the
//     four object types (MarshalBinary, [ParseDirTree] and friends) and
//     commit metadata values ([Variant], [MetaEntry]); content checksums
//     ([FileChecksum]).
//   - [Writer]: writes a tree (the composefs model, [composefs.Tree]) as
//     content, dirtree and dirmeta objects, then commits and refs, into a
//     repository directory it creates like `ostree init --mode=bare`.
//   - [Reader]: loads refs and objects from a repository (an fs.FS), walks
//     trees and verifies every object like `ostree fsck`.
//   - [Reader.ComposefsTree] and [Reader.WriteComposefs]: the composefs
//     image ostree builds for a commit (a deployment's .ostree.cfs).
//
// # Format coverage
//
// Objects: uid, gid and mode are stored big-endian, the commit timestamp as
// a big-endian 64-bit number; every other GVariant number is
// little-endian (the only byte order ostree is used with). Extended
// attribute names carry their terminating NUL byte and are sorted by
// name; dirtree entries are sorted by name in byte order, files and
// subdirectories in two lists. A content object's checksum is the SHA-256
// of its header variant "(uuuusa(ayay))" (owner, mode, rdev 0, symlink
// target, attributes) prefixed with its 32-bit big-endian size and four
// zero bytes, followed by the file content; a metadata object's checksum
// is the SHA-256 of its serialization.
//
// Supported: regular files, symbolic links and directories, with any
// owner, permission bits (set-id and sticky included) and extended
// attributes; hard links (they share a content object); commit metadata
// of types s, ay, u, t, b, as and nested a{sv} (and reading of any
// GVariant type except maybe types); parent commits; refs under
// refs/heads. What `ostree commit --tree=dir=DIR --branch=REF` adds by
// default is reproduced by giving [RefBinding](REF) as the last metadata
// entry.
//
// Not supported: other repository modes (archive, bare-user,
// bare-user-only, bare-split-xattrs), devices, FIFOs and sockets (ostree
// rejects them too), detached metadata, signatures, summary files,
// collection refs, remotes, static deltas, commit partial/tombstone
// markers, and reading loose objects of other modes. Extended attributes
// with an empty value are dropped, as ostree drops them when it reads
// files; names must be valid UTF-8 (GVariant strings must be).
//
// Bare repositories hold real owners, set-id bits and security.*
// attributes, so the [Writer] must run as root (or with CAP_CHOWN,
// CAP_FOWNER and CAP_SYS_ADMIN for trusted.* attributes).
//
// # Security
//
// The object parsers ([ParseCommit], [ParseDirTree], [ParseDirMeta],
// [ParseFileHeader]) and the [Reader] are meant for untrusted input: every
// offset and length is checked before use, only GVariant normal form is
// accepted (so each value has exactly one encoding), nesting is bounded
// (128 levels of GVariant containers, [MaxWalkDepth] directories),
// metadata objects are limited to [MaxMetadataSize] bytes and checked
// against their checksum before they are parsed, and malformed input
// yields an error wrapping [ErrFormat] or [ErrChecksum], never a panic.
// Dirtree entry names are validated (no "/", ".", "..", NUL or empty
// name), so paths built from them stay inside the tree. Content objects
// are only checked by [Reader.Verify]; [Reader.OpenFile] returns object
// content unverified. [Reader.Walk] visits every path, and a hostile
// repository can reuse dirtrees to make the number of paths exponential
// in its size; [Reader.Verify] visits each object once. [OpenDir] reads
// through an os.Root, so symbolic links planted in a repository cannot
// make it read files outside the repository directory; symbolic-link
// content objects are never opened, only read with readlink.
package ostree
