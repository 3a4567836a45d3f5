package manifest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// Options control how a manifest set is loaded. A nil *Options means the
// zero value: no variable overrides, no environment, names of checks and
// lints not checked, relative file names taken against the working directory.
type Options struct {
	// Vars are "NAME=VALUE" variable overrides in command-line order; a later
	// one wins. VALUE is taken literally for variables of a primitive type
	// (string, number, bool) or without a type, and parsed as an HCL
	// expression otherwise (for example `["a", "b"]` for list(string)).
	Vars []string
	// VarFiles are HCL (or, for *.json, JSON) files of NAME = VALUE lines,
	// applied in order; -var values (Vars) override them.
	VarFiles []string
	// Environ is the process environment ("KEY=VALUE"); CFS_VAR_NAME sets
	// variable NAME with the lowest priority after the declared default.
	Environ []string
	// KnownChecks are the boot-test check names `test { checks }` may use;
	// nil means the names are not checked.
	KnownChecks []string
	// KnownLints are the lint names `lints { skip }` may use; nil means the
	// names are not checked.
	KnownLints []string
	// WorkDir is the directory relative manifest file names are taken
	// against when relative paths in the manifest are made absolute; empty
	// means the process's working directory.
	WorkDir string
}

// Origin says which part of a manifest set a setting came from.
type Origin string

// Origins, from lowest to highest priority.
const (
	OriginDefault      Origin = "default"       // the built-in default
	OriginDefaults     Origin = "defaults"      // the defaults block
	OriginDefaultsArch Origin = "defaults-arch" // an arch block inside defaults
	OriginVariant      Origin = "variant"       // the variant block
	OriginVariantArch  Origin = "variant-arch"  // an arch block inside the variant
)

// VarSource says where a variable's value came from.
type VarSource string

// Variable sources, from lowest to highest priority.
const (
	VarFromDefault VarSource = "default"  // the variable's default
	VarFromEnv     VarSource = "env"      // CFS_VAR_NAME in the environment
	VarFromFile    VarSource = "var-file" // a -var-file
	VarFromFlag    VarSource = "var"      // a -var option
)

// Location is a position in a manifest file (lines and columns from 1).
type Location struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
}

// String renders the location as file:line:col.
func (l Location) String() string { return fmt.Sprintf("%s:%d:%d", l.File, l.Line, l.Column) }

// VarRef is a variable a setting's value depends on (directly or through
// locals) and where that variable's value came from.
type VarRef struct {
	Name   string    `json:"name"`
	Value  string    `json:"value"`  // HCL rendering
	Source VarSource `json:"source"` // default, env, var-file or var
	// From names the environment variable, file:line:col or "-var" that set
	// the value; empty for declared defaults.
	From string `json:"from,omitempty"`
}

// Setting is one resolved setting of a [Config] and where it came from.
type Setting struct {
	// Path is the setting's address inside a variant, as `set` accepts it
	// after "variant.NAME.": "composefs.enabled", "disk.partition.esp.size".
	Path string `json:"path"`
	// Value is the resolved value in HCL syntax (sizes and durations in
	// canonical form, paths absolute).
	Value  string `json:"value"`
	Origin Origin `json:"origin"`
	// Block names the block that set it: `defaults`, `variant "coreos"`,
	// `variant "iot" arch "aarch64"`; empty for built-in defaults.
	Block string `json:"block,omitempty"`
	// At is where the attribute was written; nil for built-in defaults.
	At *Location `json:"at,omitempty"`
	// Note explains a built-in default derived from other settings.
	Note string `json:"note,omitempty"`
	// Vars are the variables the value depends on.
	Vars []VarRef `json:"vars,omitempty"`
}

// Manifest is a loaded, valid manifest set. It is immutable; its methods
// may be called concurrently.
type Manifest struct {
	files    map[string][]byte
	compose  Compose
	vars     []*variable // sorted by name
	defaults *layer
	variants map[string]*variantDecl
	names    []string // variant labels, sorted
}

// ReadDir reads every *.hcl file directly inside dir (not recursively),
// keyed by filepath.Join(dir, name).
func ReadDir(dir string) (map[string][]byte, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading manifest directory: %w", err)
	}
	files := make(map[string][]byte)
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".hcl") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading manifest: %w", err)
		}
		files[p] = b
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("manifest directory %s holds no *.hcl files", dir)
	}
	return files, nil
}

// Load reads every *.hcl file in dir (sorted by name) and parses them
// together with [Parse]. File names in diagnostics are filepath.Join(dir,
// name). A directory that cannot be read is reported as a diagnostic.
func Load(dir string, opts *Options) (*Manifest, hcl.Diagnostics) {
	return LoadContext(context.Background(), dir, opts)
}

// LoadContext is [Load] that stops when ctx is done (see [ParseContext]).
func LoadContext(ctx context.Context, dir string, opts *Options) (*Manifest, hcl.Diagnostics) {
	files, err := ReadDir(dir)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read manifests", Detail: err.Error()}}
	}
	return ParseContext(ctx, files, opts)
}

