package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages"
)

// manifestSet loads the manifests and prints their diagnostics (warnings
// too); errors end the command with exit status 1.
func (g *globals) manifestSet(cmd *cobra.Command) (*manifest.Manifest, error) {
	m, diags := g.loadManifests(cmd)
	if err := g.printDiags(diags, nil); err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, errReported
	}
	return m, nil
}

// openStore opens the artifact cache: --cache-dir, $CFS_CACHE_DIR, or the
// default under $XDG_CACHE_HOME.
func (g *globals) openStore(ctx context.Context, exclusive bool) (*artifacts.Store, error) {
	dir := g.cacheDir
	if dir == "" {
		dir, _ = g.getenv("CFS_CACHE_DIR")
	}
	if dir == "" {
		var err error
		if dir, err = artifacts.DefaultDir(); err != nil {
			return nil, err
		}
	}
	return artifacts.Open(ctx, dir, exclusive)
}

// stages returns the stage table.
func (g *globals) stages() []pipeline.Stage { return stages.All() }

// objectVerifier names composefs objects by their fs-verity digest for
// `cache verify`.
func objectVerifier(r io.Reader) (string, error) {
	d, _, err := fsverity.SumReader(r)
	if err != nil {
		return "", err
	}
	return fsverity.Hex(d), nil
}
