// Package regcache keeps cfs-compose stage cache entries in an OCI
// registry, so builders without a shared disk share stage results
// (pipeline.RemoteCache; docs/scale-out.md).
//
// One entry is one OCI artifact in the repository the cache reference
// names, tagged with the stage cache key (64 hex digits):
//
//	manifest (artifactType application/vnd.cfs-compose.stage.v1)
//	  config  the stage record (artifacts.Record, JSON)
//	  layers  every blob the record names (outputs, log, object sets),
//	          under its own sha256 digest, which the store uses too;
//	          one tar per directory tree output (entries as the tree
//	          digest covers them); one tar of the composefs objects the
//	          record's object sets list, each entry named by its
//	          fs-verity digest
//
// The registry protocol is oras-go's; credentials come the containers way
// (go.podman.io/image/v5/pkg/docker/config): from [Options.AuthFile] (the
// command sets it from $REGISTRY_AUTH_FILE, as podman and skopeo do), else
// ${XDG_RUNTIME_DIR}/containers/auth.json and the other containers auth
// files and credential helpers. Everything fetched is checked before the store records it: each
// blob against its digest, each tree against its tree digest, each object
// against its fs-verity name; an entry failing any check is refused.
package regcache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/types"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
)

// Media types of a cache entry.
const (
	ArtifactType    = "application/vnd.cfs-compose.stage.v1"
	RecordMediaType = "application/vnd.cfs-compose.stage-record.v1+json"
	BlobMediaType   = "application/vnd.cfs-compose.blob.v1"
	TreeMediaType   = "application/vnd.cfs-compose.tree.v1.tar"
	ObjectMediaType = "application/vnd.cfs-compose.objects.v1.tar"
	// TreeAnnotation on a tree layer names the tree digest it holds.
	TreeAnnotation = "dev.cfs-compose.tree.digest"
)

// Options configure a [Cache].
type Options struct {
	// AuthFile is the containers auth.json to read credentials from;
	// empty means the containers defaults
	// (${XDG_RUNTIME_DIR}/containers/auth.json, ...).
	AuthFile string
	// PlainHTTP talks plain HTTP to this registry (a registry on
	// localhost in tests); never set it for a registry across a network.
	PlainHTTP bool
	// Transport is the HTTP transport; nil means retry.DefaultClient's.
	Transport http.RoundTripper
}

// Stats counts what a Cache moved.
type Stats struct {
	Fetched, Pushed           int64 // entries
	BytesPulled, BytesPushed  int64 // blob and layer bytes (manifests excluded)
	Misses, Refused, Failures int64
}

// Cache is a stage cache in one registry repository. It implements
// pipeline.RemoteCache and is safe for concurrent use.
type Cache struct {
	ref  string
	repo *remote.Repository

	fetched, pushed, pulledB, pushedB, misses, refused, failures atomic.Int64
}

var _ pipeline.RemoteCache = (*Cache)(nil)

// New returns the cache in the repository ref (host[:port]/path, no tag
// or digest).
func New(ref string, opts Options) (*Cache, error) {
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return nil, fmt.Errorf("cache registry %q: %w", ref, err)
	}
	if repo.Reference.Reference != "" {
		return nil, fmt.Errorf("cache registry %q: name a repository, without a tag or digest (entries are tagged by cache key)", ref)
	}
	repo.PlainHTTP = opts.PlainHTTP
	sys := &types.SystemContext{AuthFilePath: opts.AuthFile}
	hc := retry.DefaultClient
	if opts.Transport != nil {
		hc = &http.Client{Transport: retry.NewTransport(opts.Transport)}
	}
	repo.Client = &auth.Client{
		Client: hc,
		Cache:  auth.NewCache(),
		Credential: func(_ context.Context, hostport string) (auth.Credential, error) {
			c, err := config.GetCredentials(sys, hostport)
			if err != nil {
				return auth.EmptyCredential, fmt.Errorf("credentials for %s: %w", hostport, err)
			}
			return auth.Credential{Username: c.Username, Password: c.Password, RefreshToken: c.IdentityToken}, nil
		},
	}
	return &Cache{ref: ref, repo: repo}, nil
}

// Ref returns the repository reference.
func (c *Cache) Ref() string { return c.ref }

// Stats returns the counters so far.
func (c *Cache) Stats() Stats {
	return Stats{
		Fetched: c.fetched.Load(), Pushed: c.pushed.Load(),
		BytesPulled: c.pulledB.Load(), BytesPushed: c.pushedB.Load(),
		Misses: c.misses.Load(), Refused: c.refused.Load(), Failures: c.failures.Load(),
	}
}

