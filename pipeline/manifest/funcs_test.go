package manifest

import (
	"os"
	"strings"
	"testing"
)

func writeFile(name, content string) error { return os.WriteFile(name, []byte(content), 0o644) }

func TestFunctions(t *testing.T) {
	tests := []struct {
		expr, want, wantErr string
	}{
		{`format("%s-%03d", "a", 7)`, "a-007", ""},
		{`format("%99999d", 1)`, "", "above 9999"},
		{`formatlist("%s!", ["a", "b"])[1]`, "b!", ""},
		{`join(",", concat(["a"], ["b"]))`, "a,b", ""},
		{`upper(lower("MiX"))`, "MIX", ""},
		{`replace("a-b", "-", "_")`, "a_b", ""},
		{`regex_replace("a1b22", "[0-9]+", "#")`, "a#b#", ""},
		{`coalesce(null, "x")`, "x", ""},
		{`merge({a = "1"}, {a = "2"}).a`, "2", ""},
		{`tostring(length("héllo"))`, "5", ""},
		{`tostring(length(["a", "b"]))`, "2", ""},
		{`try(jsondecode("{").x, "fallback")`, "fallback", ""},
		{`tostring(can(jsondecode("{")))`, "false", ""},
		{`basename("/a/b.efi")`, "b.efi", ""},
		{`dirname("/a/b.efi")`, "/a", ""},
		{`tostring(startswith("fedora", "fed"))`, "true", ""},
		{`tostring(endswith("fedora", "ora"))`, "true", ""},
		{`trimsuffix(file("f.txt"), "\n")`, "hello", ""},
	}
	dir := t.TempDir()
	if err := writeFile(dir+"/f.txt", "hello\n"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			src := base + "variant \"v\" {\n  description = " + tt.expr + "\n  source {\n    image = \"docker://quay.io/fedora/fedora-iot:43\"\n  }\n}\n"
			m, diags := Parse(map[string][]byte{dir + "/m.hcl": []byte(src)}, nil)
			if tt.wantErr != "" {
				if !diags.HasErrors() || !strings.Contains(diagText(diags), tt.wantErr) {
					t.Fatalf("want error %q, got:\n%s", tt.wantErr, diagText(diags))
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diagText(diags))
			}
			if c := mustConfig(t, m, "v", "x86_64"); c.Description != tt.want {
				t.Errorf("= %q, want %q", c.Description, tt.want)
			}
		})
	}
}
