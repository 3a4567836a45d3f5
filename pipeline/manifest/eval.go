package manifest

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// variable is one `variable "NAME" { }` declaration and its final value.
type variable struct {
	name        string
	rng         hcl.Range // block header
	typ         cty.Type  // cty.DynamicPseudoType when no type is given
	description string
	hasDefault  bool
	dflt        cty.Value
	dfltRange   hcl.Range
	validations []validation

	value cty.Value // final value; unknown when it could not be set
	from  VarSource
	where string     // env var name, file:line:col or "-var"
	vrng  *hcl.Range // source range of the value when it came from a file
}

type validation struct {
	condition hcl.Expression
	message   hcl.Expression
	rng       hcl.Range
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "type"}, {Name: "default"}, {Name: "description"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "condition", Required: true}, {Name: "error_message", Required: true},
}}

// literalContext evaluates literals: functions, but no var or local.
var literalContext = &hcl.EvalContext{Functions: functions()}

func (l *loader) loadVariables(blocks []*hcl.Block) {
	for _, b := range blocks {
		name := b.Labels[0]
		if !hclsyntax.ValidIdentifier(name) {
			l.errorf(b.LabelRanges[0].Ptr(), "Invalid variable name", "A variable name must be a valid identifier (letters, digits, '_' and '-', not starting with a digit); %q is not.", name)
			continue
		}
		if prev, ok := l.vars[name]; ok {
			l.errorf(b.DefRange.Ptr(), "Duplicate variable", "Variable %q was already declared at %s.", name, prev.rng)
			continue
		}
		v := &variable{name: name, rng: b.DefRange, typ: cty.DynamicPseudoType, value: cty.DynamicVal}
		l.vars[name] = v
		content, diags := b.Body.Content(variableSchema)
		l.diags = append(l.diags, diags...)
		bad := diags.HasErrors()
		if a, ok := content.Attributes["type"]; ok {
			t, diags := typeexpr.TypeConstraint(a.Expr)
			l.diags = append(l.diags, diags...)
			if diags.HasErrors() {
				bad = true
			} else {
				v.typ = t
			}
		}
		if a, ok := content.Attributes["description"]; ok {
			d, diags := a.Expr.Value(literalContext)
			l.diags = append(l.diags, diags...)
			if !diags.HasErrors() {
				if d, err := convert.Convert(d, cty.String); err == nil && !d.IsNull() {
					v.description = d.AsString()
				} else {
					l.errorf(a.Expr.Range().Ptr(), "Invalid variable description", "A variable description must be a string.")
				}
			}
		}
		if a, ok := content.Attributes["default"]; ok {
			d, diags := a.Expr.Value(literalContext)
			l.diags = append(l.diags, diags...)
			if diags.HasErrors() {
				bad = true
			} else if c, err := convert.Convert(d, v.typ); err != nil {
				l.errorf(a.Expr.Range().Ptr(), "Invalid default value for variable", "The default value of variable %q does not match its type: %s.", name, err)
				bad = true
			} else {
				v.hasDefault, v.dflt, v.dfltRange = true, c, a.Expr.Range()
				v.value, v.from, v.where = c, VarFromDefault, ""
			}
		}
		for _, vb := range content.Blocks {
			vc, diags := vb.Body.Content(validationSchema)
			l.diags = append(l.diags, diags...)
			if diags.HasErrors() {
				continue
			}
			v.validations = append(v.validations, validation{condition: vc.Attributes["condition"].Expr, message: vc.Attributes["error_message"].Expr, rng: vb.DefRange})
		}
		if bad {
			v.value, v.hasDefault = cty.DynamicVal, true // reported; do not also complain that it has no value
		}
	}
	l.applyEnv()
	for _, f := range l.opts.VarFiles {
		l.applyVarFile(f)
	}
	for _, s := range l.opts.Vars {
		l.applyFlag(s)
	}
	for _, name := range slices.Sorted(maps.Keys(l.vars)) {
		v := l.vars[name]
		if !v.hasDefault && v.from == "" {
			l.errorf(v.rng.Ptr(), "No value for required variable", "Variable %q has no default, so it must be set: -var %s=VALUE, a -var-file, or the environment variable CFS_VAR_%s.", name, name, name)
		}
	}
	l.updateVars()
	l.validateVars()
	l.updateVars()
}

