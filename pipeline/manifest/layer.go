package manifest

import (
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// A layer is the settings one body sets: the defaults block, an arch
// block inside it, a variant block or an arch block inside that. Values
// are keyed by address path ("composefs.enabled",
// "disk.partition.esp.size"). Resolution stacks the layers and the
// highest one that sets a path wins, attribute by attribute; partitions
// are matched by label, never by position.
type layer struct {
	origin  Origin
	block   string    // `defaults`, `variant "coreos"`, `variant "iot" arch "aarch64"`
	rng     hcl.Range // block header
	values  map[string]*value
	parts   []string             // partition labels, in order of appearance
	partRng map[string]hcl.Range // partition label -> block header
	arches  map[string]*layer
	// bad is set when an error was reported inside the body (or a value
	// depends on one): semantic checks then skip the variant, since they
	// would only repeat the root cause.
	bad bool
}

// value is one attribute's converted value.
type value struct {
	v       any       // string, bool, int64, []string or time.Duration
	rng     hcl.Range // the whole attribute
	exprRng hcl.Range // its expression
	vars    []string  // variables it depends on
}

func newLayer(origin Origin, block string, rng hcl.Range) *layer {
	return &layer{origin: origin, block: block, rng: rng, values: make(map[string]*value), partRng: make(map[string]hcl.Range), arches: make(map[string]*layer)}
}

func archOrigin(o Origin) Origin {
	if o == OriginDefaults {
		return OriginDefaultsArch
	}
	return OriginVariantArch
}

func bodySchema(spec *blockSpec) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, a := range spec.attrs {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a.name})
	}
	for _, b := range spec.blocks {
		h := hcl.BlockHeaderSchema{Type: b.name}
		if b.labeled {
			h.LabelNames = []string{"name"}
		}
		s.Blocks = append(s.Blocks, h)
	}
	return s
}

// decodeBody decodes body against spec into ly; prefix is the address of
// the block ("" for a variant or defaults body, "disk." inside disk).
func (l *loader) decodeBody(body hcl.Body, spec *blockSpec, ctx *hcl.EvalContext, ly *layer, prefix string) {
	content, diags := body.Content(bodySchema(spec))
	l.diags = append(l.diags, l.addPlacementHints(diags)...)
	if diags.HasErrors() {
		ly.bad = true
	}
	for _, a := range sortedAttrs(content.Attributes) {
		l.decodeAttr(a, spec.attr(a.Name), ctx, ly, prefix+a.Name)
	}
	seen := make(map[string]*hcl.Block)
	for _, b := range content.Blocks {
		bs := spec.block(b.Type)
		key := strings.Join(append([]string{b.Type}, b.Labels...), " ")
		if prev, ok := seen[key]; ok {
			what := b.Type
			if bs.labeled {
				what = fmt.Sprintf("%s %q", b.Type, b.Labels[0])
			}
			l.errorf(b.DefRange.Ptr(), "Duplicate "+b.Type+" block", "A %s block was already declared in this %s at %s; write its settings in one block.", what, ly.block, prev.DefRange)
			ly.bad = true
			continue
		}
		seen[key] = b
		switch {
		case b.Type == "arch":
			label := b.Labels[0]
			if !slices.Contains(arches, label) {
				hint := didYouMean(label, arches)
				if alias, ok := enumAliases[strings.ToLower(label)]; ok && slices.Contains(arches, alias) {
					hint = fmt.Sprintf(" Did you mean %q? (Fedora spells it that way.)", alias)
				}
				l.errorf(b.LabelRanges[0].Ptr(), "Unknown architecture", "%q is not an architecture cfs-compose builds; it must be %s.%s", label, quoteList(arches), hint)
				ly.bad = true
				continue
			}
			al := newLayer(archOrigin(ly.origin), fmt.Sprintf("%s arch %q", ly.block, label), b.DefRange)
			ly.arches[label] = al
			l.decodeBody(b.Body, archSpec, ctx, al, "")
		case bs.labeled:
			label := b.Labels[0]
			if !labelRE.MatchString(label) {
				l.errorf(b.LabelRanges[0].Ptr(), "Invalid partition name", "The partition name %q must start with a letter or digit and hold only letters, digits, '-' and '_'.", label)
				ly.bad = true
				continue
			}
			if !slices.Contains(ly.parts, label) {
				ly.parts = append(ly.parts, label)
				ly.partRng[label] = b.DefRange
			}
			l.decodeBody(b.Body, bs, ctx, ly, prefix+b.Type+"."+label+".")
		default:
			l.decodeBody(b.Body, bs, ctx, ly, prefix+b.Type+".")
		}
	}
}

