// Package manifest implements the cfs-compose manifest language: HCL files
// with variables, locals, functions, a compose block, a defaults block and
// one variant block per Fedora variant. It parses, evaluates and validates
// a manifest set (every error at once, with file:line:col diagnostics and
// "did you mean" hints) and resolves it into one [Config] per variant and
// architecture, with the provenance of every setting. It also formats
// manifests ([Format]) and edits one attribute in place ([Set]).
//
// The language is documented in docs/manifest-language.md. In short:
//
//   - [Parse] (or [Load] for a directory) takes all *.hcl files together.
//     Variables take their value from the default, then CFS_VAR_NAME, then
//     -var-file files, then -var options ([Options]).
//   - A Config is the defaults block, then `arch "A" { }` inside it, then
//     the variant block, then `arch "A" { }` inside the variant, merged
//     attribute by attribute; labeled blocks (partition "esp") merge by
//     label, never by position. Built-in defaults fill what is left, so no
//     field of a Config is implicit.
//   - Semantic checks (composefs on classic ostree, ostree-grub2, kdump,
//     root-level directories, fs-verity, signing keys, per-arch files, disk
//     layout, ...) run on every variant and arch free of other errors;
//     identical findings are reported once, listing what they affect.
//
// A [Manifest] is immutable and safe for concurrent use.
//
// # Security
//
// Manifests are configuration written by the release team, not untrusted
// input, but the loader is fuzzed and does not panic on any input. The
// file() function reads any regular file the process can read (at most
// 1 MiB); functions that build large values from small input (range,
// setproduct, indent) are left out.
package manifest
