package manifest

import (
	"os"
	"strings"
	"testing"
)

// TestDocsCoverLanguage checks that docs/manifest-language.md documents
// every setting, compose attribute, function and enumeration value, so the
// reference cannot fall behind the schema.
func TestDocsCoverLanguage(t *testing.T) {
	b, err := os.ReadFile("../../docs/manifest-language.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var want []string
	for _, lf := range leaves {
		if lf.spec != nil {
			want = append(want, "`"+lf.path+"`")
			if lf.spec.kind != kindInt {
				for _, e := range lf.spec.enum {
					want = append(want, "`"+e+"`")
				}
			}
		}
	}
	for _, lf := range partitionLeaves {
		want = append(want, "`"+strings.Replace(lf.path, "*", "NAME", 1)+"`")
		for _, e := range lf.spec.enum {
			want = append(want, "`"+e+"`")
		}
	}
	for _, a := range composeSpec.attrs {
		want = append(want, a.name+" = ")
	}
	for _, w := range want {
		if !strings.Contains(doc, w) {
			t.Errorf("docs/manifest-language.md does not mention %s", w)
		}
	}
	for _, f := range functionNames() {
		if !strings.Contains(doc, "`"+f+"`") && !strings.Contains(doc, "`"+f+"(") && !strings.Contains(doc, " "+f+"`") {
			t.Errorf("docs/manifest-language.md does not document the function %s", f)
		}
	}
	words := strings.Fields(strings.ReplaceAll(doc, "`", " "))
	for _, d := range StandardRootDirs {
		found := false
		for _, w := range words {
			found = found || w == d
		}
		if !found {
			t.Errorf("docs/manifest-language.md does not list the standard directory %s", d)
		}
	}
}
