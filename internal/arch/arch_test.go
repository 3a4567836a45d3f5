package arch

import (
	"encoding/json"
	"testing"
)

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *Arch
	}{
		{"x86_64", X86_64}, {"amd64", X86_64}, {"aarch64", Aarch64}, {"arm64", Aarch64},
	} {
		got, err := Lookup(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Lookup(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := Lookup("riscv64"); err == nil {
		t.Error("Lookup(riscv64) succeeded")
	}
}

func TestJSON(t *testing.T) {
	b, err := json.Marshal(struct{ A *Arch }{Aarch64})
	if err != nil || string(b) != `{"A":"aarch64"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var v struct{ A *Arch }
	if err := json.Unmarshal([]byte(`{"A":"amd64"}`), &v); err != nil || v.A.Name != "x86_64" {
		t.Fatalf("Unmarshal = %+v, %v", v.A, err)
	}
}

func TestDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range All() {
		for _, v := range []string{a.Name, a.EFIBootFile, a.EFIStub, a.SystemdBoot, a.RootPartitionType, a.QEMU, a.Console} {
			if v == "" || seen[v] {
				t.Errorf("%s: empty or repeated fact %q", a, v)
			}
			seen[v] = true
		}
	}
}
