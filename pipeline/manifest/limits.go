package manifest

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// Bounds on the values manifest expressions build. A manifest is small and
// its values are smaller (names, kernel arguments, a file() of at most
// 1 MiB), but a few lines can double a value again and again
// (`b = concat(local.a, local.a)`, `c = "${local.b}${local.b}"`, …) until
// memory runs out. Every value is measured through its nested
// collections, so a list holding the same string twice counts it twice.
const (
	// maxValueText bounds the bytes of all strings in one value.
	maxValueText = 4 << 20
	// maxValueElems bounds the elements of all collections in one value.
	maxValueElems = 100_000
)

// valueSize measures v through its nested collections, stopping as soon
// as a bound is passed; it reports which bound, or "".
func valueSize(v cty.Value) string {
	var text, elems int
	var walk func(v cty.Value) bool
	walk = func(v cty.Value) bool {
		v, _ = v.Unmark()
		if !v.IsKnown() || v.IsNull() {
			return true
		}
		ty := v.Type()
		switch {
		case ty == cty.String:
			text += len(v.AsString())
			return text <= maxValueText
		case ty.IsPrimitiveType():
			return true
		case ty.IsListType() || ty.IsSetType() || ty.IsTupleType() || ty.IsMapType() || ty.IsObjectType():
			elems += v.LengthInt()
			if elems > maxValueElems {
				return false
			}
			for it := v.ElementIterator(); it.Next(); {
				k, e := it.Element()
				if ty.IsMapType() || ty.IsObjectType() {
					if !walk(k) {
						return false
					}
				}
				if !walk(e) {
					return false
				}
			}
		}
		return true
	}
	if walk(v) {
		return ""
	}
	if text > maxValueText {
		return fmt.Sprintf("more than %d MiB of text", maxValueText>>20)
	}
	return fmt.Sprintf("more than %d elements", maxValueElems)
}

// sizeDiag is the diagnostic for a value over the bounds, or nil. what
// names the value ("local.x", "the value of build.kernel"); the
// diagnostic points at expr.
func sizeDiag(v cty.Value, what string, expr hcl.Expression) *hcl.Diagnostic {
	over := valueSize(v)
	if over == "" {
		return nil
	}
	rng := expr.Range()
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Value too large",
		Detail: fmt.Sprintf("%s would hold %s (counted through nested lists, maps and objects); "+
			"a manifest value may hold at most %d MiB of text and %d elements.", what, over, maxValueText>>20, maxValueElems),
		Subject: &rng,
	}
}

// boundedFunctions wraps each function so that its arguments together and
// its result stay within the bounds: the arguments are measured before the
// call (most functions make a result about as large as their arguments),
// the result after it. replace and regex_replace, whose result can be the
// product of their arguments' sizes, are bounded before the call too.
// try and can, whose arguments are expressions, are left as they are.
func boundedFunctions(fs map[string]function.Function) map[string]function.Function {
	for name, f := range fs {
		switch name {
		case "try", "can":
			continue
		}
		fs[name] = bounded(name, f)
	}
	return fs
}

func bounded(name string, f function.Function) function.Function {
	params := f.Params()
	return function.New(&function.Spec{
		Description: f.Description(),
		Params:      params,
		VarParam:    f.VarParam(),
		Type: func(args []cty.Value) (cty.Type, error) {
			return f.ReturnTypeForValues(args)
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if over := valueSize(cty.TupleVal(args)); over != "" {
				return cty.NilVal, fmt.Errorf("its arguments hold %s; a manifest value may hold at most %d MiB of text and %d elements", over, maxValueText>>20, maxValueElems)
			}
			if err := replaceBound(name, args); err != nil {
				return cty.NilVal, err
			}
			res, err := f.Call(args)
			if err != nil {
				return res, err
			}
			if over := valueSize(res); over != "" {
				return cty.NilVal, fmt.Errorf("its result would hold %s; a manifest value may hold at most %d MiB of text and %d elements", over, maxValueText>>20, maxValueElems)
			}
			return res, nil
		},
	})
}

// replaceBound refuses a replace or regex_replace whose result would
// pass the text bound, before it is built: each match takes the
// replacement, and in regex_replace each "$0"-like reference in it may
// repeat the whole match.
func replaceBound(name string, args []cty.Value) error {
	if name != "replace" && name != "regex_replace" || len(args) != 3 {
		return nil
	}
	var strs [3]string
	for i, a := range args {
		a, _ = a.Unmark()
		if !a.IsKnown() || a.IsNull() || a.Type() != cty.String {
			return nil
		}
		strs[i] = a.AsString()
	}
	s, p, r := strs[0], strs[1], strs[2]
	size := len(s)
	if name == "replace" {
		size += strings.Count(s, p) * max(0, len(r)-len(p))
	} else if re, err := regexp.Compile(p); err == nil {
		longest := 0
		locs := re.FindAllStringIndex(s, -1)
		for _, m := range locs {
			longest = max(longest, m[1]-m[0])
		}
		size += len(locs) * (len(r) + len(r)/2*longest)
	}
	if size > maxValueText {
		return fmt.Errorf("its result could hold more than %d MiB of text; a manifest value may hold at most %d MiB of text", maxValueText>>20, maxValueText>>20)
	}
	return nil
}
