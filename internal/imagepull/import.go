package imagepull

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"go.podman.io/image/v5/pkg/compression"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/internal/ocilayer"
)

// ImportVersion is part of the import cache key: bump it whenever the
// tree an import produces changes for the same layers. A [Cache] may
// record it with its entries.
const ImportVersion = "1"

// ImportOptions control [Import].
type ImportOptions struct {
	// Objects receives file content; nil means content is only hashed
	// (enough to compute a composefs digest).
	Objects *objstore.Store
	// Cache, when set, keeps layer blobs of remote images and whole
	// imports: a second import of the same layers reads no layer at all.
	// The objects of a cached import must be in Objects.
	Cache Cache
	// Progress, when set, is called with the compressed bytes read so far
	// and the total.
	Progress func(done, total int64)
}

// ImportResult is an imported image.
type ImportResult struct {
	Tree *composefs.Tree
	// Objects lists the hex fs-verity digests of every object the tree
	// references, sorted and unique.
	Objects []string
	// Cached reports an import cache hit: no layer was read.
	Cached bool
	// LayersFromCache counts layers read from the store's blob cache.
	LayersFromCache int
	// Stats are the layer counts (zero on a cache hit).
	Stats ocilayer.Stats
}

// Import streams the layers of img, base first, into a composefs tree:
// each layer is read once, checked against its digest, decompressed (gzip,
// zstd or none) and applied with OCI semantics, file content going
// straight into opts.Objects. Call [PolicySpec.Check] first (as [Pull] does). Nothing is
// unpacked to disk; on error nothing but content-addressed objects (and no
// cache entry) is left behind.
func Import(ctx context.Context, img *Image, opts *ImportOptions) (*ImportResult, error) {
	if opts == nil {
		opts = &ImportOptions{}
	}
	key := importKey(img)
	if opts.Cache != nil && opts.Objects != nil {
		if res, err := cachedImport(opts, key); err == nil {
			return res, nil
		}
	}
	var total, done int64
	for _, l := range img.Layers {
		if l.Size > 0 {
			total += l.Size
		}
	}
	tree := composefs.NewTree()
	var objs ocilayer.ObjectStore
	if opts.Objects != nil {
		objs = opts.Objects
	}
	ap := ocilayer.NewApplier(tree, objs)
	// Hashing and writing objects overlaps with reading and decompressing;
	// object writes also wait on the filesystem, hence more than one
	// goroutine per CPU.
	ap.SetConcurrency(min(2*runtime.GOMAXPROCS(0), 8))
	defer ap.Close()
	res := &ImportResult{Tree: tree}
	for i := range img.Layers {
		n, fromCache, err := importLayer(ctx, img, i, ap, opts, func(n int64) {
			if opts.Progress != nil {
				opts.Progress(done+n, total)
			}
		})
		if err != nil {
			return nil, err
		}
		done += n
		if fromCache {
			res.LayersFromCache++
		}
	}
	if err := ap.Close(); err != nil {
		return nil, err
	}
	ocilayer.SetDirLinks(tree)
	res.Stats = ap.Stats()
	res.Objects = treeObjects(tree)
	if opts.Cache != nil && opts.Objects != nil {
		if err := storeImport(opts.Cache, key, img, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// importLayer applies layer i and returns the compressed bytes read.
func importLayer(ctx context.Context, img *Image, i int, ap *ocilayer.Applier, opts *ImportOptions, progress func(int64)) (int64, bool, error) {
	l := img.Layers[i]
	what := fmt.Sprintf("layer %d (%s) of %s", i+1, l.Digest, img.Name())
	if strings.Contains(l.MediaType, "encrypted") {
		return 0, false, fmt.Errorf("%s: encrypted layers (%s) are not supported", what, l.MediaType)
	}
	lr, cached, err := img.OpenLayer(ctx, i, opts.Cache)
	if err != nil {
		return 0, false, err
	}
	defer lr.Close()
	cr := &countingReader{ctx: ctx, r: lr, progress: progress}
	dec, _, err := compression.AutoDecompress(cr)
	if err != nil {
		return cr.n, cached, fmt.Errorf("%s: %w", what, errors.Join(drain(lr), err))
	}
	aerr := ap.Apply(dec)
	if aerr == nil {
		// Read what follows the end-of-archive marker, so that the
		// decompressor and the digest check see the whole blob.
		// (Read only: pgzip's WriteTo panics after a partial Read.)
		_, aerr = io.Copy(io.Discard, struct{ io.Reader }{dec})
	}
	dec.Close()
	if aerr != nil {
		// A corrupt or truncated blob is the root cause of most parse
		// errors: report the digest check if it fails.
		if derr := drain(lr); derr != nil && ctx.Err() == nil {
			return cr.n, cached, derr
		}
		if ctx.Err() != nil {
			return cr.n, cached, ctx.Err()
		}
		return cr.n, cached, fmt.Errorf("applying %s: %w", what, aerr)
	}
	if err := drain(lr); err != nil {
		return cr.n, cached, err
	}
	return cr.n, cached, nil
}

// drain reads a verified layer stream to its end and returns the
// verification error, if any.
func drain(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// countingReader counts bytes, reports progress and stops on cancellation.
type countingReader struct {
	ctx      context.Context
	r        io.Reader
	n        int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 && c.progress != nil {
		c.progress(c.n)
	}
	return n, err
}

// importKey is the import cache key: the layer digests in order. Layer
// digests are checked against the content, and the manifest that lists
// them is checked against its digest, so equal keys mean equal layers.
func importKey(img *Image) string {
	h := sha256.New()
	fmt.Fprintf(h, "cfs-compose source import v%s\n", ImportVersion)
	for _, l := range img.Layers {
		fmt.Fprintf(h, "layer %s\n", l.Digest)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cachedImport loads an earlier import of the same layers, if its tree
// and every object it references are still there.
func cachedImport(opts *ImportOptions, key string) (*ImportResult, error) {
	dump, objects, err := opts.Cache.Import(key)
	if err != nil {
		return nil, err
	}
	// Check the objects while the tree is parsed.
	checked := make(chan error, 1)
	go func() { checked <- checkObjects(opts.Objects, objects) }()
	tree, err := composefs.ReadDumpfile(bytes.NewReader(dump))
	if cerr := <-checked; err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return &ImportResult{Tree: tree, Objects: objects, Cached: true}, nil
}

// storeImport records an import in the cache.
func storeImport(c Cache, key string, img *Image, res *ImportResult) error {
	var dump bytes.Buffer
	if err := composefs.WriteDumpfile(&dump, res.Tree); err != nil {
		return fmt.Errorf("caching import of %s: %w", img.Name(), err)
	}
	// Keep the cached layer blobs of remote images alive with the entry.
	var layers []Layer
	if !img.Ref.Local() {
		layers = img.Layers
	}
	if err := c.PutImport(key, dump.Bytes(), res.Objects, layers); err != nil {
		return fmt.Errorf("caching import of %s: %w", img.Name(), err)
	}
	return nil
}

// checkObjects verifies that every object exists, listing each fan-out
// directory once instead of looking up every object.
func checkObjects(objs *objstore.Store, hexes []string) error {
	byDir := map[string][]string{}
	for _, h := range hexes {
		var d [fsverity.Size]byte
		if n, err := hex.Decode(d[:], []byte(h)); err != nil || n != len(d) {
			return fmt.Errorf("bad object digest %q", h)
		}
		dir, file := path.Split(objstore.Name(d))
		byDir[dir] = append(byDir[dir], file)
	}
	for dir, files := range byDir {
		f, err := os.Open(filepath.Join(objs.Root(), dir))
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		have := make(map[string]bool, len(names))
		for _, n := range names {
			have[n] = true
		}
		for _, file := range files {
			if !have[file] {
				return fmt.Errorf("object %s%s missing", dir, file)
			}
		}
	}
	return nil
}

// treeObjects returns the sorted, unique hex digests of the objects the
// tree references.
func treeObjects(t *composefs.Tree) []string {
	var out []string
	_ = t.Walk(func(_ string, ino *composefs.Inode, link bool) error {
		if !link && ino.Mode.IsRegular() && ino.Digest != nil {
			out = append(out, fsverity.Hex(*ino.Digest))
		}
		return nil
	})
	slices.Sort(out)
	return slices.Compact(out)
}
