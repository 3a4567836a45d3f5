package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

func newCacheCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "cache",
		Short: "Inspect and maintain the artifact cache",
		Long: `The cache (--cache-dir, $CFS_CACHE_DIR, default $XDG_CACHE_HOME/cfs-compose)
holds content-addressed blobs, stage records and the composefs object store.`,
	}
	c.AddCommand(newCacheLsCmd(g), newCacheGCCmd(g), newCacheVerifyCmd(g))
	return c
}

func newCacheLsCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "ls",
		Short: "List cache entries (stage records) with sizes and last use",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return usageError{fmt.Errorf("invalid --format %q (want text or json)", format)}
			}
			st, err := g.openStore(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer st.Close()
			ents, err := st.List()
			if err != nil {
				return err
			}
			if format == "json" {
				if ents == nil {
					ents = []artifacts.Entry{}
				}
				return writeJSON(g.stdout, ents)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tKIND\tSIZE\tLAST USED")
			var total int64
			for _, e := range ents {
				total += e.Size
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Key[:16], e.Kind, humanSize(e.Size), e.LastUsed.Local().Format(time.DateTime))
			}
			tw.Flush()
			fmt.Fprintf(g.stdout, "%d entries, %s\n", len(ents), humanSize(total))
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return c
}

func newCacheGCCmd(g *globals) *cobra.Command {
	var keep int
	var maxSize string
	var dry bool
	c := &cobra.Command{
		Use:   "gc",
		Short: "Remove cache entries not used by recent composes, or beyond a size",
		Long: `gc keeps the entries used by the --keep most recent composes (default 3)
and, with --max-size, removes least-recently-used entries until the cache
fits. Blobs, trees and composefs objects no remaining entry references are
deleted. gc waits for running builds to finish.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var size int64
			if maxSize != "" {
				var err error
				if size, err = manifest.ParseSize(maxSize); err != nil {
					return usageError{fmt.Errorf("invalid --max-size: %w", err)}
				}
			}
			if keep < 0 {
				return usageError{fmt.Errorf("invalid --keep %d", keep)}
			}
			st, err := g.openStore(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := st.GC(artifacts.GCOptions{Keep: keep, MaxSize: size, DryRun: dry})
			if err != nil {
				return err
			}
			verb := "Removed"
			if dry {
				verb = "Would remove"
			}
			fmt.Fprintf(g.stdout, "%s %d entries, %d blobs, %d trees, %d objects (%s)\n", verb, res.Records, res.Blobs, res.Trees, res.Objects, humanSize(res.Bytes))
			return nil
		},
	}
	c.Flags().IntVar(&keep, "keep", 3, "keep the entries of this many most recent composes (0: keep all)")
	c.Flags().StringVar(&maxSize, "max-size", "", "remove least-recently-used entries until the cache is this small (e.g. 20GiB)")
	c.Flags().BoolVar(&dry, "dry-run", false, "report what would be removed")
	return c
}

func newCacheVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Re-hash every blob, tree and composefs object and check every record",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.openStore(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := st.Verify(objectVerifier)
			if err != nil {
				return err
			}
			for _, p := range res.Problems {
				fmt.Fprintf(g.stdout, "BAD  %s: %s\n", p.Path, p.Reason)
			}
			fmt.Fprintf(g.stdout, "Checked %d blobs, %d trees, %d records, %d objects: %d problems\n", res.Blobs, res.Trees, res.Records, res.Objects, len(res.Problems))
			if len(res.Problems) > 0 {
				return errReported
			}
			return nil
		},
	}
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
