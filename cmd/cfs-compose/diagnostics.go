package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/pmezard/go-difflib/difflib"
	"golang.org/x/term"
)

// printDiagnostics writes diagnostics with hcl's text writer (source
// snippets; color only when w is a terminal). Sources come from override
// (in-memory contents, such as an edit not yet written) or are read from
// disk by the file name each diagnostic carries.
func printDiagnostics(w io.Writer, diags hcl.Diagnostics, override map[string][]byte) error {
	if len(diags) == 0 {
		return nil
	}
	files := make(map[string]*hcl.File)
	for _, d := range diags {
		for _, r := range []*hcl.Range{d.Subject, d.Context} {
			if r == nil || files[r.Filename] != nil {
				continue
			}
			b, ok := override[r.Filename]
			if !ok {
				var err error
				if b, err = os.ReadFile(r.Filename); err != nil {
					continue // no snippet; the diagnostic still names file:line:col
				}
			}
			// Parsing gives the writer the block structure, so it can say
			// `in variant "coreos"`; a file with syntax errors still gets
			// its snippet.
			f, _ := hclsyntax.ParseConfig(b, r.Filename, hcl.InitialPos)
			if f == nil {
				f = &hcl.File{Bytes: b}
			}
			files[r.Filename] = f
		}
	}
	color := isTerminal(w)
	var width uint
	if f, ok := w.(*os.File); ok && color {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
			width = uint(cols)
		}
	}
	// hcl's writer names the file and line; put file:line:col in front of
	// the summary too, the form editors and terminals turn into links.
	located := make(hcl.Diagnostics, len(diags))
	for i, d := range diags {
		c := *d
		if r := d.Subject; r != nil {
			c.Summary = fmt.Sprintf("%s:%d:%d: %s", r.Filename, r.Start.Line, r.Start.Column, d.Summary)
		}
		located[i] = &c
	}
	if err := hcl.NewDiagnosticTextWriter(w, files, width, color).WriteDiagnostics(located); err != nil {
		return fmt.Errorf("writing diagnostics: %w", err)
	}
	return nil
}

// jsonPos, jsonRange, jsonDiagnostic and jsonReport are the machine form of
// diagnostics (`--format=json`), for editors and CI.
type jsonPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

type jsonRange struct {
	Start jsonPos `json:"start"`
	End   jsonPos `json:"end"`
}

type jsonDiagnostic struct {
	Severity string     `json:"severity"` // "error" or "warning"
	Summary  string     `json:"summary"`
	Detail   string     `json:"detail,omitempty"`
	File     string     `json:"file,omitempty"`
	Range    *jsonRange `json:"range,omitempty"`
}

type jsonReport struct {
	Valid        bool             `json:"valid"`
	ErrorCount   int              `json:"error_count"`
	WarningCount int              `json:"warning_count"`
	Diagnostics  []jsonDiagnostic `json:"diagnostics"`
}

func toJSONReport(diags hcl.Diagnostics) jsonReport {
	rep := jsonReport{Diagnostics: []jsonDiagnostic{}}
	for _, d := range diags {
		jd := jsonDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
			rep.WarningCount++
		} else {
			rep.ErrorCount++
		}
		if r := d.Subject; r != nil {
			jd.File = r.Filename
			jd.Range = &jsonRange{
				Start: jsonPos{r.Start.Line, r.Start.Column, r.Start.Byte},
				End:   jsonPos{r.End.Line, r.End.Column, r.End.Byte},
			}
		}
		rep.Diagnostics = append(rep.Diagnostics, jd)
	}
	rep.Valid = rep.ErrorCount == 0
	return rep
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

// unifiedDiff renders a unified diff of a file's old and new contents.
func unifiedDiff(name string, before, after []byte) (string, error) {
	d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        difflib.SplitLines(string(before)),
		B:        difflib.SplitLines(string(after)),
		FromFile: "a/" + name,
		ToFile:   "b/" + name,
		Context:  3,
	})
	if err != nil {
		return "", fmt.Errorf("diffing %s: %w", name, err)
	}
	return d, nil
}

// checkFormat validates a --format flag value.
func checkFormat(format string) error {
	if format != "text" && format != "json" {
		return usageError{fmt.Errorf("invalid --format %q (want text or json)", format)}
	}
	return nil
}

// printDiags prints diagnostics to stderr: for people (file:line:col, a
// snippet), or with --log-format json as one JSON object per line (the
// fields of validate --format=json's diagnostics plus "level"), so that
// stderr stays pure JSON lines.
func (g *globals) printDiags(diags hcl.Diagnostics, override map[string][]byte) error {
	if g.logFormat != "json" {
		return printDiagnostics(g.stderr, diags, override)
	}
	for _, d := range toJSONReport(diags).Diagnostics {
		line := struct {
			Level string `json:"level"`
			jsonDiagnostic
			Message string `json:"message"`
		}{d.Severity, d, d.Summary}
		if line.Level == "warning" {
			line.Level = "warn"
		}
		if err := json.NewEncoder(g.stderr).Encode(line); err != nil {
			return fmt.Errorf("writing JSON: %w", err)
		}
	}
	return nil
}

// printError prints the command's final error: "Error: …" for people, or
// a JSON line with --log-format json.
func (g *globals) printError(err error, usage bool) {
	if g.logFormat == "json" {
		line := map[string]any{"level": "error", "time": time.Now().UTC().Format(time.RFC3339), "message": err.Error()}
		if usage {
			line["usage"] = true
		}
		json.NewEncoder(g.stderr).Encode(line)
		return
	}
	if usage {
		fmt.Fprintf(g.stderr, "Error: %v\nRun 'cfs-compose --help' for usage.\n", err)
		return
	}
	fmt.Fprintf(g.stderr, "Error: %v\n", err)
}
