package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

type fmtOptions struct {
	check bool
	diff  bool
}

func newFmtCmd(g *globals) *cobra.Command {
	o := &fmtOptions{}
	cmd := &cobra.Command{
		Use:   "fmt [-check] [-diff] [PATH...]",
		Short: "Format manifests in the canonical HCL layout",
		Long: `fmt rewrites manifest files in the canonical HCL layout (aligned '=',
two-space indentation; comments are kept) and prints the name of each file
it changed. PATH is a file or a directory (its *.hcl files); the default is
the manifests directory.

-check changes nothing: it prints the files that are not formatted and exits
1 if there are any. -diff prints what would change (or changed) as a
unified diff. A file with syntax errors is reported and left alone.`,
		Args: rangeArgs(0, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{g.manifests}
			}
			files, err := expandPaths(args)
			if err != nil {
				return err
			}
			return runFmt(g, o, files)
		},
	}
	cmd.Flags().BoolVar(&o.check, "check", false, "exit 1 if a file is not formatted; change nothing")
	cmd.Flags().BoolVar(&o.diff, "diff", false, "print the changes as a unified diff")
	return cmd
}

// expandPaths turns files and directories into a sorted file list.
func expandPaths(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("fmt: %w", err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(p, "*.hcl"))
		if err != nil {
			return nil, fmt.Errorf("fmt: listing %s: %w", p, err)
		}
		sort.Strings(matches)
		files = append(files, matches...)
	}
	return files, nil
}

func runFmt(g *globals, o *fmtOptions, files []string) error {
	failed, unformatted := false, false
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("fmt: %w", err)
		}
		out, diags := manifest.Format(src, name)
		if diags.HasErrors() {
			if err := g.printDiags(diags, map[string][]byte{name: src}); err != nil {
				return err
			}
			failed = true
			continue
		}
		if bytes.Equal(src, out) {
			continue
		}
		unformatted = true
		fmt.Fprintln(g.stdout, name)
		if o.diff {
			d, err := unifiedDiff(strings.TrimPrefix(name, "./"), src, out)
			if err != nil {
				return err
			}
			fmt.Fprint(g.stdout, d)
		}
		if !o.check {
			// Replace the file keeping its permission bits.
			st, err := os.Stat(name)
			if err != nil {
				return err
			}
			if err := atomicfile.WriteFile(name, out, st.Mode().Perm()); err != nil {
				return err
			}
		}
	}
	if failed || (o.check && unformatted) {
		return errReported
	}
	return nil
}
