package manifest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// rootSchema is the top level of a manifest file.
var rootSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "variable", LabelNames: []string{"name"}},
	{Type: "locals"},
	{Type: "compose"},
	{Type: "defaults"},
	{Type: "variant", LabelNames: []string{"name"}},
}}

// labelRE is what variant and partition labels may look like: they become
// directory names and `set` address segments.
var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

// loader holds the state of one Parse call.
type loader struct {
	ctx     context.Context // loading stops when it is done
	stopped bool            // ctx was found done (and reported)
	opts    *Options
	workDir string
	names   []string             // file names, sorted
	src     map[string][]byte    // name -> contents
	files   map[string]*hcl.File // parsed files
	diags   hcl.Diagnostics

	vars   map[string]*variable
	locals map[string]*local
	root   *hcl.EvalContext            // var, local and the functions
	perDir map[string]*hcl.EvalContext // child of root with file() for one directory

	compose     Compose
	defaults    *layer
	variants    map[string]*variantDecl
	composeSeen bool
}

// variantDecl is one variant block.
type variantDecl struct {
	label  string
	rng    hcl.Range // the block header
	body   *layer
	arches []string // resolved from defaults and the variant
}

func newLoader(files map[string][]byte, opts *Options) *loader {
	wd := opts.WorkDir
	if wd == "" {
		wd, _ = os.Getwd()
	}
	l := &loader{
		ctx:      context.Background(),
		opts:     opts,
		workDir:  wd,
		names:    slices.Sorted(maps.Keys(files)),
		src:      maps.Clone(files), // variable files are added for diagnostics
		files:    make(map[string]*hcl.File),
		vars:     make(map[string]*variable),
		locals:   make(map[string]*local),
		perDir:   make(map[string]*hcl.EvalContext),
		variants: make(map[string]*variantDecl),
	}
	l.root = &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.EmptyObjectVal, "local": cty.EmptyObjectVal},
		Functions: functions(),
	}
	return l
}

// blocks collects the top-level blocks of every file by type.
type topBlocks struct {
	variables, locals, compose, defaults, variants []*hcl.Block
}

func (l *loader) run() {
	var top topBlocks
	syntaxErrors := false
	for _, name := range l.names {
		if l.cancelled() {
			return
		}
		f, diags := hclsyntax.ParseConfig(l.src[name], name, hcl.InitialPos)
		l.diags = append(l.diags, diags...)
		if f == nil {
			continue
		}
		l.files[name] = f
		if diags.HasErrors() {
			syntaxErrors = true
			continue
		}
		content, diags := f.Body.Content(rootSchema)
		l.diags = append(l.diags, diags...)
		for _, b := range content.Blocks {
			switch b.Type {
			case "variable":
				top.variables = append(top.variables, b)
			case "locals":
				top.locals = append(top.locals, b)
			case "compose":
				top.compose = append(top.compose, b)
			case "defaults":
				top.defaults = append(top.defaults, b)
			case "variant":
				top.variants = append(top.variants, b)
			}
		}
	}
	if syntaxErrors {
		// Evaluating the other files would report every reference into
		// the broken one as well.
		return
	}
	l.loadVariables(top.variables)
	l.loadLocals(top.locals)
	if l.cancelled() {
		return
	}
	l.loadCompose(top.compose)
	l.loadDefaults(top.defaults)
	for _, b := range top.variants {
		if l.cancelled() {
			return
		}
		l.loadVariant(b)
	}
	if l.cancelled() {
		return
	}
	if len(top.variants) == 0 && !l.diags.HasErrors() {
		l.errorf(nil, "No variants", "The manifest set declares no variant \"NAME\" { } block, so there is nothing to build.")
	}
	l.finish()
}

// cancelled reports whether l.ctx is done; the first time it is, it adds
// the "Loading cancelled" diagnostic.
func (l *loader) cancelled() bool {
	if l.stopped {
		return true
	}
	if l.ctx.Err() == nil {
		return false
	}
	l.stopped = true
	l.errorf(nil, "Loading cancelled", "Loading the manifests was cancelled: %v.", context.Cause(l.ctx))
	return true
}

// errorf appends an error diagnostic.
func (l *loader) errorf(subject *hcl.Range, summary, format string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: subject})
}

// evalContext returns the evaluation context for expressions in a file:
// the shared variables and functions plus file() relative to the file.
func (l *loader) evalContext(filename string) *hcl.EvalContext {
	dir := l.absDir(filename)
	if ctx, ok := l.perDir[dir]; ok {
		return ctx
	}
	// The child holds every function (not only file()), because hcl
	// suggests names for an unknown function from the innermost context.
	ctx := l.root.NewChild()
	ctx.Functions = functions()
	maps.Copy(ctx.Functions, fileFunctions(dir))
	l.perDir[dir] = ctx
	return ctx
}

// absDir is the absolute directory of a manifest file.
func (l *loader) absDir(filename string) string {
	dir := filepath.Dir(filename)
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(l.workDir, dir)
	}
	return filepath.Clean(dir)
}

