package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

type explainOptions struct {
	arch   string
	format string
}

// explainJSON is one variant+arch in `explain --format=json`.
type explainJSON struct {
	Variant  string             `json:"variant"`
	Arch     string             `json:"arch"`
	Config   *manifest.Config   `json:"config"`
	Settings []manifest.Setting `json:"settings"`
}

func newExplainCmd(g *globals) *cobra.Command {
	o := &explainOptions{}
	cmd := &cobra.Command{
		Use:   "explain VARIANT [--arch A] [--format=text|json]",
		Short: "Print a variant's effective configuration and where each value comes from",
		Long: `explain prints the fully resolved configuration of a variant (every arch,
or only --arch) with, for each setting, the file:line:col and block it came
from: the built-in default, the defaults block, the variant, an arch block,
and the variables (with their source: default, CFS_VAR_*, -var-file, -var)
it depends on. Setting names are the addresses 'cfs-compose set' takes after
"variant.NAME.".

--format=json prints a list of {variant, arch, config, settings}.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(o.format); err != nil {
				return err
			}
			m, diags := g.loadManifests(cmd)
			if diags.HasErrors() {
				if err := g.printDiags(diags, nil); err != nil {
					return err
				}
				return errReported
			}
			variant := args[0]
			archList := m.Arches(variant)
			if archList == nil {
				_, err := m.Config(variant, "")
				return err
			}
			if o.arch != "" {
				archList = []string{o.arch}
			}
			var out []explainJSON
			for _, arch := range archList {
				cfg, err := m.Config(variant, arch)
				if err != nil {
					return err
				}
				settings, err := m.Explain(variant, arch)
				if err != nil {
					return err
				}
				out = append(out, explainJSON{Variant: variant, Arch: arch, Config: cfg, Settings: settings})
			}
			if o.format == "json" {
				return writeJSON(g.stdout, out)
			}
			for i, e := range out {
				if i > 0 {
					fmt.Fprintln(g.stdout)
				}
				if err := writeExplain(g.stdout, e); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.arch, "arch", "", "explain only this architecture")
	cmd.Flags().StringVar(&o.format, "format", "text", "output format: text or json")
	return cmd
}

// writeExplain prints one variant+arch as aligned "path = value  # origin".
func writeExplain(w io.Writer, e explainJSON) error {
	fmt.Fprintf(w, "# variant %q (%s) on %s\n", e.Variant, e.Config.Name, e.Arch)
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	for _, s := range e.Settings {
		fmt.Fprintf(tw, "%s\t= %s\t# %s\n", s.Path, s.Value, origin(s))
	}
	return tw.Flush()
}

func origin(s manifest.Setting) string {
	var b strings.Builder
	if s.At == nil {
		b.WriteString("built-in default")
		if s.Note != "" {
			b.WriteString(": " + s.Note)
		}
		return b.String()
	}
	fmt.Fprintf(&b, "%s (%s)", s.At, s.Block)
	for _, v := range s.Vars {
		fmt.Fprintf(&b, ", var.%s = %s from %s", v.Name, v.Value, v.Source)
		if v.From != "" && v.Source != manifest.VarFromFlag {
			fmt.Fprintf(&b, " %s", v.From)
		}
	}
	return b.String()
}
