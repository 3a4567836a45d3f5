// Package manifests holds the Fedora manifests cfs-compose ships: the
// variables, the common defaults, Silverblue, CoreOS, IoT and the offline
// testbed variant. They are embedded so tests and the CLI can use them
// without a checkout.
package manifests

import (
	"embed"
	"fmt"
	"io/fs"
	"path/filepath"
)

// FS holds the shipped *.hcl files at its root.
//
//go:embed *.hcl
var FS embed.FS

// Files returns the shipped manifests keyed by filepath.Join(dir, name), the
// form pipeline/manifest.Parse expects (dir is where relative paths in them
// are taken from, normally the repository's manifests directory).
func Files(dir string) (map[string][]byte, error) {
	names, err := fs.Glob(FS, "*.hcl")
	if err != nil {
		return nil, fmt.Errorf("listing embedded manifests: %w", err)
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := FS.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("reading embedded manifest %s: %w", n, err)
		}
		if dir != "" {
			n = filepath.Join(dir, n)
		}
		out[n] = b
	}
	return out, nil
}
