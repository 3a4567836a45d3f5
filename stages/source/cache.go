package source

import (
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/imagepull"
)

// importKind is the record kind of import cache entries in the store.
const importKind = "source-import"

// storeCache is the [imagepull.Cache] of the source stage: layer blobs are
// store blobs named by their digest, and an import is a store record
// (kind importKind) whose "tree" output is the dumpfile and whose object
// set lists the objects.
type storeCache struct {
	st *artifacts.Store
}

var _ imagepull.Cache = storeCache{}

func (c storeCache) OpenLayer(d digest.Digest) (io.ReadCloser, bool, error) {
	desc := artifacts.Descriptor{Digest: artifacts.Digest(d.String())}
	if !c.st.Has(desc) {
		return nil, false, nil
	}
	f, err := c.st.OpenBlob(desc.Digest)
	if err != nil {
		return nil, false, err
	}
	return f, true, nil
}

func (c storeCache) NewLayer() (imagepull.LayerWriter, error) {
	w, err := c.st.NewBlobWriter(artifacts.MediaTypeOctet)
	if err != nil {
		return nil, err
	}
	return layerWriter{w}, nil
}

// layerWriter adapts an [artifacts.BlobWriter] to [imagepull.LayerWriter].
type layerWriter struct{ *artifacts.BlobWriter }

func (w layerWriter) Commit() error {
	_, err := w.BlobWriter.Commit()
	return err
}

func (c storeCache) Import(key string) ([]byte, []string, error) {
	rec, err := c.st.GetRecord(key)
	if err != nil {
		return nil, nil, err
	}
	if rec.Kind != importKind {
		return nil, nil, fmt.Errorf("record %s is a %s record", key, rec.Kind)
	}
	out, ok := rec.Outputs["tree"]
	if !ok {
		return nil, nil, fmt.Errorf("record %s has no tree", key)
	}
	if len(rec.ObjectSets) != 1 {
		return nil, nil, fmt.Errorf("record %s has %d object sets", key, len(rec.ObjectSets))
	}
	set, err := c.st.ReadBlob(rec.ObjectSets[0].Digest)
	if err != nil {
		return nil, nil, err
	}
	b, err := c.st.ReadBlob(out.Digest)
	if err != nil {
		return nil, nil, err
	}
	if artifacts.DigestBytes(b) != out.Digest {
		return nil, nil, fmt.Errorf("cached tree %s is corrupt", out.Digest.Short())
	}
	return b, strings.Fields(string(set)), nil
}

func (c storeCache) PutImport(key string, dumpfile []byte, objects []string, layers []imagepull.Layer) error {
	d, err := c.st.PutBytes(artifacts.MediaTypeDumpfile, dumpfile)
	if err != nil {
		return err
	}
	var set []byte
	for _, h := range objects {
		set = append(set, h...)
		set = append(set, '\n')
	}
	sd, err := c.st.PutBytes("text/plain", set)
	if err != nil {
		return err
	}
	rec := &artifacts.Record{
		Key: key, Kind: importKind, Version: imagepull.ImportVersion, Config: []byte("null"),
		Outputs:    map[string]artifacts.Output{"tree": {Descriptor: d}},
		ObjectSets: []artifacts.Descriptor{sd},
	}
	for i, l := range layers {
		if l.Size < 0 {
			continue
		}
		ld := artifacts.Descriptor{Digest: artifacts.Digest(l.Digest.String()), Size: l.Size, MediaType: artifacts.MediaTypeOctet}
		if c.st.Has(ld) {
			rec.Outputs[fmt.Sprintf("layer-%d", i+1)] = artifacts.Output{Descriptor: ld}
		}
	}
	return c.st.PutRecord(rec)
}
