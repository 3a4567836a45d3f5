// Package source is the first pipeline stage: it pulls the bootable
// container image a variant is built from, streams its layers into a
// composefs tree and object store (no unpacked root filesystem on disk),
// analyses it as a bootable container and lints it.
//
// The parts follow the stage shape of the repository:
//
//   - [Config] (config.go): the resolved, JSON-serializable stage config,
//     with [Config.CacheKey] keeping machine-local paths out of cache keys.
//   - [Stage.Plan] / [Resolve] (plan.go): pins the image reference to its
//     manifest digest (a network look-up for docker://, refused offline
//     unless the manifest pins a digest), fingerprints the signature policy
//     and collects the settings lints need.
//   - [Stage.Run] (run.go): [imagepull.Pull] (open, pick the arch
//     instance, enforce the policy, read the config, import the layers),
//     [Analyze], [RunLints], and the outputs "tree" (dumpfile), "analysis"
//     and "lints" (JSON) plus the object set and compose.json facts.
//
// Pulling, references and the signature policy are package
// [github.com/cfs-compose/cfs-compose/internal/imagepull], which the CLI
// calls too; this stage gives it a cache in the artifact store (cache.go):
// layer blobs of remote images by digest, and whole imports by their layer
// digests, so a second import reads no layer.
//
// The layer semantics live in internal/ocilayer; see docs/source-stage.md
// for the user-facing reference.
package source
