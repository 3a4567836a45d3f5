package manifest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns src in canonical HCL layout (hclwrite: aligned '=',
// two-space indentation, comments kept). Source with syntax errors is not
// formatted: the diagnostics are returned instead.
func Format(src []byte, filename string) ([]byte, hcl.Diagnostics) {
	if _, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos); diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), nil
}

// blockStep is one block on the way to an attribute.
type blockStep struct {
	typ    string
	labels []string
	create bool // created when missing (nested blocks); top-level blocks must exist
}

// address is a parsed `set` address: the blocks leading to an attribute.
type address struct {
	steps []blockStep
	attr  string
	text  string
}

// parseAddress parses a `set` address:
//
//	variable.NAME.default | variable.NAME.description
//	locals.NAME
//	compose.ATTR
//	defaults.SETTING
//	variant.LABEL.SETTING
//
// where SETTING is ATTR (name, description, arches on a variant; arches on
// defaults), BLOCK.ATTR (composefs.enabled), disk.partition.LABEL.ATTR, or
// arch.ARCH.BLOCK.ATTR / arch.ARCH.disk.partition.LABEL.ATTR. Every name is
// checked against the schema.
func parseAddress(s string) (*address, error) {
	a := &address{text: s}
	parts := strings.Split(s, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("address %q has an empty part", s)
		}
	}
	rootNames := []string{"variable", "locals", "compose", "defaults", "variant"}
	need := func(n int, form string) error {
		if len(parts) != n {
			return fmt.Errorf("address %q: want %s", s, form)
		}
		return nil
	}
	switch parts[0] {
	case "variable":
		if err := need(3, "variable.NAME.default or variable.NAME.description"); err != nil {
			return nil, err
		}
		if parts[2] != "default" && parts[2] != "description" {
			return nil, fmt.Errorf("address %q: a variable's %q cannot be set; use default or description.%s", s, parts[2], didYouMean(parts[2], []string{"default", "description"}))
		}
		a.steps = []blockStep{{typ: "variable", labels: []string{parts[1]}}}
		a.attr = parts[2]
		return a, nil
	case "locals":
		if err := need(2, "locals.NAME"); err != nil {
			return nil, err
		}
		if !hclsyntax.ValidIdentifier(parts[1]) {
			return nil, fmt.Errorf("address %q: %q is not a valid local value name", s, parts[1])
		}
		a.steps = []blockStep{{typ: "locals"}}
		a.attr = parts[1]
		return a, nil
	case "compose":
		if err := need(2, "compose.ATTR"); err != nil {
			return nil, err
		}
		if composeSpec.attr(parts[1]) == nil {
			an, _ := composeSpec.names()
			return nil, fmt.Errorf("address %q: the compose block has no attribute %q (it has %s).%s", s, parts[1], quoteList(an), didYouMean(parts[1], an))
		}
		a.steps = []blockStep{{typ: "compose"}}
		a.attr = parts[1]
		return a, nil
	case "defaults":
		a.steps = []blockStep{{typ: "defaults"}}
		return a, a.setting(parts[1:], defaultsSpec, true)
	case "variant":
		if len(parts) < 3 {
			return nil, fmt.Errorf("address %q: want variant.LABEL.SETTING", s)
		}
		a.steps = []blockStep{{typ: "variant", labels: []string{parts[1]}}}
		return a, a.setting(parts[2:], variantSpec, true)
	}
	return nil, fmt.Errorf("address %q must start with %s.%s", s, quoteList(rootNames), didYouMean(parts[0], rootNames))
}

