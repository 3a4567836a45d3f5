// Package imagepull reads bootable container images into composefs trees:
// it parses image references ([ParseReference]: the docker, oci,
// oci-archive and dir transports; pinning to a manifest digest), opens an
// image and picks the instance for an architecture ([Open]), enforces the
// signature policy ([PolicySpec]: containers-policy.json and the signed_by
// shortcut), and streams the layers into a composefs tree and object store
// ([Import]) with no unpacked root filesystem on disk. [Pull] does all of
// it in order.
//
// It is the image library both the source stage (stages/source) and the
// CLI (cfs-compose composefs create IMAGE) call; the stage adds planning,
// analysis and lints. Pulling uses go.podman.io/image/v5, the user's
// registries.conf, auth.json and mirrors.
//
// What a pull fetched can be kept for the next one through a [Cache]: layer
// blobs of remote images by digest, and whole imports by their layer
// digests, so a second import reads no layer. This package does not know
// where the cache lives (the source stage keeps it in the artifact store),
// which keeps it below package artifacts.
//
// Failures are classified with [ErrUnreachable], [ErrUnknownImage],
// [ErrAuth], [ErrDigestMismatch], [ErrTruncated], [ErrNoInstance] and
// [ErrRejected], and name the image and the layer. The layer semantics
// live in internal/ocilayer.
//
// # Security
//
// Images are untrusted input: every blob is checked against its digest and
// size while it is read (a read must reach io.EOF before its content is
// trusted), metadata blobs are read with size limits, and the signature
// policy is enforced before the configuration or any layer is read.
package imagepull
