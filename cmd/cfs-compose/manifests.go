package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/manifests"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/source"
)

// manifestOptions turns the global flags and environment into loader
// options.
func (g *globals) manifestOptions() *manifest.Options {
	return &manifest.Options{Vars: g.vars, VarFiles: g.varFiles, Environ: g.environ,
		KnownChecks: checkNames(), KnownLints: source.LintNames()}
}

// loadManifests loads the manifest set named by --manifests. When the flag
// was not given and ./manifests does not exist, the manifests built into
// the binary are used (relative paths in them are then taken against
// ./manifests).
func (g *globals) loadManifests(cmd *cobra.Command) (*manifest.Manifest, hcl.Diagnostics) {
	files, err := manifest.ReadDir(g.manifests)
	if err != nil && !cmd.Flags().Changed("manifests") && errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Stat(g.manifests); errors.Is(statErr, fs.ErrNotExist) {
			g.log.Info().Msg("no manifests directory here; using the manifests built into cfs-compose")
			files, err = manifests.Files(filepath.Clean(g.manifests))
		}
	}
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read manifests", Detail: err.Error()}}
	}
	return manifest.ParseContext(cmd.Context(), files, g.manifestOptions())
}
