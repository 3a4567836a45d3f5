package imagepull

import (
	"io"

	"github.com/opencontainers/go-digest"
)

// Cache keeps what a pull fetched and built, for the next pull: layer
// blobs of remote images by digest, and whole imports by their layers.
// Package imagepull does not know where the cache lives; the source stage
// implements it over the artifact store. A nil Cache caches nothing.
type Cache interface {
	// OpenLayer returns the cached blob with the sha256 digest d, or ok
	// false when there is none. [Image.OpenLayer] checks what it reads
	// against d.
	OpenLayer(d digest.Digest) (r io.ReadCloser, ok bool, err error)
	// NewLayer returns a writer for a layer blob being fetched. The blob
	// is committed only after its digest and size were verified.
	NewLayer() (LayerWriter, error)
	// Import returns the import cached under key: the tree as a composefs
	// dumpfile and the hex fs-verity digests of its objects. Any error
	// (a miss included) makes [Import] read the layers.
	Import(key string) (dumpfile []byte, objects []string, err error)
	// PutImport records an import under key. layers are the image's
	// layers, in order, when they are remote: the entry should keep their
	// blobs alive in the cache (they may be absent, and a size of -1 means
	// unknown).
	PutImport(key string, dumpfile []byte, objects []string, layers []Layer) error
}

// LayerWriter receives a layer blob as it is fetched.
type LayerWriter interface {
	io.Writer
	// Commit stores the blob; Abort discards it. Abort after Commit is a
	// no-op.
	Commit() error
	Abort()
}
