// Package imageinput reads the source stage's published outputs -- the
// image tree (a dumpfile whose file contents live in the shared object
// store) and the image analysis -- for the stages that consume them. It
// knows only the artifacts' documented formats (docs/stages.md), not the
// source stage's code.
package imageinput

import (
	"fmt"
	"io/fs"
	"os"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// Analysis decodes the source stage's image analysis.
func Analysis(rc *pipeline.RunContext) (*artifacts.ImageAnalysis, error) {
	return contract.SourceAnalysis.Get(rc)
}

// Tree parses the source stage's tree (a composefs dumpfile).
func Tree(rc *pipeline.RunContext) (*composefs.Tree, error) {
	p, err := contract.SourceTree.Path(rc)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("reading the image tree: %w", err)
	}
	defer f.Close()
	tree, err := composefs.ReadDumpfile(f)
	if err != nil {
		return nil, fmt.Errorf("reading the image tree: %w", err)
	}
	return tree, nil
}

// FS returns the image's file tree as an fs.FS, with file contents read
// from the shared object store. Call the returned function when done.
func FS(rc *pipeline.RunContext) (fs.FS, func(), error) {
	tree, err := Tree(rc)
	if err != nil {
		return nil, nil, err
	}
	objs, err := objstore.Open(rc.ObjectsDir())
	if err != nil {
		return nil, nil, err
	}
	return tree.FS(objs.FS()), func() { objs.Close() }, nil
}
