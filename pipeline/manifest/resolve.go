package manifest

import (
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// resolved is one variant on one arch: the Config and, for every setting,
// the layer value it came from.
type resolved struct {
	cfg     *Config
	variant *variantDecl
	layers  []*layer // lowest priority first
	paths   []string // settings in schema order
	specs   map[string]*attrSpec
	src     map[string]*source // nil: built-in default
	notes   map[string]string  // how a derived default was computed
	shown   map[string]string  // rendered value
	missing []string           // required settings nobody set
}

// source is a value and the layer that set it.
type source struct {
	val *value
	ly  *layer
}

// resolve stacks defaults, defaults' arch block, the variant and the
// variant's arch block, attribute by attribute, then fills built-in
// defaults in schema order (so derived defaults see what they derive from).
func resolve(defaults *layer, v *variantDecl, arch string) *resolved {
	layers := []*layer{defaults}
	if a := defaults.arches[arch]; a != nil {
		layers = append(layers, a)
	}
	layers = append(layers, v.body)
	if a := v.body.arches[arch]; a != nil {
		layers = append(layers, a)
	}
	r := &resolved{
		cfg:     &Config{Variant: v.label, Arch: arch},
		variant: v,
		layers:  layers,
		specs:   make(map[string]*attrSpec),
		src:     make(map[string]*source),
		notes:   make(map[string]string),
		shown:   make(map[string]string),
	}
	for _, lf := range leaves {
		switch {
		case lf.spec == archesAttr:
			r.record(lf.path, lf.spec, r.lookup(lf.path), slices.Clone(v.arches), "")
		case lf.spec == nil:
			r.partitions()
		default:
			r.apply(lf.path, lf.spec, nil)
		}
	}
	return r
}

func (r *resolved) lookup(path string) *source {
	for i := len(r.layers) - 1; i >= 0; i-- {
		if v, ok := r.layers[i].values[path]; ok {
			return &source{val: v, ly: r.layers[i]}
		}
	}
	return nil
}

// partitions merges partition blocks by label: a label's first appearance
// (lowest layer first) fixes its position, and each attribute comes from
// the highest layer that sets it.
func (r *resolved) partitions() {
	var labels []string
	for _, ly := range r.layers {
		for _, p := range ly.parts {
			labels = appendNew(labels, p)
		}
	}
	r.cfg.Disk.Partitions = []Partition{}
	for _, label := range labels {
		p := &Partition{Name: label}
		for _, lf := range partitionLeaves {
			r.apply("disk.partition."+label+"."+lf.spec.name, lf.spec, p)
		}
		r.cfg.Disk.Partitions = append(r.cfg.Disk.Partitions, *p)
	}
}

// apply sets one field from the winning layer or the built-in default.
func (r *resolved) apply(path string, spec *attrSpec, p *Partition) {
	src := r.lookup(path)
	var v any
	note := ""
	switch {
	case src != nil:
		v = src.val.v
	case spec.derive != nil:
		v, note = spec.derive(r.cfg, p)
	case spec.dflt != nil:
		v = spec.dflt
	default:
		r.missing = append(r.missing, path)
	}
	if v != nil {
		setField(spec.field(r.cfg, p), v)
	}
	r.record(path, spec, src, v, note)
}

func (r *resolved) record(path string, spec *attrSpec, src *source, v any, note string) {
	r.paths = append(r.paths, path)
	r.specs[path] = spec
	r.src[path] = src
	r.notes[path] = note
	r.shown[path] = render(spec.kind, v)
}

func setField(ptr any, v any) {
	switch p := ptr.(type) {
	case *string:
		*p = v.(string)
	case *bool:
		*p = v.(bool)
	case *int:
		*p = int(v.(int64))
	case *int64:
		*p = v.(int64)
	case *[]string:
		*p = slices.Clone(v.([]string))
	case *time.Duration:
		*p = v.(time.Duration)
	default:
		panic("manifest: unsupported field type") // programmer error in the schema tables
	}
}

// render shows a value in HCL syntax; sizes and durations in canonical form.
func render(k kind, v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return renderCty(cty.StringVal(x))
	case bool:
		return strconv.FormatBool(x)
	case int64:
		if k == kindSize {
			if x == 0 {
				return "0"
			}
			return strconv.Quote(FormatSize(x))
		}
		return strconv.FormatInt(x, 10)
	case []string:
		if len(x) == 0 {
			return "[]"
		}
		vals := make([]cty.Value, len(x))
		for i, s := range x {
			vals[i] = cty.StringVal(s)
		}
		return renderCty(cty.ListVal(vals))
	case time.Duration:
		return strconv.Quote(FormatDuration(x))
	}
	return "?"
}

// rangeOf is where a setting was written, or the variant block header for
// built-in defaults (diagnostic subjects).
func (r *resolved) rangeOf(path string) *hcl.Range {
	if s := r.src[path]; s != nil {
		return s.val.rng.Ptr()
	}
	return r.variant.rng.Ptr()
}

// explicit reports whether some layer set the path.
func (r *resolved) explicit(path string) bool { return r.src[path] != nil }

// fromArchBlock reports whether the path was set inside an arch block.
func (r *resolved) fromArchBlock(path string) bool {
	s := r.src[path]
	return s != nil && (s.ly.origin == OriginDefaultsArch || s.ly.origin == OriginVariantArch)
}

// partRange is the header of the highest-priority block declaring a
// partition.
func (r *resolved) partRange(label string) *hcl.Range {
	for i := len(r.layers) - 1; i >= 0; i-- {
		if rng, ok := r.layers[i].partRng[label]; ok {
			return rng.Ptr()
		}
	}
	return r.variant.rng.Ptr()
}

// settings renders the provenance of every setting.
func (r *resolved) settings(m *Manifest) []Setting {
	out := make([]Setting, 0, len(r.paths))
	for _, path := range r.paths {
		s := Setting{Path: path, Value: r.shown[path], Origin: OriginDefault, Note: r.notes[path]}
		if src := r.src[path]; src != nil {
			s.Origin = src.ly.origin
			s.Block = src.ly.block
			s.At = &Location{File: src.val.rng.Filename, Line: src.val.rng.Start.Line, Column: src.val.rng.Start.Column}
			for _, name := range src.val.vars {
				for _, v := range m.vars {
					if v.name == name {
						s.Vars = append(s.Vars, VarRef{Name: name, Value: renderCty(v.value), Source: v.from, From: v.where})
					}
				}
			}
		}
		out = append(out, s)
	}
	return out
}