// set gives a variable a new value of the given origin, converting it to
// the declared type.
func (l *loader) set(v *variable, val cty.Value, from VarSource, where string, rng *hcl.Range) {
	c, err := convert.Convert(val, v.typ)
	if err != nil {
		l.diags = append(l.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid value for variable",
			Detail:   fmt.Sprintf("The value for variable %q from %s is not suitable: %s.", v.name, describeFrom(from, where), err),
			Subject:  rng,
		})
		v.value, v.from, v.where, v.vrng = cty.UnknownVal(v.typ), from, where, rng
		return
	}
	v.value, v.from, v.where, v.vrng = c, from, where, rng
}

func describeFrom(from VarSource, where string) string {
	switch from {
	case VarFromEnv:
		return "the environment variable " + where
	case VarFromFile:
		return "the variable file at " + where
	case VarFromFlag:
		return "the -var option"
	}
	return "its default"
}

// rawValue turns a command-line or environment string into a value: taken
// literally for primitive (or untyped) variables, parsed as an HCL
// expression for collections and objects.
func (l *loader) rawValue(v *variable, raw, origin string) (cty.Value, hcl.Diagnostics) {
	if v.typ == cty.DynamicPseudoType || v.typ.IsPrimitiveType() {
		return cty.StringVal(raw), nil
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), origin, hcl.InitialPos)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return expr.Value(literalContext)
}

func (l *loader) applyEnv() {
	const prefix = "CFS_VAR_"
	for _, kv := range l.opts.Environ {
		if !strings.HasPrefix(kv, prefix) {
			continue
		}
		k, raw, _ := strings.Cut(kv, "=")
		name := strings.TrimPrefix(k, prefix)
		v, ok := l.vars[name]
		if !ok {
			l.diags = append(l.diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  "Value for undeclared variable",
				Detail:   fmt.Sprintf("The environment variable %s is set, but the manifests declare no variable %q; it is ignored.%s", k, name, didYouMean(name, slices.Collect(maps.Keys(l.vars)))),
			})
			continue
		}
		val, diags := l.rawValue(v, raw, k)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			v.value, v.from, v.where = cty.UnknownVal(v.typ), VarFromEnv, k
			continue
		}
		l.set(v, val, VarFromEnv, k, nil)
	}
}

func (l *loader) applyVarFile(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		l.errorf(nil, "Cannot read variable file", "Reading variable file: %s.", err)
		return
	}
	p := hclparse.NewParser()
	var f *hcl.File
	var diags hcl.Diagnostics
	if strings.HasSuffix(path, ".json") {
		f, diags = p.ParseJSON(b, path)
	} else {
		f, diags = p.ParseHCL(b, path)
	}
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return
	}
	l.src[path] = b
	l.files[path] = f
	attrs, diags := f.Body.JustAttributes()
	l.diags = append(l.diags, diags...)
	for _, a := range sortedAttrs(attrs) {
		v, ok := l.vars[a.Name]
		if !ok {
			l.errorf(a.NameRange.Ptr(), "Value for undeclared variable", "The variable file sets %q, but the manifests declare no such variable.%s", a.Name, didYouMean(a.Name, slices.Collect(maps.Keys(l.vars))))
			continue
		}
		val, diags := a.Expr.Value(literalContext)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			v.value, v.from = cty.UnknownVal(v.typ), VarFromFile
			continue
		}
		rng := a.Expr.Range()
		l.set(v, val, VarFromFile, Location{File: path, Line: a.NameRange.Start.Line, Column: a.NameRange.Start.Column}.String(), &rng)
	}
}

func (l *loader) applyFlag(s string) {
	name, raw, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		l.errorf(nil, "Invalid -var option", "The -var option %q is not NAME=VALUE.", s)
		return
	}
	v, found := l.vars[name]
	if !found {
		l.errorf(nil, "Value for undeclared variable", "The -var option sets %q, but the manifests declare no such variable.%s", name, didYouMean(name, slices.Collect(maps.Keys(l.vars))))
		return
	}
	val, diags := l.rawValue(v, raw, "-var "+name)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		v.value, v.from, v.where = cty.UnknownVal(v.typ), VarFromFlag, "-var"
		return
	}
	l.set(v, val, VarFromFlag, "-var", nil)
}

// updateVars publishes the variable values as the `var` object.
func (l *loader) updateVars() {
	m := make(map[string]cty.Value, len(l.vars))
	for name, v := range l.vars {
		m[name] = v.value
	}
	l.root.Variables["var"] = cty.ObjectVal(m)
}

