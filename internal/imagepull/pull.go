package imagepull

import (
	"context"
	"fmt"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
)

// PullOptions control [Pull].
type PullOptions struct {
	// Arch is the architecture to pick (any spelling arch.Lookup knows).
	Arch string
	// Policy is the signature policy to enforce.
	Policy PolicySpec
	// Sys is the containers-image system context; nil means the defaults.
	Sys *types.SystemContext
	// Import controls where content goes and what is cached.
	Import ImportOptions
	// InstanceDigest, when set, is the arch instance the image must have.
	InstanceDigest string
}

// Pulled is a pulled and imported image.
type Pulled struct {
	Image  *Image // closed
	Config *imgspecv1.Image
	*ImportResult
}

// Pull opens ref, picks the arch's instance, enforces the signature
// policy, reads the configuration and imports the layers (see [Import]).
func Pull(ctx context.Context, ref *Reference, opts *PullOptions) (*Pulled, error) {
	img, err := Open(ctx, ref, opts.Arch, opts.Sys)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	if opts.InstanceDigest != "" && img.InstanceDigest.String() != opts.InstanceDigest {
		return nil, fmt.Errorf("%w: %s: the %s image is now %s, planned %s", ErrDigestMismatch, img.Name(), opts.Arch, img.InstanceDigest, opts.InstanceDigest)
	}
	if err := opts.Policy.Check(ctx, img); err != nil {
		return nil, err
	}
	cfg, err := img.ReadConfig(ctx)
	if err != nil {
		return nil, err
	}
	res, err := Import(ctx, img, &opts.Import)
	if err != nil {
		return nil, err
	}
	return &Pulled{Image: img, Config: cfg, ImportResult: res}, nil
}