// setting parses the part of an address inside a defaults, variant or arch
// body.
func (a *address) setting(parts []string, spec *blockSpec, archAllowed bool) error {
	if len(parts) == 0 {
		return fmt.Errorf("address %q names a block, not an attribute", a.text)
	}
	attrs, blocks := spec.names()
	if len(parts) == 1 {
		if spec.attr(parts[0]) == nil {
			return a.unknown(parts[0], "attribute", spec.name, attrs, blocks)
		}
		a.attr = parts[0]
		return nil
	}
	if parts[0] == "arch" && archAllowed {
		if !slices.Contains(arches, parts[1]) {
			return fmt.Errorf("address %q: %q is not an architecture (%s).%s", a.text, parts[1], quoteList(arches), didYouMean(parts[1], arches))
		}
		a.steps = append(a.steps, blockStep{typ: "arch", labels: []string{parts[1]}, create: true})
		return a.setting(parts[2:], archSpec, false)
	}
	bs := spec.block(parts[0])
	if bs == nil || bs.name == "arch" {
		return a.unknown(parts[0], "block", spec.name, attrs, blocks)
	}
	a.steps = append(a.steps, blockStep{typ: bs.name, create: true})
	rest := parts[1:]
	if bs.name == "disk" && len(rest) >= 1 && rest[0] == "partition" {
		if len(rest) != 3 {
			return fmt.Errorf("address %q: want disk.partition.LABEL.ATTR", a.text)
		}
		if !labelRE.MatchString(rest[1]) {
			return fmt.Errorf("address %q: %q is not a valid partition name", a.text, rest[1])
		}
		a.steps = append(a.steps, blockStep{typ: "partition", labels: []string{rest[1]}, create: true})
		bs, rest = partitionSpec, rest[2:]
	}
	if len(rest) != 1 {
		return fmt.Errorf("address %q: want %s.ATTR", a.text, bs.name)
	}
	if bs.attr(rest[0]) == nil {
		an, bn := bs.names()
		return a.unknown(rest[0], "attribute", bs.name, an, bn)
	}
	a.attr = rest[0]
	return nil
}

func (a *address) unknown(name, what, block string, attrs, blocks []string) error {
	all := append(slices.Clone(attrs), blocks...)
	hint := didYouMean(name, all)
	if hint == "" {
		if p, ok := attrPlaces[name]; ok {
			hint = fmt.Sprintf(" %q belongs in %s.", name, strings.Join(dedupe(p), " or "))
		}
	}
	return fmt.Errorf("address %q: a %s block has no %s %q.%s", a.text, block, what, name, hint)
}

// Set edits one attribute of a manifest file in place: assignment is
// ADDRESS=VALUE, where ADDRESS is variable.NAME.default,
// variable.NAME.description, locals.NAME, compose.ATTR, defaults.SETTING or
// variant.LABEL.SETTING, and SETTING is an attribute path such as
// composefs.enabled, disk.partition.esp.size or arch.aarch64.uki.stub
// (checked against the schema, with "did you mean" hints). VALUE is an HCL
// expression
// (`false`, `"12GiB"`, `["raw"]`, `var.release`). Missing nested blocks
// (composefs, arch "aarch64", partition "esp", ...) are created; the
// top-level block (variant "NAME", defaults, variable "NAME", compose,
// locals) must already be in the file. Comments and layout are kept: on a
// formatted file only the edited line changes. Set does not validate the
// result against the rest of the manifest set; parse the edited set with
// [Parse] before writing it.
func Set(src []byte, filename, assignment string) ([]byte, hcl.Diagnostics) {
	addrText, valueText, ok := strings.Cut(assignment, "=")
	if !ok {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid assignment",
			Detail: fmt.Sprintf("%q is not ADDRESS=VALUE (for example variant.coreos.composefs.enabled=false).", assignment)}}
	}
	addr, err := parseAddress(strings.TrimSpace(addrText))
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid address", Detail: err.Error() + "."}}
	}
	tokens, diags := valueTokens(valueText)
	if diags.HasErrors() {
		return nil, diags
	}
	syn, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	f, diags := hclwrite.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	body := f.Body()
	synBody := syn.Body.(*hclsyntax.Body)
	for i, st := range addr.steps {
		var blk *hclwrite.Block
		if st.typ == "locals" {
			blk = localsBlock(body, addr.attr)
		} else {
			blk = body.FirstMatchingBlock(st.typ, st.labels)
		}
		if blk == nil {
			if i == 0 {
				what := st.typ
				if len(st.labels) > 0 {
					what = fmt.Sprintf("%s %q", st.typ, st.labels[0])
				}
				return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Block not in file",
					Detail: fmt.Sprintf("%s has no %s block; edit the file that declares it.", filename, what)}}
			}
			blk = body.AppendNewBlock(st.typ, st.labels)
			synBody = nil // a new block: nothing to place the attribute after
		} else if synBody != nil {
			synBody = matchingSyntaxBlock(synBody, blk)
		}
		body = blk.Body()
	}
	if body.GetAttribute(addr.attr) == nil && synBody != nil && len(synBody.Blocks) > 0 {
		// hclwrite appends a new attribute after the nested blocks; put it
		// with the other attributes instead (or first), then reformat.
		return insertAttribute(src, synBody, addr.attr, strings.TrimSpace(valueText)), nil
	}
	body.SetAttributeRaw(addr.attr, tokens)
	return f.Bytes(), nil
}