func (l *loader) validateVars() {
	for _, name := range slices.Sorted(maps.Keys(l.vars)) {
		v := l.vars[name]
		for _, val := range v.validations {
			ctx := l.evalContext(val.rng.Filename)
			if diags := l.checkRefs(val.condition, false); diags.HasErrors() {
				l.diags = append(l.diags, diags...)
				continue
			}
			if !v.value.IsWhollyKnown() {
				continue // its value is already reported as invalid
			}
			ok, diags := val.condition.Value(ctx)
			l.diags = append(l.diags, diags...)
			if diags.HasErrors() || !ok.IsWhollyKnown() {
				continue
			}
			if ok.Type() != cty.Bool || ok.IsNull() {
				l.errorf(val.condition.Range().Ptr(), "Invalid validation condition", "The condition of a validation of variable %q must be a bool, not %s.", name, ok.Type().FriendlyName())
				continue
			}
			if ok.True() {
				continue
			}
			msg, diags := val.message.Value(ctx)
			text := "The value is not valid."
			if !diags.HasErrors() {
				if s, err := convert.Convert(msg, cty.String); err == nil && s.IsKnown() && !s.IsNull() {
					text = s.AsString()
				}
			}
			subject := v.vrng
			if subject == nil && v.from == VarFromDefault {
				subject = v.dfltRange.Ptr()
			}
			if subject == nil {
				subject = val.condition.Range().Ptr()
			}
			l.diags = append(l.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid value for variable",
				Detail:   fmt.Sprintf("%s\n\nVariable %q = %s (from %s) failed the validation at %s.", text, name, renderCty(v.value), describeFrom(v.from, v.where), val.rng),
				Subject:  subject,
			})
			v.value = cty.UnknownVal(v.typ)
		}
	}
}

// local is one entry of a locals block.
type local struct {
	attr  *hcl.Attribute
	deps  []string // locals referenced
	vars  []string // variables referenced, directly or through locals
	value cty.Value
	done  bool
}

func (l *loader) loadLocals(blocks []*hcl.Block) {
	var order []string
	for _, b := range blocks {
		attrs, diags := b.Body.JustAttributes()
		l.diags = append(l.diags, diags...)
		for _, a := range sortedAttrs(attrs) {
			if prev, ok := l.locals[a.Name]; ok {
				l.errorf(a.NameRange.Ptr(), "Duplicate local value", "Local value %q was already defined at %s.", a.Name, prev.attr.NameRange)
				continue
			}
			l.locals[a.Name] = &local{attr: a, value: cty.DynamicVal}
			order = append(order, a.Name)
		}
	}
	// References are checked before anything is evaluated, so a bad
	// reference is reported once, at its source.
	bad := make(map[string]bool)
	for _, name := range order {
		lo := l.locals[name]
		if diags := l.checkRefs(lo.attr.Expr, true); diags.HasErrors() {
			l.diags = append(l.diags, diags...)
			bad[name] = true
		}
		for _, t := range lo.attr.Expr.Variables() {
			if t.RootName() == "local" {
				if n := attrName(t); n != "" && l.locals[n] != nil && !slices.Contains(lo.deps, n) {
					lo.deps = append(lo.deps, n)
				}
			}
		}
	}
	// Depth-first evaluation in dependency order; a cycle is reported once
	// with the whole loop.
	state := make(map[string]int) // 0 new, 1 in progress, 2 done
	var stack []string
	var visit func(name string) bool
	visit = func(name string) bool {
		switch state[name] {
		case 1:
			i := slices.Index(stack, name)
			loop := append(slices.Clone(stack[i:]), name)
			for j := range loop {
				loop[j] = "local." + loop[j]
			}
			l.errorf(l.locals[name].attr.NameRange.Ptr(), "Cycle in local values", "These local values refer to each other in a loop, so none of them can be evaluated: %s.", strings.Join(loop, " -> "))
			for _, n := range stack[i:] {
				bad[n] = true
			}
			return false
		case 2:
			return !bad[name]
		}
		if l.cancelled() {
			return false
		}
		state[name] = 1
		stack = append(stack, name)
		lo := l.locals[name]
		ok := !bad[name]
		for _, d := range lo.deps {
			if !visit(d) {
				ok = false
			}
			lo.vars = appendNew(lo.vars, l.locals[d].vars...)
		}
		lo.vars = appendNew(lo.vars, l.directVars(lo.attr.Expr)...)
		stack = stack[:len(stack)-1]
		state[name] = 2
		if !ok || bad[name] {
			bad[name] = true
			return false
		}
		val, diags := lo.attr.Expr.Value(l.localContext(lo))
		l.diags = append(l.diags, diags...)
		if !diags.HasErrors() {
			if d := sizeDiag(val, "local."+name, lo.attr.Expr); d != nil {
				l.diags = append(l.diags, d)
				diags = append(diags, d)
			}
		}
		if diags.HasErrors() {
			bad[name] = true
			val = cty.DynamicVal
		}
		lo.value, lo.done = val, true
		return !bad[name]
	}
	for _, name := range order {
		visit(name)
	}
	l.publishLocals()
}

