// Package artifacts owns every on-disk layout of cfs-compose: the
// content-addressed artifact store (the cache), and the compose output
// directory with its productmd metadata. Stages never build paths
// themselves; they ask a [Store] for writers and readers, and the pipeline
// asks a [Compose] to publish what the stages produced.
//
// # Store layout
//
//	ROOT/
//	  blobs/sha256/<hex>          immutable blobs, named by their sha256 (mode 0444)
//	  trees/sha256/<hex>/         immutable directory trees, named by the digest of their listing
//	  records/<key[:2]>/<key>.json stage records: cache key -> outputs (mtime = last use)
//	  composes/<id>.json          one line per finished compose, for gc --keep
//	  composefs/objects/XX/…      composefs object store (fs-verity named; see internal/objstore)
//	  locks/                      advisory lock files (flock)
//	  tmp/<session>/              temporary files of running processes
//
// Every entry is written under tmp/ and renamed into place, so a crash at
// any moment leaves either the old state or the complete new entry, never a
// partial one. Stale tmp/ sessions are removed by the next process that
// opens the store. Concurrent processes share a store safely: blob and tree
// writes are idempotent renames, stage runs are serialized per cache key by
// an exclusive file lock, and gc takes the store-wide lock exclusively
// while builds hold it shared.
package artifacts
