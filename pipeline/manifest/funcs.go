package manifest

import (
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// maxFileSize bounds what file() reads: manifests include small text files
// (SBAT CSV, kernel argument lists), never images.
const maxFileSize = 1 << 20

// functions returns the functions available in every expression. The set is
// go-cty's standard library minus functions that can make huge values from
// tiny input (range, setproduct, indent) or depend on the clock, plus try,
// can, startswith, endswith, basename and dirname. file() is added per
// directory by [fileFunctions]. Every function is bounded
// ([boundedFunctions]).
func functions() map[string]function.Function {
	return boundedFunctions(map[string]function.Function{
		"abs":             stdlib.AbsoluteFunc,
		"basename":        basenameFunc,
		"can":             tryfunc.CanFunc,
		"ceil":            stdlib.CeilFunc,
		"chomp":           stdlib.ChompFunc,
		"chunklist":       stdlib.ChunklistFunc,
		"coalesce":        stdlib.CoalesceFunc,
		"coalescelist":    stdlib.CoalesceListFunc,
		"compact":         stdlib.CompactFunc,
		"concat":          stdlib.ConcatFunc,
		"contains":        stdlib.ContainsFunc,
		"csvdecode":       stdlib.CSVDecodeFunc,
		"dirname":         dirnameFunc,
		"distinct":        stdlib.DistinctFunc,
		"element":         stdlib.ElementFunc,
		"endswith":        endswithFunc,
		"flatten":         stdlib.FlattenFunc,
		"floor":           stdlib.FloorFunc,
		"format":          boundedFormat(stdlib.FormatFunc),
		"formatlist":      boundedFormat(stdlib.FormatListFunc),
		"join":            stdlib.JoinFunc,
		"jsondecode":      stdlib.JSONDecodeFunc,
		"jsonencode":      stdlib.JSONEncodeFunc,
		"keys":            stdlib.KeysFunc,
		"length":          lengthFunc,
		"lookup":          stdlib.LookupFunc,
		"lower":           stdlib.LowerFunc,
		"max":             stdlib.MaxFunc,
		"merge":           stdlib.MergeFunc,
		"min":             stdlib.MinFunc,
		"parseint":        stdlib.ParseIntFunc,
		"regex":           stdlib.RegexFunc,
		"regexall":        stdlib.RegexAllFunc,
		"regex_replace":   stdlib.RegexReplaceFunc,
		"replace":         stdlib.ReplaceFunc,
		"reverse":         stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		"setsubtract":     stdlib.SetSubtractFunc,
		"setunion":        stdlib.SetUnionFunc,
		"signum":          stdlib.SignumFunc,
		"slice":           stdlib.SliceFunc,
		"sort":            stdlib.SortFunc,
		"split":           stdlib.SplitFunc,
		"startswith":      startswithFunc,
		"strlen":          stdlib.StrlenFunc,
		"strrev":          stdlib.ReverseFunc,
		"substr":          stdlib.SubstrFunc,
		"title":           stdlib.TitleFunc,
		"tobool":          stdlib.MakeToFunc(cty.Bool),
		"tolist":          stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":           stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber":        stdlib.MakeToFunc(cty.Number),
		"toset":           stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tostring":        stdlib.MakeToFunc(cty.String),
		"trim":            stdlib.TrimFunc,
		"trimprefix":      stdlib.TrimPrefixFunc,
		"trimspace":       stdlib.TrimSpaceFunc,
		"trimsuffix":      stdlib.TrimSuffixFunc,
		"try":             tryfunc.TryFunc,
		"upper":           stdlib.UpperFunc,
		"values":          stdlib.ValuesFunc,
		"zipmap":          stdlib.ZipmapFunc,
	})
}

// functionNames lists the functions manifests may call, sorted.
func functionNames() []string {
	fs := functions()
	fs["file"] = function.Function{}
	return slices.Sorted(maps.Keys(fs))
}

// fileFunctions returns the functions that depend on the directory of the
// manifest file being evaluated.
func fileFunctions(dir string) map[string]function.Function {
	return boundedFunctions(map[string]function.Function{"file": fileFunc(dir)})
}

// fileFunc reads a UTF-8 text file; a relative path is taken against dir.
// Only regular files up to 1 MiB are read.
func fileFunc(dir string) function.Function {
	return function.New(&function.Spec{
		Description: "Reads a UTF-8 text file, relative to the manifest file's directory.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			f, err := os.Open(p)
			if err != nil {
				return cty.NilVal, function.NewArgErrorf(0, "reading %s: %s", p, unwrapPathError(err))
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return cty.NilVal, function.NewArgErrorf(0, "reading %s: %s", p, unwrapPathError(err))
			}
			if !st.Mode().IsRegular() {
				return cty.NilVal, function.NewArgErrorf(0, "%s is not a regular file", p)
			}
			b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
			if err != nil {
				return cty.NilVal, function.NewArgErrorf(0, "reading %s: %s", p, unwrapPathError(err))
			}
			if len(b) > maxFileSize {
				return cty.NilVal, function.NewArgErrorf(0, "%s is larger than %d bytes", p, maxFileSize)
			}
			if !utf8.Valid(b) {
				return cty.NilVal, function.NewArgErrorf(0, "%s is not valid UTF-8 text", p)
			}
			return cty.StringVal(string(b)), nil
		},
	})
}