// localContext is the context a local is evaluated in: its file's
// context with a `local` object of only the locals it refers to (all
// evaluated by then). Publishing every local for each one made evaluation
// quadratic in the number of locals; this keeps it linear in the number of
// references.
func (l *loader) localContext(lo *local) *hcl.EvalContext {
	parent := l.evalContext(lo.attr.Range.Filename)
	deps := make(map[string]cty.Value, len(lo.deps))
	for _, d := range lo.deps {
		deps[d] = l.locals[d].value
	}
	ctx := parent.NewChild()
	ctx.Functions = parent.Functions // hcl suggests function names from the innermost context
	ctx.Variables = map[string]cty.Value{"local": cty.ObjectVal(deps)}
	return ctx
}

func (l *loader) publishLocals() {
	m := make(map[string]cty.Value, len(l.locals))
	for name, lo := range l.locals {
		m[name] = lo.value
	}
	l.root.Variables["local"] = cty.ObjectVal(m)
}

// attrName returns the attribute name after the root of var.NAME or
// local.NAME, or "".
func attrName(t hcl.Traversal) string {
	if len(t) < 2 {
		return ""
	}
	if a, ok := t[1].(hcl.TraverseAttr); ok {
		return a.Name
	}
	return ""
}

// directVars lists the variables an expression references directly.
func (l *loader) directVars(expr hcl.Expression) []string {
	var out []string
	for _, t := range expr.Variables() {
		if t.RootName() == "var" {
			if n := attrName(t); n != "" {
				out = appendNew(out, n)
			}
		}
	}
	return out
}

// exprVars lists the variables an expression depends on, directly or
// through locals, sorted.
func (l *loader) exprVars(expr hcl.Expression) []string {
	out := l.directVars(expr)
	for _, t := range expr.Variables() {
		if t.RootName() == "local" {
			if lo := l.locals[attrName(t)]; lo != nil {
				out = appendNew(out, lo.vars...)
			}
		}
	}
	slices.Sort(out)
	return out
}

func appendNew(dst []string, items ...string) []string {
	for _, s := range items {
		if !slices.Contains(dst, s) {
			dst = append(dst, s)
		}
	}
	return dst
}

// checkRefs reports references to undeclared variables and locals, and to
// anything other than var and local (allowLocals false forbids locals, as
// in variable validations).
func (l *loader) checkRefs(expr hcl.Expression, allowLocals bool) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, t := range expr.Variables() {
		rng := t.SourceRange()
		root := t.RootName()
		switch root {
		case "var", "local":
			if root == "local" && !allowLocals {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Local values not allowed here",
					Detail: "A variable validation may refer only to input variables (var.NAME), not to local values.", Subject: &rng})
				continue
			}
			name := attrName(t)
			if name == "" {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid reference",
					Detail: fmt.Sprintf("A reference to %s must be followed by a name: %s.NAME.", root, root), Subject: &rng})
				continue
			}
			if root == "var" && l.vars[name] == nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference to undeclared input variable",
					Detail:  fmt.Sprintf("An input variable named %q has not been declared; declare it with a variable %q { } block.%s", name, name, didYouMean(name, slices.Collect(maps.Keys(l.vars)))),
					Subject: &rng})
			}
			if root == "local" && l.locals[name] == nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Reference to undeclared local value",
					Detail:  fmt.Sprintf("A local value named %q has not been declared in any locals block.%s", name, didYouMean(name, slices.Collect(maps.Keys(l.locals)))),
					Subject: &rng})
			}
		default:
			hint := ""
			switch {
			case l.vars[root] != nil:
				hint = fmt.Sprintf(" Did you mean var.%s?", root)
			case l.locals[root] != nil:
				hint = fmt.Sprintf(" Did you mean local.%s?", root)
			case suggest(root, []string{"var", "local"}) != "":
				hint = didYouMean(root, []string{"var", "local"})
			}
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unknown variable",
				Detail:  fmt.Sprintf("There is no variable named %q. Input variables are referenced as var.NAME and local values as local.NAME.%s", root, hint),
				Subject: &rng})
		}
	}
	return diags
}

// sortedAttrs returns attributes in source order.
func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	out := slices.Collect(maps.Values(attrs))
	slices.SortFunc(out, func(a, b *hcl.Attribute) int {
		if c := strings.Compare(a.Range.Filename, b.Range.Filename); c != 0 {
			return c
		}
		return a.Range.Start.Byte - b.Range.Start.Byte
	})
	return out
}
