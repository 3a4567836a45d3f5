package debfetch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCacheDir(t *testing.T) {
	t.Run("env", func(t *testing.T) {
		t.Setenv(CacheEnv, "rel/cache")
		got, err := CacheDir()
		if err != nil {
			t.Fatal(err)
		}
		wd, _ := os.Getwd()
		if want := filepath.Join(wd, "rel/cache"); got != want {
			t.Errorf("CacheDir = %q, want %q", got, want)
		}
	})
	t.Run("default", func(t *testing.T) {
		t.Setenv(CacheEnv, "")
		t.Setenv("XDG_CACHE_HOME", "/xdg")
		got, err := CacheDir()
		if err != nil {
			t.Fatal(err)
		}
		want := "/xdg/cfs-compose/fixtures"
		if os.Geteuid() == 0 {
			want = "/var/cache/cfs-compose/fixtures"
		}
		if got != want {
			t.Errorf("CacheDir = %q, want %q", got, want)
		}
	})
}

func TestVerify(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a_1_all.deb")
	if err := os.WriteFile(p, []byte("deb"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Verify(p, "9cfa1468c93fc18652e34a000f0c6614b0fa18f6f4887477ad9b0d36ca6a7eaa"); err != nil {
		t.Errorf("Verify with the right sum: %v", err)
	}
	if err := Verify(p, "2a1d2fa0dd0a4b1fa3e8d07e7d6fe8c8f7c3c4aa7dd0d1f68be0b57eb4b87bd8"); err == nil || !strings.Contains(err.Error(), "package lists say") {
		t.Errorf("Verify with a wrong sum: %v", err)
	}
}
