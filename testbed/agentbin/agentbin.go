// Package agentbin gives the boot test the static testbed agent
// (testbed/agent, built by `make initbins`), embedded at build time, to
// deliver at boot into images whose init is systemd.
package agentbin

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// files holds whatever `make initbins` left in this directory (and the
// README, which keeps the pattern matching in a fresh checkout).
//
//go:embed *
var files embed.FS

// ErrNotBuilt means the binary was built without the agent binaries.
var ErrNotBuilt = errors.New("agentbin: built without the agent binaries; run make initbins")

// Binary returns the agent executable for an architecture of
// internal/arch ("x86_64" or "aarch64", or its GOARCH).
func Binary(name string) ([]byte, error) {
	a, err := arch.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("agentbin: %w", err)
	}
	b, err := files.ReadFile("cfs-agent-" + a.GOARCH)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (cfs-agent-%s is missing)", ErrNotBuilt, a.GOARCH)
	}
	if err != nil {
		return nil, fmt.Errorf("agentbin: %w", err)
	}
	return b, nil
}
