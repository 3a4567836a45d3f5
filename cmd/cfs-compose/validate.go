package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

type validateOptions struct {
	format string
}

func newValidateCmd(g *globals) *cobra.Command {
	o := &validateOptions{}
	cmd := &cobra.Command{
		Use:   "validate [MANIFESTS_DIR]",
		Short: "Check the manifests and report every problem",
		Long: `validate loads every *.hcl file in the manifests directory, evaluates
variables and locals, resolves every variant on every arch and runs the
semantic checks. It reports all problems at once, each with file:line:col.

--format=json prints {valid, error_count, warning_count, diagnostics[]} with
file, range, severity, summary and detail for editors and CI.
Exit status: 0 valid (warnings allowed), 1 errors, 2 usage.`,
		Args: manifestsArg(g),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(o.format); err != nil {
				return err
			}
			m, diags := g.loadManifests(cmd)
			if o.format == "json" {
				if err := writeJSON(g.stdout, toJSONReport(diags)); err != nil {
					return err
				}
			} else if err := g.printDiags(diags, nil); err != nil {
				return err
			}
			if diags.HasErrors() {
				return errReported
			}
			if o.format == "text" {
				builds := 0
				for _, v := range m.Variants() {
					builds += len(m.Arches(v))
				}
				warnings := len(diags)
				nf, nv := len(m.Files()), len(m.Variants())
				_, err := fmt.Fprintf(g.stdout, "valid: %d %s, %d %s (%s), %d %s, %d %s\n",
					nf, plural(nf, "file", "files"), nv, plural(nv, "variant", "variants"), strings.Join(m.Variants(), ", "),
					builds, plural(builds, "build", "builds"), warnings, plural(warnings, "warning", "warnings"))
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.format, "format", "text", "output format: text or json")
	return cmd
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