// ErrRefused marks an entry refused because its content does not match
// its digests.
var ErrRefused = errors.New("regcache: entry refused")

func validKey(key string) error {
	if len(key) != 64 || strings.Trim(key, "0123456789abcdef") != "" {
		return fmt.Errorf("regcache: bad cache key %q", key)
	}
	return nil
}

// Fetch implements pipeline.RemoteCache.
func (c *Cache) Fetch(ctx context.Context, st *artifacts.Store, key string) error {
	err := c.fetch(ctx, st, key)
	switch {
	case err == nil:
		c.fetched.Add(1)
	case errors.Is(err, pipeline.ErrRemoteMiss):
		c.misses.Add(1)
	case errors.Is(err, ErrRefused):
		c.refused.Add(1)
	default:
		c.failures.Add(1)
	}
	return err
}

func (c *Cache) fetch(ctx context.Context, st *artifacts.Store, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	mdesc, rc, err := c.repo.FetchReference(ctx, key)
	if errors.Is(err, errdef.ErrNotFound) {
		return fmt.Errorf("%s:%s: %w", c.ref, key, pipeline.ErrRemoteMiss)
	}
	if err != nil {
		return fmt.Errorf("fetching cache entry %s:%s: %w", c.ref, key, err)
	}
	mb, err := content.ReadAll(rc, mdesc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("cache entry %s:%s: manifest: %w: %w", c.ref, key, ErrRefused, err)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(mb, &man); err != nil {
		return fmt.Errorf("cache entry %s:%s: manifest: %w: %w", c.ref, key, ErrRefused, err)
	}
	if man.ArtifactType != ArtifactType || man.Config.MediaType != RecordMediaType {
		return fmt.Errorf("cache entry %s:%s: not a cfs-compose stage entry (artifact type %q): %w", c.ref, key, man.ArtifactType, ErrRefused)
	}
	rb, err := c.fetchAll(ctx, man.Config)
	if err != nil {
		return fmt.Errorf("cache entry %s:%s: record: %w", c.ref, key, err)
	}
	var rec artifacts.Record
	if err := json.Unmarshal(rb, &rec); err != nil {
		return fmt.Errorf("cache entry %s:%s: record: %w: %w", c.ref, key, ErrRefused, err)
	}
	if rec.Key != key {
		return fmt.Errorf("cache entry %s:%s: the record is for key %s: %w", c.ref, key, rec.Key, ErrRefused)
	}
	layers := map[digest.Digest]ocispec.Descriptor{}
	trees := map[string]ocispec.Descriptor{}
	var objLayer *ocispec.Descriptor
	for _, l := range man.Layers {
		switch l.MediaType {
		case BlobMediaType:
			layers[l.Digest] = l
		case TreeMediaType:
			trees[l.Annotations[TreeAnnotation]] = l
		case ObjectMediaType:
			objLayer = &l
		default:
			return fmt.Errorf("cache entry %s:%s: unknown layer type %q: %w", c.ref, key, l.MediaType, ErrRefused)
		}
	}
	for _, d := range rec.Digests() {
		if d.Tree {
			l, ok := trees[d.Digest.String()]
			if !ok {
				return fmt.Errorf("cache entry %s:%s: tree %s missing: %w", c.ref, key, d.Digest.Short(), ErrRefused)
			}
			if err := c.fetchTree(ctx, st, d, l); err != nil {
				return fmt.Errorf("cache entry %s:%s: %w", c.ref, key, err)
			}
			continue
		}
		l, ok := layers[digest.Digest(d.Digest)]
		if !ok || l.Size != d.Size {
			return fmt.Errorf("cache entry %s:%s: blob %s missing or of the wrong size: %w", c.ref, key, d.Digest.Short(), ErrRefused)
		}
		if err := c.fetchBlob(ctx, st, d, l); err != nil {
			return fmt.Errorf("cache entry %s:%s: %w", c.ref, key, err)
		}
	}
	want, err := objectList(st, &rec)
	if err != nil {
		return fmt.Errorf("cache entry %s:%s: %w", c.ref, key, err)
	}
	if len(want) > 0 {
		if objLayer == nil {
			return fmt.Errorf("cache entry %s:%s: composefs objects missing: %w", c.ref, key, ErrRefused)
		}
		if err := c.fetchObjects(ctx, st, want, *objLayer); err != nil {
			return fmt.Errorf("cache entry %s:%s: %w", c.ref, key, err)
		}
	}
	// Everything the record names is in the store and checked: record it.
	if err := st.PutRecord(&rec); err != nil {
		return fmt.Errorf("cache entry %s:%s: %w", c.ref, key, err)
	}
	return nil
}

// fetchAll reads a small blob, checking its digest.
func (c *Cache) fetchAll(ctx context.Context, d ocispec.Descriptor) ([]byte, error) {
	rc, err := c.repo.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := content.ReadAll(rc, d)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	c.pulledB.Add(int64(len(b)))
	return b, nil
}

// fetchBlob copies one blob into the store unless it is there; a blob
// whose content does not hash to its digest is discarded and refused.
func (c *Cache) fetchBlob(ctx context.Context, st *artifacts.Store, d artifacts.Descriptor, l ocispec.Descriptor) error {
	if st.Has(d) {
		return nil
	}
	rc, err := c.repo.Fetch(ctx, l)
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", d.Digest.Short(), err)
	}
	defer rc.Close()
	w, err := st.NewBlobWriter(d.MediaType)
	if err != nil {
		return err
	}
	defer w.Abort()
	w.Sparse() // registries keep no holes; the store does
	n, err := io.Copy(w, rc)
	c.pulledB.Add(n)
	if err != nil {
		return fmt.Errorf("fetching blob %s: %w", d.Digest.Short(), err)
	}
	got, err := w.Commit()
	if err != nil {
		return err
	}
	if got.Digest != d.Digest || got.Size != d.Size {
		// The store keeps content under its own digest, so what was
		// written is harmless; the entry is not used.
		return fmt.Errorf("blob %s: the registry sent %d bytes with digest %s: %w", d.Digest, got.Size, got.Digest, ErrRefused)
	}
	return nil
}