// Parse parses, evaluates and validates a manifest set: files maps file
// names to their contents and is processed in sorted name order. It
// returns every diagnostic found (errors and warnings, each with its source
// range); the *Manifest is nil exactly when the diagnostics hold an error.
// Parse reads no manifest file itself, but the file() function and
// Options.VarFiles read from disk.
func Parse(files map[string][]byte, opts *Options) (*Manifest, hcl.Diagnostics) {
	return ParseContext(context.Background(), files, opts)
}

// ParseContext is [Parse] that stops when ctx is done: between files,
// locals, attributes and variants (a single file's syntax is parsed in one
// piece). It then returns a nil *Manifest and an error diagnostic
// "Loading cancelled" carrying the context's cause.
func ParseContext(ctx context.Context, files map[string][]byte, opts *Options) (*Manifest, hcl.Diagnostics) {
	if opts == nil {
		opts = &Options{}
	}
	l := newLoader(files, opts)
	l.ctx = ctx
	l.run()
	sortDiagnostics(l.diags)
	if l.diags.HasErrors() {
		return nil, l.diags
	}
	m := &Manifest{
		files:    maps.Clone(files),
		compose:  l.compose,
		vars:     l.sortedVars(),
		defaults: l.defaults,
		variants: l.variants,
		names:    slices.Sorted(maps.Keys(l.variants)),
	}
	return m, l.diags
}

// Variants returns the variant labels, sorted.
func (m *Manifest) Variants() []string { return slices.Clone(m.names) }

// Arches returns the architectures a variant is built for, in manifest
// order; nil if there is no such variant.
func (m *Manifest) Arches(variant string) []string {
	v := m.variants[variant]
	if v == nil {
		return nil
	}
	return slices.Clone(v.arches)
}

// Compose returns the compose-level settings with defaults made explicit.
func (m *Manifest) Compose() Compose { return m.compose }

// Files returns the manifest files (name as given to [Parse] -> contents);
// variable files are not included. The map is a copy.
func (m *Manifest) Files() map[string][]byte {
	out := make(map[string][]byte, len(m.files))
	for k, v := range m.files {
		out[k] = slices.Clone(v)
	}
	return out
}

// Variables returns the value of every declared variable, rendered as HCL
// Variables returns the effective variable values as plain text, for
// records such as compose.json: a string as itself (not HCL-quoted), a
// number or bool as written, a collection as JSON.
func (m *Manifest) Variables() map[string]string {
	out := make(map[string]string, len(m.vars))
	for _, v := range m.vars {
		out[v.name] = plainCty(v.value)
	}
	return out
}

// plainCty renders a value as plain text (see [Manifest.Variables]).
func plainCty(v cty.Value) string {
	switch {
	case !v.IsWhollyKnown():
		return "(unknown)"
	case v.IsNull():
		return ""
	case v.Type() == cty.String:
		return v.AsString()
	case v.Type() == cty.Number:
		return v.AsBigFloat().Text('f', -1)
	case v.Type() == cty.Bool:
		return strconv.FormatBool(v.True())
	}
	if b, err := ctyjson.Marshal(v, v.Type()); err == nil {
		return string(b)
	}
	return renderCty(v)
}

// Config returns the resolved configuration of a variant on one arch.
// It returns an error if there is no such variant or the variant is not
// built for arch. Each call returns a new Config the caller may modify.
func (m *Manifest) Config(variant, arch string) (*Config, error) {
	r, err := m.resolve(variant, arch)
	if err != nil {
		return nil, err
	}
	return r.cfg, nil
}

// Explain returns every setting of the variant's Config on arch, in schema
// order, with the value and where it came from (built-in default, defaults
// block, variant block, arch block, and the variables it depends on).
func (m *Manifest) Explain(variant, arch string) ([]Setting, error) {
	r, err := m.resolve(variant, arch)
	if err != nil {
		return nil, err
	}
	return r.settings(m), nil
}

func (m *Manifest) resolve(variant, arch string) (*resolved, error) {
	v := m.variants[variant]
	if v == nil {
		if s := suggest(variant, m.names); s != "" {
			return nil, fmt.Errorf("no variant %q in the manifests (did you mean %q?)", variant, s)
		}
		return nil, fmt.Errorf("no variant %q in the manifests (variants: %s)", variant, strings.Join(m.names, ", "))
	}
	if !slices.Contains(v.arches, arch) {
		return nil, fmt.Errorf("variant %q is not built for arch %q (arches: %s)", variant, arch, strings.Join(v.arches, ", "))
	}
	return resolve(m.defaults, v, arch), nil
}

// sortDiagnostics orders diagnostics for reading: those without a source
// range (command-line and environment problems) first, then by file and
// position. The sort is stable, so a root cause stays before what it
// explains at the same place.
func sortDiagnostics(diags hcl.Diagnostics) {
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		switch {
		case a.Subject == nil && b.Subject == nil:
			return 0
		case a.Subject == nil:
			return -1
		case b.Subject == nil:
			return 1
		}
		if c := strings.Compare(a.Subject.Filename, b.Subject.Filename); c != 0 {
			return c
		}
		return a.Subject.Start.Byte - b.Subject.Start.Byte
	})
}

// renderCty renders a value as HCL text.
func renderCty(v cty.Value) string {
	if !v.IsWhollyKnown() {
		return "(unknown)"
	}
	return string(hclwrite.TokensForValue(v).Bytes())
}