// decodeAttr evaluates and converts one attribute.
func (l *loader) decodeAttr(a *hcl.Attribute, spec *attrSpec, ctx *hcl.EvalContext, ly *layer, path string) {
	if l.cancelled() {
		ly.bad = true
		return
	}
	if diags := l.checkRefs(a.Expr, true); diags.HasErrors() {
		l.diags = append(l.diags, diags...)
		ly.bad = true
		return
	}
	val, diags := a.Expr.Value(ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		ly.bad = true
		return
	}
	if d := sizeDiag(val, "The value of "+path, a.Expr); d != nil {
		l.diags = append(l.diags, d)
		ly.bad = true
		return
	}
	if !val.IsWhollyKnown() {
		// Unknown only because something it refers to already failed.
		ly.bad = true
		return
	}
	if val.IsNull() {
		return // null means "not set here"
	}
	v, err := convertValue(spec, val, l.absDir(a.Range.Filename))
	if err != nil {
		summary := "Invalid value"
		if err.typ {
			summary = "Incorrect attribute value type"
		}
		subject := a.Expr.Range()
		if tup, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && err.elem >= 0 && err.elem < len(tup.Exprs) {
			subject = tup.Exprs[err.elem].Range() // point at the bad element
		}
		l.diags = append(l.diags, &hcl.Diagnostic{
			Severity:    hcl.DiagError,
			Summary:     summary,
			Detail:      fmt.Sprintf("Invalid value for %s: %s", path, err.msg),
			Subject:     subject.Ptr(),
			Expression:  a.Expr,
			EvalContext: ctx,
		})
		ly.bad = true
		return
	}
	ly.values[path] = &value{v: v, rng: a.Range, exprRng: a.Expr.Range(), vars: l.exprVars(a.Expr)}
}

// valueError is a conversion failure; typ marks a type mismatch, elem the
// offending list element (-1: the whole value).
type valueError struct {
	msg  string
	typ  bool
	elem int
}

func typeErr(format string, args ...any) *valueError {
	return &valueError{msg: fmt.Sprintf(format, args...), typ: true, elem: -1}
}

func valErr(format string, args ...any) *valueError {
	return &valueError{msg: fmt.Sprintf(format, args...), elem: -1}
}

func elemErr(i int, format string, args ...any) *valueError {
	return &valueError{msg: fmt.Sprintf(format, args...), elem: i}
}

