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
//   - [Stage.Run] (run.go): [Pull] (open, pick the arch instance, enforce
//     the policy, read the config, [Import] the layers), [Analyze],
//     [RunLints], and the outputs "tree" (dumpfile), "analysis" and "lints"
//     (JSON) plus the object set and compose.json facts.
//
// Pulling uses go.podman.io/image/v5 with the docker, oci, oci-archive and
// dir transports only ([ParseReference]), the user's registries.conf,
// auth.json and mirrors, and containers-policy.json ([PolicySpec]). Layer
// blobs of remote images are cached in the artifact store by digest, and
// whole imports are cached by their layer digests, so a second import reads
// no layer. Failures are classified with [ErrUnreachable],
// [ErrUnknownImage], [ErrAuth], [ErrDigestMismatch], [ErrTruncated],
// [ErrNoInstance] and [ErrRejected], and name the image and the layer.
//
// The layer semantics live in internal/ocilayer; see docs/source-stage.md
// for the user-facing reference.
package source
