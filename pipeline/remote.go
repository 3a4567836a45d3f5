package pipeline

import (
	"context"
	"errors"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// ErrRemoteMiss is what a [RemoteCache] returns from Fetch when it holds no
// entry for a key.
var ErrRemoteMiss = errors.New("pipeline: no remote cache entry")

// RemoteCache is a stage cache shared between machines (an OCI registry,
// internal/regcache), consulted after the local store: a key the store
// lacks is fetched from it into the store before the stage would run, and
// a stage that ran is pushed to it. The local store stays the only place
// stages read from; the remote only fills it.
type RemoteCache interface {
	// Fetch copies the entry for key (its record, blobs, trees and
	// composefs objects) into st, checking every digest on the way: an
	// entry whose content does not match its digests is refused (an
	// error, nothing of it recorded in st). It returns ErrRemoteMiss
	// when the remote holds no entry for the key.
	Fetch(ctx context.Context, st *artifacts.Store, key string) error
	// Push uploads rec and everything it references from st.
	Push(ctx context.Context, st *artifacts.Store, rec *artifacts.Record) error
}
