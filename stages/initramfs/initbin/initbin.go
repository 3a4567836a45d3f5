// Package initbin gives the initramfs stage the static cfs-init binaries
// (the builtin initramfs /init, built from cmd/cfs-init by `make
// initbins`), embedded at build time.
package initbin

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
)

// files holds whatever `make initbins` left in this directory (and the
// README, which keeps the pattern matching in a fresh checkout).
//
//go:embed *
var files embed.FS

// ErrNotBuilt means the binary was built without the init binaries.
var ErrNotBuilt = errors.New("initbin: built without the init binaries; run make initbins")

// Binary returns the cfs-init executable for goarch ("amd64" or "arm64").
func Binary(goarch string) ([]byte, error) {
	switch goarch {
	case "amd64", "arm64":
	default:
		return nil, fmt.Errorf("initbin: no cfs-init for architecture %q (want amd64 or arm64)", goarch)
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
