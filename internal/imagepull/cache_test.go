package imagepull

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cfs-compose/cfs-compose/internal/objstore"
)

// memCache is an in-memory [Cache] for tests.
type memCache struct {
	mu      sync.Mutex
	layers  map[digest.Digest][]byte
	imports map[string]memImport
}

type memImport struct {
	dump    []byte
	objects []string
}

var _ Cache = (*memCache)(nil)

func (c *memCache) has(d digest.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.layers[d]
	return ok
}

func (c *memCache) OpenLayer(d digest.Digest) (io.ReadCloser, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.layers[d]
	if !ok {
		return nil, false, nil
	}
	return io.NopCloser(bytes.NewReader(b)), true, nil
}

func (c *memCache) NewLayer() (LayerWriter, error) { return &memLayer{c: c}, nil }

type memLayer struct {
	bytes.Buffer
	c    *memCache
	done bool
}

func (w *memLayer) Commit() error {
	if w.done {
		return errors.New("committed twice")
	}
	w.done = true
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	w.c.layers[digest.FromBytes(w.Bytes())] = bytes.Clone(w.Bytes())
	return nil
}

func (w *memLayer) Abort() { w.done = true }

func (c *memCache) Import(key string) ([]byte, []string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.imports[key]
	if !ok {
		return nil, nil, errors.New("not cached")
	}
	return e.dump, e.objects, nil
}

func (c *memCache) PutImport(key string, dump []byte, objects []string, _ []Layer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.imports[key] = memImport{bytes.Clone(dump), objects}
	return nil
}

// openStore returns an empty cache and an object store in a temp dir.
func openStore(t testing.TB) (*memCache, *objstore.Store) {
	t.Helper()
	objs, err := objstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return &memCache{layers: map[digest.Digest][]byte{}, imports: map[string]memImport{}}, objs
}
