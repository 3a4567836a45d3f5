// Package debfetch downloads Debian packages for the test fixtures without
// touching the machine's apt state, caches the .debs and unpacks them. It
// owns the fixture cache: [CacheDir] decides where it lives (outside the
// checkout, so a fresh clone in CI reuses it), [Apt] runs apt-get and
// apt-cache with a private configuration under it, [DebDir] holds the
// downloaded .debs under their original file names, [Lock] serialises the
// processes (parallel test binaries) that share it, and [Unpack],
// [Extract] and [WalkDeb] read the packages with dpkg-deb.
//
// The users are testbed/fixtures (the fixture images and host tools),
// internal/testdeb (packages for tests) and signing/internal/fixture (the
// EFI stub the signing tests sign).
package debfetch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/internal/filehash"
)

// CacheEnv names the environment variable that overrides [CacheDir].
const CacheEnv = "CFS_FIXTURES_CACHE"

// CacheDir returns the fixture cache directory: $CFS_FIXTURES_CACHE (made
// absolute), else /var/cache/cfs-compose/fixtures when running as root,
// else cfs-compose/fixtures under the user cache directory
// ($XDG_CACHE_HOME, else ~/.cache). It does not create the directory.
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return filepath.Abs(d)
	}
	if os.Geteuid() == 0 {
		return "/var/cache/cfs-compose/fixtures", nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("debfetch: fixture cache: %w (set $%s)", err, CacheEnv)
	}
	return filepath.Join(d, "cfs-compose", "fixtures"), nil
}

// DebDir is where the .debs are cached under cache, with their original
// file names.
func DebDir(cache string) string { return filepath.Join(cache, "debs") }

// Lock takes an exclusive lock on the cache directory (creating it), for
// the processes that share it. The returned function releases it.
func Lock(cache string) (unlock func(), err error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("debfetch: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("debfetch: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("debfetch: locking %s: %w", cache, err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Verify checks a cached .deb against the SHA-256 (hex) from the package
// lists.
func Verify(deb, sha256 string) error {
	sum, _, err := filehash.SHA256(deb)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(sum[:]); got != sha256 {
		return fmt.Errorf("%s: sha256 %s, package lists say %s", deb, got, sha256)
	}
	return nil
}

// Unpack extracts deb (once) into cache/x/<file name without .deb> and
// returns that directory. A directory that exists is reused as is: the
// extraction is moved into place only when complete. Callers hold [Lock].
func Unpack(ctx context.Context, cache, deb string) (string, error) {
	dir := filepath.Join(cache, "x", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { // dpkg-deb -x creates only the last component
		return "", fmt.Errorf("debfetch: %w", err)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := Extract(ctx, deb, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	if err := atomicfile.Publish(tmp, dir); err != nil {
		return "", fmt.Errorf("debfetch: %w", err)
	}
	return dir, nil
}

// Mirror returns the Debian mirror to download from: $CFS_DEBIAN_MIRROR,
// else the mirror the machine is configured with (the first URIs: of
// /etc/apt/sources.list.d/debian.sources, else the first deb line of
// /etc/apt/sources.list), else http://deb.debian.org/debian.
func Mirror() string {
	if m := os.Getenv("CFS_DEBIAN_MIRROR"); m != "" {
		return m
	}
	if b, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "URIs:" {
				return f[1]
			}
		}
	}
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			for i := 1; len(f) > 2 && f[0] == "deb" && i < len(f); i++ {
				if strings.Contains(f[i], "://") {
					return f[i]
				}
			}
		}
	}
	return "http://deb.debian.org/debian"
}
