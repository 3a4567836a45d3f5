// Package mkcomposefs builds a composefs image (and, for a directory or a
// container image, an object store of its file contents) from a source,
// the way mkcomposefs does: it is what `cfs-compose composefs create` runs,
// kept apart from the command so that the verb only parses flags and
// renders the result.
//
// A source is a directory (scanned with internal/composefs/dirscan), a
// dumpfile (mkcomposefs --from-file), or a container image reference
// (docker://, oci:, oci-archive:, dir:, pulled with internal/imagepull).
// Options follow mkcomposefs's flags and their semantics; in particular
// UseEpoch, like mkcomposefs --use-epoch, has no effect on a dumpfile,
// whose times are data (ZeroMtimes applies to every source).
package mkcomposefs

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/composefs/dirscan"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/imagepull"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
)

// Source is what an image is made from: exactly one of Dir, Dumpfile or
// Image.
type Source struct {
	// Dir is a directory tree.
	Dir string
	// Dumpfile is a composefs dumpfile; DumpfileName names it in errors.
	Dumpfile     io.Reader
	DumpfileName string
	// Strict parses the dumpfile with mkcomposefs's strict rules
	// (CFS_PARSE_STRICT).
	Strict bool
	// Image is a container image; Arch picks the instance of a
	// multi-arch image and Policy is its signature policy.
	Image  *imagepull.Reference
	Arch   string
	Policy imagepull.PolicySpec
}

// Options are mkcomposefs's options.
type Options struct {
	// MinVersion and MaxVersion bound the image format version.
	MinVersion, MaxVersion int
	// UseEpoch sets every mtime to 0 for directory and image sources
	// (mkcomposefs --use-epoch); ZeroMtimes does so for every source.
	UseEpoch, ZeroMtimes                bool
	SkipXattrs, UserXattrs, SkipDevices bool
	// Threads reads a directory's file contents with that many goroutines
	// (0: the number of CPUs).
	Threads int
	// Store, when set, receives the file contents of a directory or image
	// source (mkcomposefs --digest-store) and is synced before returning.
	Store *objstore.Store
}

// Result describes the image written.
type Result struct {
	Digest [32]byte // fs-verity digest of the image (the composefs digest)
	Size   int64
	// Pulled is set for an image source.
	Pulled *imagepull.Pulled
}

// Create builds the tree of src and writes its image to w.
func Create(ctx context.Context, src Source, w io.Writer, opts *Options) (*Result, error) {
	if opts == nil {
		opts = &Options{MaxVersion: composefs.MaxVersion}
	}
	if opts.SkipXattrs && opts.UserXattrs {
		return nil, errors.New("mkcomposefs: SkipXattrs and UserXattrs conflict")
	}
	tree, res, err := buildTree(ctx, src, opts)
	if err != nil {
		return nil, err
	}
	d := fsverity.New()
	if err := composefs.WriteImage(io.MultiWriter(w, d), tree, &composefs.WriteOptions{MinVersion: opts.MinVersion, MaxVersion: opts.MaxVersion}); err != nil {
		return nil, err
	}
	res.Digest = d.Sum()
	res.Size = d.Len()
	return res, nil
}

func buildTree(ctx context.Context, src Source, opts *Options) (*composefs.Tree, *Result, error) {
	res := &Result{}
	filter := composefs.Filter{SkipXattrs: opts.SkipXattrs, UserXattrs: opts.UserXattrs, SkipDevices: opts.SkipDevices,
		UseEpoch: opts.UseEpoch || opts.ZeroMtimes}
	switch {
	case src.Image != nil:
		ps := src.Policy
		pull := &imagepull.PullOptions{Arch: src.Arch, Policy: ps}
		if opts.Store != nil {
			pull.Import.Objects = opts.Store
		}
		p, err := imagepull.Pull(ctx, src.Image, pull)
		if err != nil {
			return nil, nil, err
		}
		res.Pulled = p
		if err := syncStore(opts.Store); err != nil {
			return nil, nil, err
		}
		p.Tree.Filter(filter)
		return p.Tree, res, nil
	case src.Dumpfile != nil:
		if opts.Store != nil {
			return nil, nil, errors.New("mkcomposefs: a dumpfile has no file contents for an object store")
		}
		tree, err := composefs.ReadDumpfileOptions(src.Dumpfile, &composefs.DumpfileOptions{Strict: src.Strict})
		var de *composefs.DumpfileError
		if errors.As(err, &de) {
			return nil, nil, fmt.Errorf("%s:%d:%d: %w", src.DumpfileName, de.Line, de.Column, de.Err)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading dumpfile %s: %w", src.DumpfileName, err)
		}
		// mkcomposefs --use-epoch leaves a dumpfile's times alone.
		filter.UseEpoch = opts.ZeroMtimes
		tree.Filter(filter)
		return tree, res, nil
	case src.Dir != "":
		dopts := &dirscan.Options{SkipXattrs: opts.SkipXattrs, UserXattrs: opts.UserXattrs, SkipDevices: opts.SkipDevices,
			UseEpoch: opts.UseEpoch || opts.ZeroMtimes, Threads: opts.Threads}
		if opts.Store != nil {
			dopts.Store = opts.Store
		}
		tree, err := dirscan.Scan(ctx, src.Dir, dopts)
		if err != nil {
			return nil, nil, err
		}
		if err := syncStore(opts.Store); err != nil {
			return nil, nil, err
		}
		return tree, res, nil
	}
	return nil, nil, errors.New("mkcomposefs: no source")
}

func syncStore(s *objstore.Store) error {
	if s == nil {
		return nil
	}
	return s.Sync()
}