// convertValue turns an evaluated value into the Go value of spec's kind.
func convertValue(spec *attrSpec, val cty.Value, dir string) (any, *valueError) {
	var out any
	switch spec.kind {
	case kindString, kindPath, kindStub, kindImage:
		s, err := convert.Convert(val, cty.String)
		if err != nil {
			return nil, typeErr("a string is required, not %s.", val.Type().FriendlyName())
		}
		out = s.AsString()
	case kindBool:
		b, err := convert.Convert(val, cty.Bool)
		if err != nil {
			return nil, typeErr("a bool (true or false) is required, not %s.", describe(val))
		}
		out = b.True()
	case kindInt:
		n, err := convert.Convert(val, cty.Number)
		if err != nil {
			return nil, typeErr("a number is required, not %s.", describe(val))
		}
		i, ok := wholeInt(n.AsBigFloat())
		if !ok {
			return nil, valErr("%s is not a whole number in range.", n.AsBigFloat().Text('g', -1))
		}
		out = i
	case kindStrings:
		ls, err := convert.Convert(val, cty.List(cty.String))
		if err != nil {
			return nil, typeErr("a list of strings is required, not %s.", describe(val))
		}
		items := []string{}
		for it := ls.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.IsNull() {
				return nil, valErr("the list holds a null element.")
			}
			items = append(items, e.AsString())
		}
		if spec.unique {
			for i, s := range items {
				if slices.Contains(items[:i], s) {
					return nil, elemErr(i, "%q appears more than once.", s)
				}
			}
		}
		out = items
	case kindSize:
		if val.Type() == cty.Number {
			i, ok := wholeInt(val.AsBigFloat())
			if !ok || i < 0 {
				return nil, valErr("a size in bytes must be a whole, non-negative number; %s is not.", val.AsBigFloat().Text('g', -1))
			}
			out = i
			break
		}
		s, err := convert.Convert(val, cty.String)
		if err != nil {
			return nil, typeErr(`a size such as "512MiB" or "10GiB" is required, not %s.`, describe(val))
		}
		n, perr := ParseSize(s.AsString())
		if perr != nil {
			return nil, valErr("%s.", perr)
		}
		out = n
	case kindDuration:
		if val.Type() == cty.Number {
			return nil, typeErr(`a duration string such as "90s" or "5m" is required, not a number (the unit is not implied).`)
		}
		s, err := convert.Convert(val, cty.String)
		if err != nil {
			return nil, typeErr(`a duration such as "90s" or "5m" is required, not %s.`, describe(val))
		}
		d, perr := ParseDuration(s.AsString())
		if perr != nil {
			return nil, valErr("%s.", perr)
		}
		out = d
	}
	if len(spec.enum) > 0 {
		var items []string
		switch v := out.(type) {
		case string:
			items = []string{v}
		case []string:
			items = v
		case int64:
			items = []string{fmt.Sprint(v)}
		}
		for i, s := range items {
			if !slices.Contains(spec.enum, s) {
				hint := didYouMean(s, spec.enum)
				if a, ok := enumAliases[strings.ToLower(s)]; ok && slices.Contains(spec.enum, a) {
					hint = fmt.Sprintf(" Did you mean %q? (Fedora spells it that way.)", a)
				}
				if _, isList := out.([]string); isList {
					return nil, elemErr(i, "%q is not allowed; it must be %s.%s", s, quoteList(spec.enum), hint)
				}
				return nil, valErr("%q is not allowed; it must be %s.%s", s, quoteList(spec.enum), hint)
			}
		}
	}
	s, _ := out.(string)
	switch spec.kind {
	case kindPath:
		out = absPath(s, dir)
	case kindStub:
		if s != StubFromImage {
			if s == "" {
				return nil, valErr(`the stub must be "image" or a path to an EFI stub.`)
			}
			out = absPath(s, dir)
		}
	case kindImage:
		ref, err := imageRef(s, dir)
		if err != nil {
			return nil, err
		}
		out = ref
	}
	return out, nil
}

// enumAliases are other spellings of enumeration values: the Go and Debian
// names of each architecture ([arch.Lookup] accepts them too) and a few
// common misspellings.
var enumAliases = func() map[string]string {
	m := map[string]string{
		"x86-64": ArchX86_64, "x64": ArchX86_64,
		"fat": FilesystemVFAT, "fat32": FilesystemVFAT, "efi": PartitionESP,
	}
	for _, a := range arch.All() {
		m[a.GOARCH], m[a.Debian] = a.Name, a.Name
	}
	return m
}()

func describe(v cty.Value) string {
	if v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
		return fmt.Sprintf("the string %q", v.AsString())
	}
	return v.Type().FriendlyName()
}

func wholeInt(f *big.Float) (int64, bool) {
	if !f.IsInt() {
		return 0, false
	}
	i, acc := f.Int64()
	return i, acc == big.Exact
}