// Push implements pipeline.RemoteCache.
func (c *Cache) Push(ctx context.Context, st *artifacts.Store, rec *artifacts.Record) error {
	err := c.push(ctx, st, rec)
	if err != nil {
		c.failures.Add(1)
		return err
	}
	c.pushed.Add(1)
	return nil
}

func (c *Cache) push(ctx context.Context, st *artifacts.Store, rec *artifacts.Record) error {
	if err := validKey(rec.Key); err != nil {
		return err
	}
	var layers []ocispec.Descriptor
	seen := map[artifacts.Digest]bool{}
	for _, d := range rec.Digests() {
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		if d.Tree {
			l, err := c.pushTree(ctx, st, d)
			if err != nil {
				return fmt.Errorf("pushing cache entry %s: %w", rec.Key, err)
			}
			layers = append(layers, l)
			continue
		}
		l := ocispec.Descriptor{MediaType: BlobMediaType, Digest: digest.Digest(d.Digest), Size: d.Size}
		if err := c.pushFile(ctx, l, st.BlobPath(d.Digest)); err != nil {
			return fmt.Errorf("pushing cache entry %s: blob %s: %w", rec.Key, d.Digest.Short(), err)
		}
		layers = append(layers, l)
	}
	objs, err := objectList(st, rec)
	if err != nil {
		return fmt.Errorf("pushing cache entry %s: %w", rec.Key, err)
	}
	if len(objs) > 0 {
		l, err := c.pushObjects(ctx, st, objs)
		if err != nil {
			return fmt.Errorf("pushing cache entry %s: %w", rec.Key, err)
		}
		layers = append(layers, l)
	}
	// Layers in a fixed order, so one record always makes one manifest.
	slices.SortFunc(layers, func(a, b ocispec.Descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	rb, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("pushing cache entry %s: %w", rec.Key, err)
	}
	cfg := content.NewDescriptorFromBytes(RecordMediaType, rb)
	if err := c.pushBytes(ctx, cfg, rb); err != nil {
		return fmt.Errorf("pushing cache entry %s: record: %w", rec.Key, err)
	}
	mdesc, err := oras.PackManifest(ctx, c.repo, oras.PackManifestVersion1_1, ArtifactType, oras.PackManifestOptions{
		Layers: layers, ConfigDescriptor: &cfg,
		ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: "1970-01-01T00:00:00Z"},
	})
	if err != nil {
		return fmt.Errorf("pushing cache entry %s: manifest: %w", rec.Key, err)
	}
	if err := c.repo.Tag(ctx, mdesc, rec.Key); err != nil {
		return fmt.Errorf("pushing cache entry %s: tagging: %w", rec.Key, err)
	}
	return nil
}

func (c *Cache) pushBytes(ctx context.Context, d ocispec.Descriptor, b []byte) error {
	if ok, err := c.repo.Exists(ctx, d); err == nil && ok {
		return nil
	}
	err := c.repo.Push(ctx, d, bytes.NewReader(b))
	if err == nil {
		c.pushedB.Add(d.Size)
	} else if errors.Is(err, errdef.ErrAlreadyExists) {
		err = nil
	}
	return err
}
