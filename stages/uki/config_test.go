package uki

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

func TestCommandLine(t *testing.T) {
	d := strings.Repeat("ab", 32)
	tests := []struct {
		name   string
		args   []string
		digest string
		want   string
	}{
		{"empty", nil, "", ""},
		{"digest only", nil, d, "composefs=" + d},
		{"appended", []string{"console=ttyS0", "rw"}, d, "console=ttyS0 rw composefs=" + d},
		{"before init arguments", []string{"quiet", "--", "single", "composefs=x"}, d, "quiet composefs=" + d + " -- single composefs=x"},
		{"quoted value", []string{`dyndbg="file a.c +p"`}, "", `dyndbg="file a.c +p"`},
		{"no digest", []string{"quiet", "--", "x"}, "", "quiet -- x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := commandLine(tc.args, tc.digest)
			if err != nil || got != tc.want {
				t.Errorf("commandLine = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestConfigCacheKey(t *testing.T) {
	sum := strings.Repeat("0f", 32)
	c := &Config{Arch: arch.X86_64, Cmdline: []string{"quiet"}, Stub: "/opt/stubs/linuxx64.efi.stub", StubSHA256: sum, Filename: "F-T-1.x86_64.efi",
		SecureBoot: &SecureBoot{Key: "/keys/db.key", Cert: "/keys/db.crt", CertFingerprint: sum}}
	b, _ := json.Marshal(c.CacheKey())
	for _, p := range []string{"/opt/stubs", "/keys/"} {
		if strings.Contains(string(b), p) {
			t.Errorf("cache key holds the path %s: %s", p, b)
		}
	}
	if !strings.Contains(string(b), sum) || c.SecureBoot.Key != "/keys/db.key" || c.Stub != "/opt/stubs/linuxx64.efi.stub" {
		t.Errorf("cache key %s, config %+v", b, c)
	}
}