func (l *loader) loadCompose(blocks []*hcl.Block) {
	if len(blocks) == 0 {
		if !l.diags.HasErrors() {
			l.errorf(nil, "Missing compose block", "The manifest set has no top-level compose { release = ... } block; it names the compose (product, release and type).")
		}
		return
	}
	for _, b := range blocks[1:] {
		l.errorf(b.DefRange.Ptr(), "Duplicate compose block", "A compose block was already declared at %s; the manifest set may have only one.", blocks[0].DefRange)
	}
	b := blocks[0]
	l.composeSeen = true
	ly := newLayer(OriginDefaults, "compose", b.DefRange)
	l.decodeBody(b.Body, composeSpec, l.evalContext(b.DefRange.Filename), ly, "")
	if ly.bad {
		return
	}
	get := func(name string) (string, bool) {
		if v, ok := ly.values[name]; ok {
			return v.v.(string), true
		}
		return composeSpec.attr(name).dflt.(string), false
	}
	l.compose.Product, _ = get("product")
	l.compose.Type, _ = get("type")
	if rel, ok := ly.values["release"]; ok {
		l.compose.Release = rel.v.(string)
		if !releaseRE.MatchString(l.compose.Release) {
			l.errorf(rel.exprRng.Ptr(), "Invalid compose release", "The release %q must be letters, digits, dots, dashes or underscores (it becomes part of the compose directory name, e.g. \"41\" or \"rawhide\").", l.compose.Release)
		}
	} else {
		l.errorf(b.DefRange.Ptr(), "Missing compose release", "The compose block must set release (for example release = var.release); it names the compose directory.")
	}
	if p, ok := ly.values["product"]; ok && !releaseRE.MatchString(l.compose.Product) {
		l.errorf(p.exprRng.Ptr(), "Invalid compose product", "The product %q must be letters, digits, dots, dashes or underscores (it becomes part of the compose directory name).", l.compose.Product)
	}
}

var releaseRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (l *loader) loadDefaults(blocks []*hcl.Block) {
	l.defaults = newLayer(OriginDefaults, "defaults", hcl.Range{})
	if len(blocks) == 0 {
		return
	}
	for _, b := range blocks[1:] {
		l.errorf(b.DefRange.Ptr(), "Duplicate defaults block", "A defaults block was already declared at %s; the manifest set may have only one.", blocks[0].DefRange)
	}
	b := blocks[0]
	l.defaults.rng = b.DefRange
	l.decodeBody(b.Body, defaultsSpec, l.evalContext(b.DefRange.Filename), l.defaults, "")
}

func (l *loader) loadVariant(b *hcl.Block) {
	label := b.Labels[0]
	if !labelRE.MatchString(label) {
		l.errorf(b.LabelRanges[0].Ptr(), "Invalid variant name", "The variant name %q must start with a letter or digit and hold only letters, digits, '-' and '_' (it becomes a directory name and part of `set` addresses).", label)
		return
	}
	if prev, ok := l.variants[label]; ok {
		l.errorf(b.DefRange.Ptr(), "Duplicate variant", "Variant %q was already declared at %s.", label, prev.rng)
		return
	}
	v := &variantDecl{label: label, rng: b.DefRange, body: newLayer(OriginVariant, fmt.Sprintf("variant %q", label), b.DefRange)}
	l.variants[label] = v
	l.decodeBody(b.Body, variantSpec, l.evalContext(b.DefRange.Filename), v.body, "")
}

// finish resolves every variant on every arch and runs the semantic
// checks on those free of errors.
func (l *loader) finish() {
	if l.defaults == nil {
		return
	}
	var found []finding
	names := make(map[string]string) // Config.Name -> variant label
	for _, label := range slices.Sorted(maps.Keys(l.variants)) {
		v := l.variants[label]
		v.arches = archesOf(l.defaults, v.body)
		for a, al := range v.body.arches {
			if !slices.Contains(v.arches, a) {
				l.diags = append(l.diags, &hcl.Diagnostic{
					Severity: hcl.DiagWarning,
					Summary:  "Arch override never applies",
					Detail:   fmt.Sprintf("Variant %q has an arch %q block, but it is built only for %s; add %q to arches or remove the block.", label, a, quoteList(v.arches), a),
					Subject:  al.rng.Ptr(),
				})
			}
		}
		for i, arch := range v.arches {
			if i == 0 && !l.defaults.bad && !v.body.bad {
				name := resolve(l.defaults, v, arch).cfg.Name
				if other, ok := names[name]; ok {
					rng := v.rng
					if nv, ok := v.body.values["name"]; ok {
						rng = nv.rng
					}
					l.errorf(rng.Ptr(), "Duplicate variant name", "Variants %q and %q both have the name %q; it names their output directories and must be unique.", other, label, name)
				}
				names[name] = label
			}
			if l.defaults.bad || v.body.bad || layerBad(l.defaults.arches[arch]) || layerBad(v.body.arches[arch]) {
				continue // errors already reported; checks would only add noise
			}
			found = append(found, check(resolve(l.defaults, v, arch), l.opts)...)
		}
	}
	l.diags = append(l.diags, groupFindings(found)...)
}

func layerBad(ly *layer) bool { return ly != nil && ly.bad }

// archesOf resolves a variant's arch list (the variant's, else the
// defaults', else the built-in default).
func archesOf(defaults, body *layer) []string {
	for _, ly := range []*layer{body, defaults} {
		if v, ok := ly.values["arches"]; ok {
			return v.v.([]string)
		}
	}
	return slices.Clone(archesAttr.dflt.([]string))
}

func (l *loader) sortedVars() []*variable {
	out := slices.Collect(maps.Values(l.vars))
	slices.SortFunc(out, func(a, b *variable) int { return strings.Compare(a.name, b.name) })
	return out
}
