package composefs_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/stages/composefs"
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
)

var _ pipeline.Keyer = &composefs.Config{}

// TestPlan covers the stage's planning decisions; building images is
// tested end to end with the disk stage (stages/disk).
func TestPlan(t *testing.T) {
	keys := t.TempDir()
	if _, err := signing.GenerateKeys(keys, signing.GenerateOptions{Passphrase: []byte("pw")}); err != nil {
		t.Fatal(err)
	}
	base := func() *manifest.Config {
		return &manifest.Config{Variant: "coreos", Name: "CoreOS", Arch: manifest.ArchX86_64,
			Composefs: manifest.Composefs{Enabled: true, Verity: initconfig.VerityEnable}}
	}
	tests := []struct {
		name    string
		mut     func(*manifest.Config)
		skip    bool
		wantErr string
		check   func(*testing.T, *composefs.Config)
	}{
		{name: "disabled is the contingency: no composefs stage", mut: func(c *manifest.Config) { c.Composefs.Enabled = false }, skip: true},
		{name: "defaults", check: func(t *testing.T, c *composefs.Config) {
			if c.MinVersion != 0 || c.Signed || c.Filename != "Fedora-CoreOS-43.x86_64.cfs" {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "format version 1", mut: func(c *manifest.Config) { c.Composefs.FormatVersion = 1 }, check: func(t *testing.T, c *composefs.Config) {
			if c.MinVersion != 1 {
				t.Errorf("min version %d", c.MinVersion)
			}
		}},
		{name: "signed with a missing public key", mut: func(c *manifest.Config) {
			c.Composefs.Signed = true
			c.Signing.Key, c.Signing.Pub = filepath.Join(keys, "nope.key"), filepath.Join(keys, "nope.pub")
		}, wantErr: "nope.pub"},
		{name: "signed", mut: func(c *manifest.Config) {
			c.Composefs.Signed = true
			c.Signing.Key, c.Signing.Pub = filepath.Join(keys, "cosign.key"), filepath.Join(keys, "cosign.pub")
		}, check: func(t *testing.T, c *composefs.Config) {
			if !c.Signed || c.KeyHint == "" || c.KeyPath == "" {
				t.Errorf("config = %+v", c)
			}
			k := c.CacheKey().(composefs.Config)
			if k.KeyPath != "" || k.KeyHint != c.KeyHint {
				t.Errorf("cache key config = %+v", k)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc := base()
			if tc.mut != nil {
				tc.mut(mc)
			}
			pc := stagetest.PlanContext(t, mc)
			pc.Compose = manifest.Compose{Product: "Fedora", Release: "43"}
			if used := composefs.New().Used(pc.Facts); used == tc.skip {
				t.Fatalf("Used = %v, want %v", used, !tc.skip)
			}
			if tc.skip {
				return
			}
			got, err := composefs.Plan(context.Background(), pc)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, got)
			}
		})
	}
}