// absPath makes a non-empty relative path absolute against dir.
func absPath(p, dir string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// imageTransports are the containers-image transports a source may use.
var imageTransports = []string{"docker://", "oci:", "oci-archive:", "docker-archive:", "dir:"}

// imageRef checks a containers-image reference and makes the path of a
// local transport (oci:, oci-archive:, docker-archive:, dir:) absolute.
func imageRef(s, dir string) (string, *valueError) {
	switch {
	case strings.HasPrefix(s, "docker://"):
		rest := strings.TrimPrefix(s, "docker://")
		if rest == "" || strings.ContainsAny(rest, " \t\n") {
			return "", valErr("%q is not a registry reference (docker://REGISTRY/REPO:TAG).", s)
		}
		return s, nil
	case strings.HasPrefix(s, "oci:"), strings.HasPrefix(s, "oci-archive:"), strings.HasPrefix(s, "docker-archive:"):
		transport, rest, _ := strings.Cut(s, ":")
		p, tag, hasTag := strings.Cut(rest, ":")
		if p == "" {
			return "", valErr("%q has no path: write %s:PATH[:TAG].", s, transport)
		}
		out := transport + ":" + absPath(p, dir)
		if hasTag {
			if tag == "" {
				return "", valErr("%q has an empty tag after the last ':'.", s)
			}
			out += ":" + tag
		}
		return out, nil
	case strings.HasPrefix(s, "dir:"):
		p := strings.TrimPrefix(s, "dir:")
		if p == "" {
			return "", valErr("%q has no path: write dir:PATH.", s)
		}
		return "dir:" + absPath(p, dir), nil
	}
	hint := ""
	switch t, rest, _ := strings.Cut(s, ":"); {
	case t == "docker":
		hint = fmt.Sprintf(" Did you mean %q?", "docker://"+strings.TrimLeft(rest, "/"))
	case !strings.Contains(s, "://") && strings.Contains(s, "/"):
		hint = fmt.Sprintf(" Did you mean %q?", "docker://"+s)
	}
	return "", valErr("%q has no known transport; it must start with %s.%s", s, quoteList(imageTransports), hint)
}

// placement maps an attribute or block name to where it belongs, for the
// hint on "Unsupported argument" and "Unsupported block type".
var attrPlaces, blockPlaces = func() (map[string][]string, map[string][]string) {
	ap := make(map[string][]string)
	bp := make(map[string][]string)
	for _, a := range variantAttrs {
		ap[a.name] = append(ap[a.name], "the variant block")
	}
	ap["arches"] = append(ap["arches"], "the defaults block")
	for _, b := range settingBlocks {
		bp[b.name] = append(bp[b.name], "a defaults, variant or arch block")
		for _, a := range b.attrs {
			ap[a.name] = append(ap[a.name], "a "+b.name+" block")
		}
	}
	for _, a := range partitionSpec.attrs {
		ap[a.name] = append(ap[a.name], "a partition block (inside disk)")
	}
	bp["partition"] = []string{"a disk block"}
	bp["arch"] = []string{"a defaults or variant block"}
	for _, a := range composeSpec.attrs {
		ap[a.name] = append(ap[a.name], "the compose block")
	}
	return ap, bp
}()

// addPlacementHints extends "Unsupported argument/block type" diagnostics
// that carry no "Did you mean" with where that name does belong.
func (l *loader) addPlacementHints(diags hcl.Diagnostics) hcl.Diagnostics {
	for _, d := range diags {
		if d.Subject == nil || strings.Contains(d.Detail, "Did you mean") {
			continue
		}
		var places map[string][]string
		switch d.Summary {
		case "Unsupported argument":
			places = attrPlaces
		case "Unsupported block type":
			places = blockPlaces
		default:
			continue
		}
		name := l.subjectText(d.Subject)
		if p, ok := places[name]; ok {
			d.Detail += fmt.Sprintf(" %q belongs in %s.", name, strings.Join(dedupe(p), " or "))
		}
	}
	return diags
}

// subjectText returns the source text a range covers.
func (l *loader) subjectText(r *hcl.Range) string {
	b := l.src[r.Filename]
	if r.Start.Byte < 0 || r.End.Byte > len(b) || r.Start.Byte > r.End.Byte {
		return ""
	}
	return string(b[r.Start.Byte:r.End.Byte])
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		out = appendNew(out, x)
	}
	return out
}
