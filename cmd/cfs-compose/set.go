package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

func newSetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "set FILE ADDRESS=VALUE",
		Short: "Edit one manifest attribute in place",
		Long: `set changes one attribute of a manifest file, keeping its comments and
layout, and prints the change as a unified diff. VALUE is an HCL expression:
quote strings for the shell ('"12GiB"').

Addresses:
  variant.NAME.composefs.enabled        variant.NAME.arch.aarch64.uki.stub
  variant.NAME.disk.partition.esp.size  defaults.disk.size
  variable.NAME.default                 compose.release     locals.NAME

The whole manifest set (every *.hcl file in FILE's directory, with the -var,
-var-file and CFS_VAR_* values) is validated with the edit before anything
is written; an edit that makes it invalid is refused and FILE is left as it
was. The file is replaced atomically and keeps its permissions. Setting a
value back gives the original file byte for byte.

The composefs contingency switch is one command:
  cfs-compose set manifests/fedora-coreos.hcl variant.coreos.composefs.enabled=false`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSet(g, args[0], args[1])
		},
	}
}

func runSet(g *globals, file, assignment string) error {
	file = filepath.Clean(file)
	if !strings.HasSuffix(file, ".hcl") {
		return usageError{fmt.Errorf("set: %s is not a manifest file (*.hcl)", file)}
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("set: %w", err)
	}
	out, diags := manifest.Set(src, file, assignment)
	if diags.HasErrors() {
		if err := g.printDiags(diags, map[string][]byte{file: src}); err != nil {
			return err
		}
		return errReported
	}
	files, err := manifest.ReadDir(filepath.Dir(file))
	if err != nil {
		return fmt.Errorf("set: %w", err)
	}
	files[file] = out
	_, diags = manifest.Parse(files, g.manifestOptions())
	if err := g.printDiags(diags, map[string][]byte{file: out}); err != nil {
		return err
	}
	if diags.HasErrors() {
		fmt.Fprintf(g.stderr, "set: the edit makes the manifests invalid; %s is unchanged\n", file)
		return errReported
	}
	if bytes.Equal(src, out) {
		fmt.Fprintf(g.stdout, "%s: unchanged (already set)\n", file)
		return nil
	}
	d, err := unifiedDiff(file, src, out)
	if err != nil {
		return err
	}
	// Replace the file keeping its permission bits.
	st, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("set: %w", err)
	}
	if err := atomicfile.WriteFile(file, out, st.Mode().Perm()); err != nil {
		return fmt.Errorf("set: %w", err)
	}
	_, err = fmt.Fprint(g.stdout, d)
	return err
}