func unwrapPathError(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// lengthFunc is go-cty's length, extended to count the characters of a
// string as manifest authors know it from Terraform and Packer.
var lengthFunc = function.New(&function.Spec{
	Description: "Returns the number of elements of a collection or the number of characters of a string.",
	Params:      []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true, AllowUnknown: true, AllowMarked: true}},
	Type: func(args []cty.Value) (cty.Type, error) {
		if args[0].Type() == cty.String {
			return cty.Number, nil
		}
		return stdlib.LengthFunc.ReturnType([]cty.Type{args[0].Type()})
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if args[0].Type() == cty.String {
			return stdlib.Strlen(args[0])
		}
		return stdlib.Length(args[0])
	},
})

// hugeVerb matches a format verb with a width or precision of five or more
// digits ("%99999d"), which would build a huge string from a tiny manifest.
var hugeVerb = regexp.MustCompile(`%[-+# 0]*[0-9]{5,}|%[-+# 0]*[0-9]*\.[0-9]{5,}`)

// boundedFormat wraps format/formatlist to refuse huge widths.
func boundedFormat(f function.Function) function.Function {
	params := f.Params()
	spec := &function.Spec{
		Description: f.Description(),
		Params:      params,
		VarParam:    f.VarParam(),
		Type: func(args []cty.Value) (cty.Type, error) {
			return f.ReturnTypeForValues(args)
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if s := args[0]; s.IsKnown() && !s.IsNull() && s.Type() == cty.String && hugeVerb.MatchString(s.AsString()) {
				return cty.NilVal, function.NewArgErrorf(0, "widths and precisions above 9999 are not supported")
			}
			return f.Call(args)
		},
	}
	return function.New(spec)
}

var basenameFunc = function.New(&function.Spec{
	Description: "Returns the last element of a slash-separated path.",
	Params:      []function.Parameter{{Name: "path", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(path.Base(args[0].AsString())), nil
	},
})

var dirnameFunc = function.New(&function.Spec{
	Description: "Returns all but the last element of a slash-separated path.",
	Params:      []function.Parameter{{Name: "path", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(path.Dir(args[0].AsString())), nil
	},
})

var startswithFunc = function.New(&function.Spec{
	Description: "Reports whether a string starts with a prefix.",
	Params:      []function.Parameter{{Name: "str", Type: cty.String}, {Name: "prefix", Type: cty.String}},
	Type:        function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.BoolVal(strings.HasPrefix(args[0].AsString(), args[1].AsString())), nil
	},
})

var endswithFunc = function.New(&function.Spec{
	Description: "Reports whether a string ends with a suffix.",
	Params:      []function.Parameter{{Name: "str", Type: cty.String}, {Name: "suffix", Type: cty.String}},
	Type:        function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.BoolVal(strings.HasSuffix(args[0].AsString(), args[1].AsString())), nil
	},
})