// matchingSyntaxBlock finds the hclsyntax block that an hclwrite block
// (found by type and labels, first match) corresponds to.
func matchingSyntaxBlock(body *hclsyntax.Body, blk *hclwrite.Block) *hclsyntax.Body {
	for _, b := range body.Blocks {
		if b.Type == blk.Type() && slices.Equal(b.Labels, blk.Labels()) {
			if b.Type == "locals" {
				// localsBlock prefers the block defining the attribute;
				// compare by attribute set to follow it.
				if !sameAttributes(b.Body, blk.Body()) {
					continue
				}
			}
			return b.Body
		}
	}
	return nil
}

func sameAttributes(a *hclsyntax.Body, b *hclwrite.Body) bool {
	if len(a.Attributes) != len(b.Attributes()) {
		return false
	}
	for name := range a.Attributes {
		if b.GetAttribute(name) == nil {
			return false
		}
	}
	return true
}

// insertAttribute adds `name = value` on the line after the last attribute
// of body (or as the body's first line, followed by a blank line, when it
// has only blocks) and formats the result.
func insertAttribute(src []byte, body *hclsyntax.Body, name, value string) []byte {
	pos := -1
	for _, a := range body.Attributes {
		pos = max(pos, a.SrcRange.End.Byte)
	}
	line := name + " = " + value + "\n"
	if pos < 0 {
		pos = body.SrcRange.Start.Byte // the opening brace
		line += "\n"
	}
	if i := strings.IndexByte(string(src[pos:]), '\n'); i >= 0 {
		pos += i + 1
	} else {
		pos = len(src)
		line = "\n" + line
	}
	out := make([]byte, 0, len(src)+len(line))
	out = append(append(append(out, src[:pos]...), line...), src[pos:]...)
	return hclwrite.Format(out)
}

// localsBlock finds the locals block that defines name, else the first.
func localsBlock(body *hclwrite.Body, name string) *hclwrite.Block {
	var first *hclwrite.Block
	for _, b := range body.Blocks() {
		if b.Type() != "locals" {
			continue
		}
		if b.Body().GetAttribute(name) != nil {
			return b
		}
		if first == nil {
			first = b
		}
	}
	return first
}

// valueTokens parses VALUE as an HCL expression and returns its tokens.
func valueTokens(value string) (hclwrite.Tokens, hcl.Diagnostics) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Missing value", Detail: "The assignment has no value after '='."}}
	}
	if _, diags := hclsyntax.ParseExpression([]byte(value), "VALUE", hcl.InitialPos); diags.HasErrors() {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid value",
			Detail: fmt.Sprintf("The value %s is not an HCL expression: %s. A string must be quoted, for example '\"12GiB\"' in the shell.", value, diags[0].Summary)}}
	}
	f, diags := hclwrite.ParseConfig([]byte("v = "+value+"\n"), "VALUE", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	a := f.Body().GetAttribute("v")
	if a == nil || len(f.Body().Attributes()) != 1 || len(f.Body().Blocks()) != 0 {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Invalid value", Detail: fmt.Sprintf("The value %s is not a single HCL expression.", value)}}
	}
	return a.Expr().BuildTokens(nil), nil
}
