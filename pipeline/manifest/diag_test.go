package manifest

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

func hasDiag(diags hcl.Diagnostics, summary, detail string) bool {
	for _, d := range diags {
		if d.Summary == summary && strings.Contains(d.Detail, detail) {
			return true
		}
	}
	return false
}

// variant wraps a variant body with a source image.
func variant(body string) string {
	return `
variant "v" {
  source {
    image = "docker://quay.io/fedora/fedora-iot:43"
  }
` + body + "\n}\n"
}

// TestDiagnostics covers every diagnostic class: each case must produce
// exactly the listed diagnostics (so follow-on noise is caught too).
func TestDiagnostics(t *testing.T) {
	type want struct {
		sev     hcl.DiagnosticSeverity
		summary string
		detail  string
		line    int // 0: no subject
	}
	E, W := hcl.DiagError, hcl.DiagWarning
	tests := []struct {
		name  string
		src   string // appended to base unless it has its own compose block
		opts  Options
		diags []want
	}{
		{"syntax error", "variant \"v\" {\n  source {\n", Options{}, []want{{E, "Unclosed configuration block", "no closing brace", 16}}},
		{"typo with did-you-mean", variant("  composefs {\n    enabld = false\n  }"), Options{}, []want{
			{E, "Unsupported argument", `Did you mean "enabled"?`, 21}}},
		{"misplaced attribute", variant("  verity = true"), Options{}, []want{
			{E, "Unsupported argument", `"verity" belongs in a composefs block or a partition block`, 20}}},
		{"unknown block", variant("  sourse {}"), Options{}, []want{{E, "Unsupported block type", `Did you mean "source"?`, 20}}},
		{"unknown top-level block", "variants \"x\" {}\n", Options{}, []want{{E, "Unsupported block type", `Did you mean "variant"?`, 15}}},
		{"type error bool", variant("  composefs {\n    enabled = \"yes\"\n  }"), Options{}, []want{
			{E, "Incorrect attribute value type", "a bool (true or false) is required", 21}}},
		{"type error list", variant("  kernel {\n    cmdline = \"quiet\"\n  }"), Options{}, []want{
			{E, "Incorrect attribute value type", "a list of strings is required", 21}}},
		{"bad size", variant("  disk {\n    size = \"10 parsecs\"\n  }"), Options{}, []want{
			{E, "Invalid value", `unknown unit "parsecs"`, 21}}},
		{"decimal size unit", variant("  disk {\n    size = \"10GB\"\n  }"), Options{}, []want{
			{E, "Invalid value", `write 10GiB`, 21}}},
		{"bad duration", variant("  test {\n    timeout = \"5 minutes\"\n  }"), Options{}, []want{
			{E, "Invalid value", `duration "5 minutes" is not valid`, 21}}},
		{"enum did-you-mean", variant("  composefs {\n    verity = \"requir\"\n  }"), Options{}, []want{
			{E, "Invalid value", `Did you mean "require"?`, 21}}},
		{"arch alias", variant("  arches = [\"x86_64\", \"arm64\"]"), Options{}, []want{
			{E, "Invalid value", `Did you mean "aarch64"?`, 20}}},
		{"format enum", variant("  disk {\n    formats = [\"raw\", \"vmdk\"]\n  }"), Options{}, []want{
			{E, "Invalid value", `"vmdk" is not allowed; it must be "raw" or "qcow2"`, 21}}},
		{"duplicate list element", variant("  disk {\n    formats = [\"raw\", \"raw\"]\n  }"), Options{}, []want{
			{E, "Invalid value", `"raw" appears more than once`, 21}}},
		{"unknown arch block", variant("  arch \"arm64\" {\n  }"), Options{}, []want{
			{E, "Unknown architecture", `Did you mean "aarch64"?`, 20}}},
		{"image transport", `
variant "v" {
  source {
    image = "quay.io/fedora/fedora-iot:43"
  }
}
`, Options{}, []want{{E, "Invalid value", `Did you mean "docker://quay.io/fedora/fedora-iot:43"?`, 18}}},
		{"undeclared variable", variant("  description = var.relase"), Options{}, []want{
			{E, "Reference to undeclared input variable", `named "relase"`, 20}}},
		{"undeclared local", variant("  description = local.nope"), Options{}, []want{
			{E, "Reference to undeclared local value", `named "nope"`, 20}}},
		{"bare name", variant("  description = release"), Options{}, []want{
			{E, "Unknown variable", `There is no variable named "release"`, 20}}},
		{"unknown function", variant("  description = uper(\"x\")"), Options{}, []want{
			{E, "Call to unknown function", `Did you mean "upper"?`, 20}}},
		{"cycle in locals, reported once", "locals {\n  a = local.b\n  b = local.c\n  c = local.a\n  d = upper(local.a)\n}\n" + variant("  description = local.d"), Options{}, []want{
			{E, "Cycle in local values", "local.a -> local.b -> local.c -> local.a", 16}}},
		{"bad local reported once", "locals {\n  a = var.nope\n  b = local.a\n}\n" + variant("  description = local.b\n  name = local.a"), Options{}, []want{
			{E, "Reference to undeclared input variable", `"nope"`, 16}}},
		{"duplicate block", variant("  composefs {\n  }\n  composefs {\n  }"), Options{}, []want{
			{E, "Duplicate composefs block", "already declared", 22}}},
		{"duplicate partition in one body", variant("  disk {\n    partition \"esp\" {}\n    partition \"esp\" {}\n  }"), Options{}, []want{
			{E, "Duplicate partition block", `partition "esp"`, 22}}},
		{"duplicate variant", variant("") + variant(""), Options{}, []want{{E, "Duplicate variant", `Variant "v" was already declared`, 23}}},
		{"invalid variant name", "variant \"a.b\" {}\n", Options{}, []want{{E, "Invalid variant name", `"a.b"`, 15}}},
		{"missing source", "variant \"v\" {\n}\n", Options{}, []want{{E, "Missing source image", `Variant "v" has no source image`, 15}}},
		{"required variable", "variable \"x\" {\n}\n" + variant(""), Options{}, []want{{E, "No value for required variable", "CFS_VAR_x", 15}}},
		{"variable validation", "variable \"x\" {\n  default = \"a\"\n  validation {\n    condition = length(var.x) > 1 && strlen(var.x) > 1\n    error_message = \"x is too short.\"\n  }\n}\n" + variant("  description = var.x"), Options{}, []want{
			{E, "Invalid value for variable", "x is too short.", 16}}},
		{"undeclared -var", variant(""), Options{Vars: []string{"relase=1"}}, []want{{E, "Value for undeclared variable", `sets "relase"`, 0}}},
		{"undeclared env var is a warning", variant(""), Options{Environ: []string{"CFS_VAR_x=1"}}, []want{{W, "Value for undeclared variable", "CFS_VAR_x", 0}}},
		{"bad -var syntax", variant(""), Options{Vars: []string{"novalue"}}, []want{{E, "Invalid -var option", "NAME=VALUE", 0}}},
		{"arch override never applies", variant("  arch \"aarch64\" {\n  }"), Options{}, []want{
			{W, "Arch override never applies", `built only for "x86_64"`, 20}}},
		{"missing compose", "# nothing\n", Options{}, nil}, // replaced below
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base + tt.src
			if tt.name == "missing compose" {
				src = strings.Replace(base, "compose {\n  release = \"43\"\n}", "", 1) + variant("")
				tt.diags = []want{{E, "Missing compose block", "release", 0}}
			}
			_, diags := parse(t, map[string]string{"m.hcl": src}, &tt.opts)
			if len(diags) != len(tt.diags) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(diags), len(tt.diags), diagText(diags))
			}
			for i, w := range tt.diags {
				d := diags[i]
				line := 0
				if d.Subject != nil {
					line = d.Subject.Start.Line
				}
				if d.Severity != w.sev || d.Summary != w.summary || !strings.Contains(d.Detail, w.detail) || line != w.line {
					t.Errorf("diagnostic %d:\n got %s\nwant %v %q %q line %d", i, diagText(diags[i:i+1]), w.sev, w.summary, w.detail, w.line)
				}
			}
		})
	}
}

