package source

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"go.podman.io/image/v5/types"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/imagepull"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// run pulls the planned image, imports it into the object store,
// analyses and lints it, and writes the tree, analysis and lint outputs.
func (s *Stage) run(ctx context.Context, rc *pipeline.RunContext, c *Config) error {
	ref, err := imagepull.ParseReference(c.Pinned)
	if err != nil {
		return err
	}
	objs, err := objstore.Open(rc.ObjectsDir())
	if err != nil {
		return err
	}
	defer objs.Close()
	sys := &types.SystemContext{}
	if s.Sys != nil {
		cp := *s.Sys
		sys = &cp
	}
	sys.BigFilesTemporaryDir = rc.TempDir() // oci-archive: unpacks the archive there
	rc.Log.Info().Str("image", c.Pinned).Str("arch", c.Arch).Msg("pulling")
	p, err := imagepull.Pull(ctx, ref, &imagepull.PullOptions{
		Arch: c.Arch, Policy: c.Policy, Sys: sys, InstanceDigest: c.InstanceDigest,
		Import: imagepull.ImportOptions{Objects: objs, Cache: storeCache{rc.Store()}, Progress: rc.Progress},
	})
	if err != nil {
		return err
	}
	rc.Log.Info().Int("layers", len(p.Image.Layers)).Bool("import_cached", p.Cached).Int("layers_from_cache", p.LayersFromCache).
		Int("entries", p.Stats.Entries).Int64("bytes", p.Stats.Bytes).Int("objects", len(p.Objects)).Msg("imported")

	fsys := p.Tree.FS(objs.FS())
	an, err := Analyze(fsys, c.Arch, c.Kernel, p.Config.Config.Labels)
	if err != nil {
		return fmt.Errorf("analysing %s: %w", c.Image, err)
	}
	rep, err := RunLints(fsys, an, c.Lints)
	if err != nil {
		return err
	}
	for _, r := range rep.Results {
		ev := rc.Log.Warn()
		switch {
		case r.Skipped:
			ev = rc.Log.Info()
		case r.Severity == Fatal:
			ev = rc.Log.Error()
		}
		ev.Str("lint", r.Name).Str("severity", string(r.Severity)).Bool("skipped", r.Skipped).
			Strs("paths", r.Paths).Int("path_count", r.PathCount).Msg(r.Message)
	}
	if an.PrepareRoot.Override {
		rc.Log.Warn().Str("path", an.PrepareRoot.Path).Bool("composefs", c.Lints.Composefs).
			Msg("the manifest's composefs setting overrides the image's prepare-root.conf in the generated initramfs")
	}
	if f := rep.Failures(); len(f) > 0 {
		var msgs []string
		for _, r := range f {
			msgs = append(msgs, fmt.Sprintf("%s: %s (%s)", r.Name, r.Message, strings.Join(r.Paths, ", ")))
		}
		return fmt.Errorf("image %s fails %d lint(s) (skip with lints { skip = [...] }):\n  %s", c.Image, len(f), strings.Join(msgs, "\n  "))
	}

	w, err := contract.SourceTree.Create(rc, nil)
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := composefs.WriteDumpfile(w, p.Tree); err != nil {
		return err
	}
	if _, err := w.Commit(); err != nil {
		return err
	}
	if err := contract.SourceAnalysis.Set(rc, an, nil); err != nil {
		return err
	}
	lints, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := contract.SourceLints.Put(rc, append(lints, '\n'), nil); err != nil {
		return err
	}
	if err := rc.AddObjectSet(p.Objects); err != nil {
		return err
	}
	kver := ""
	if an.Kernel != nil {
		kver = an.Kernel.Version
	}
	for k, v := range map[string]any{
		"image":           c.Image,
		"pinned":          c.Pinned,
		"manifest_digest": c.ManifestDigest,
		"instance_digest": p.Image.InstanceDigest.String(),
		"config_digest":   p.Image.ConfigDigest.String(),
		"bootc":           an.Bootc,
		"kernel":          kver,
		"layers":          len(p.Image.Layers),
		"lints":           map[string]int{"fatal": rep.Fatal, "warning": rep.Warnings, "skipped": len(rep.Skipped)},
	} {
		if err := rc.SetMeta(k, v); err != nil {
			return err
		}
	}
	return nil
}
