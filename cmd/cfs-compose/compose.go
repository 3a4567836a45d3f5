package main

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
)

func newComposeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "compose",
		Short: "Work on composes as a whole (merge compose units)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("compose: name a subcommand (merge)")}
		},
	}
	c.AddCommand(newComposeMergeCmd(g))
	return c
}

func newComposeMergeCmd(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "merge PARTIAL... --out DIR",
		Short: "Merge compose units into the compose",
		Long: `merge combines compose units - partial composes that ` + "`build --partial`" + ` wrote
for some targets each, on one machine or many (docs/scale-out.md) - into
one compose under --out: the published files and logs of every unit, and
SHA256SUMS (signed as build signs it), metadata/composeinfo.json,
metadata/images.json, compose.json and STATUS made anew. The result is the
compose one ` + "`build`" + ` of all the units' targets with the same --compose-id
writes, byte for byte, whatever the order of the units - given the same
stage results: compose.json records for each stage whether its compose ran
it or took it from a cache, so a unit that built a stage and a build that
fetched it differ there (docs/scale-out.md).

The units must come from these manifests (-m) with the same variables,
tool, compose ID and stage versions, and must not share a target; every
checksummed file must match its unit's compose.json. A unit that does not
is refused with an error naming it, and nothing is written.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("compose merge: name the compose units to merge")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageError{errors.New("compose merge: --out is required")}
			}
			return runMerge(cmd, g, args, out)
		},
	}
	c.Flags().StringVar(&out, "out", "", "directory to write the merged compose directory into")
	return c
}

func runMerge(cmd *cobra.Command, g *globals, parts []string, out string) error {
	m, err := g.manifestSet(cmd)
	if err != nil {
		return err
	}
	// Signing keys of the units' targets, loaded (and checked) before
	// anything is written, as build does.
	var variants, arches []string
	for _, p := range parts {
		rec, err := artifacts.LoadComposeRecord(p)
		if err != nil {
			return &pipeline.MergeError{Part: p, Err: err}
		}
		for _, t := range rec.Targets {
			if !slices.Contains(variants, t.Variant) {
				variants = append(variants, t.Variant)
			}
			if !slices.Contains(arches, t.Arch) {
				arches = append(arches, t.Arch)
			}
		}
	}
	keys, err := g.loadBuildKeys(m, variants, arches)
	if err != nil {
		return err
	}
	rec, err := pipeline.Merge(cmd.Context(), m, g.stages(), parts, &pipeline.MergeOptions{
		Out: out, ManifestFiles: m.Files(),
		Finalize: func(ctx context.Context, c *artifacts.Compose, rec *artifacts.ComposeRecord) error {
			return g.finalizeCompose(ctx, c, rec, keys, g.log)
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "Compose %s: %s (merged %d units, %d targets)\n", rec.ID, rec.Status, len(parts), len(rec.Targets))
	fmt.Fprintln(g.stdout, rec.Dir)
	if rec.Status == artifacts.StatusDoomed {
		return errReported
	}
	return nil
}