// TestAllErrorsInOneRun checks that independent errors in several files
// and blocks are all reported together.
func TestAllErrorsInOneRun(t *testing.T) {
	files := map[string]string{
		"a.hcl": base,
		"b.hcl": variant("  composefs {\n    enabld = true\n  }\n  disk {\n    size = \"1 GB\"\n  }"),
		"c.hcl": strings.Replace(variant("  sourse {}"), `"v"`, `"w"`, 1),
		"d.hcl": strings.Replace(variant("  test {\n    timeout = 5\n  }"), `"v"`, `"x"`, 1),
	}
	_, diags := parse(t, files, nil)
	var got []string
	for _, d := range diags {
		got = append(got, d.Subject.Filename+":"+d.Summary)
	}
	want := []string{"b.hcl:Unsupported argument", "b.hcl:Invalid value", "c.hcl:Unsupported block type", "d.hcl:Incorrect attribute value type"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diagnostics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSyntaxErrorStopsEvaluation checks that a syntax error in one file is
// reported alone, not with every reference into that file from the others.
func TestSyntaxErrorStopsEvaluation(t *testing.T) {
	files := map[string]string{
		"a.hcl": "variable \"release\" {\n  default = \"43\"\n",
		"b.hcl": strings.Replace(base, `release = "43"`, "release = var.release", 1) + variant("  description = var.release"),
		"c.hcl": "variant \"w\" {\n  sourse {}\n",
	}
	_, diags := parse(t, files, nil)
	if len(diags) != 2 || diags[0].Subject.Filename != "a.hcl" || diags[1].Subject.Filename != "c.hcl" {
		t.Fatalf("want one syntax error each in a.hcl and c.hcl:\n%s", diagText(diags))
	}
}
