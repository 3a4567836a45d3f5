// Package manifest implements the cfs-compose manifest language: HCL files
// with variables, locals, functions, a defaults block and one variant block
// per Fedora variant. It parses, evaluates, validates (with file:line:col
// diagnostics) and resolves a manifest set into one [Config] per variant and
// architecture. It also formats and edits manifests in place.
package manifest
