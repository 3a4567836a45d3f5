// Package initbin gives the initramfs stage the static cfs-init binaries
// (the builtin initramfs /init, built from cmd/cfs-init by `make
// initbins`), embedded at build time.
package initbin

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// files holds whatever `make initbins` left in this directory (and the
// README, which keeps the pattern matching in a fresh checkout).
//
//go:embed *
var files embed.FS

// ErrNotBuilt means the binary was built without the init binaries.
var ErrNotBuilt = errors.New("initbin: built without the init binaries; run make initbins")

// Binary returns the cfs-init executable for goarch, the GOARCH of one of
// the architectures of internal/arch ("amd64" or "arm64").
func Binary(goarch string) ([]byte, error) {
	if a, err := arch.Lookup(goarch); err != nil || a.GOARCH != goarch {
		return nil, fmt.Errorf("initbin: no cfs-init for architecture %q (want %s)", goarch, strings.Join(goarchs(), " or "))
	}
	b, err := files.ReadFile("cfs-init-" + goarch)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (cfs-init-%s is missing)", ErrNotBuilt, goarch)
	}
	if err != nil {
		return nil, fmt.Errorf("initbin: %w", err)
	}
	return b, nil
}

func goarchs() []string {
	var names []string
	for _, a := range arch.All() {
		names = append(names, a.GOARCH)
	}
	return names
}
