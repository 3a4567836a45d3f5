// Package testdeb fetches Debian trixie (and bookworm) packages for tests
// (EFI stubs, kernels, firmware) without touching the system's apt
// configuration.
//
// It is a thin test-facing layer over internal/debfetch: packages are
// downloaded with apt-get through a private configuration (sources list for
// trixie and bookworm; lists and cache under the fixture cache's apt-boot,
// see shared/testbed/FACTS.md section 9) into the .deb cache shared with
// the testbed fixtures ([debfetch.DebDir] of [debfetch.CacheDir]), and
// extracted with dpkg-deb under its x/ directory. The cache's lock
// serialises test processes of different packages.
//
// Under testing.Short() nothing is downloaded: a package that is not cached
// skips the test with the reason.
package testdeb

import (
	"context"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/internal/debfetch"
)

// cache returns the fixture cache directory and takes its lock; the
// returned function releases it.
func cache(tb testing.TB) (string, func()) {
	tb.Helper()
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("testdeb: %s is not installed: %v", tool, err)
		}
	}
	dir, err := debfetch.CacheDir()
	if err != nil {
		tb.Fatal(err)
	}
	unlock, err := debfetch.Lock(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return dir, unlock
}

// apt returns the private apt configuration of the cache, its package lists
// downloaded. A failing apt-get update (no mirror reachable) skips the test.
func apt(tb testing.TB, cache string) *debfetch.Apt {
	tb.Helper()
	a := &debfetch.Apt{Dir: filepath.Join(cache, "apt-boot"), Suites: []string{"trixie", "bookworm"}, Archs: []string{"amd64", "arm64"}}
	if err := a.UpdateOnce(context.Background()); err != nil {
		// No mirror reachable: the facility is absent, say so loudly.
		tb.Skip("SKIP (network): testdeb: " + err.Error())
	}
	return a
}

// debArch returns the Debian spelling of arch (any spelling [arch.Lookup]
// accepts, or "all").
func debArch(tb testing.TB, name string) string {
	tb.Helper()
	if name == "all" {
		return name
	}
	a, err := arch.Lookup(name)
	if err != nil {
		tb.Fatalf("testdeb: %v", err)
	}
	return a.Debian
}

// Package makes sure the trixie package name (e.g. "systemd-boot-efi") for
// arch ("amd64", "arm64", "all"; Fedora spellings are accepted) is
// downloaded and extracted, and returns the extraction directory.
func Package(tb testing.TB, name, arch string) string {
	tb.Helper()
	return PackageFrom(tb, "trixie", name, arch, "")
}

// PackageFrom is [Package] for a suite ("trixie" or "bookworm"); a cached
// .deb counts only when its version starts with version (empty: any).
func PackageFrom(tb testing.TB, suite, name, arch, version string) string {
	tb.Helper()
	arch = debArch(tb, arch)
	dir, unlock := cache(tb)
	defer unlock()
	debs := debfetch.DebDir(dir)
	deb := cached(debs, name, arch, version)
	if deb == "" {
		spec := name
		if arch != "all" {
			spec += ":" + arch
		}
		spec += "/" + suite
		if testing.Short() {
			tb.Skipf("testdeb: %s is not cached in %s and -short forbids downloading", spec, debs)
		}
		if err := apt(tb, dir).Download(context.Background(), debs, spec); err != nil {
			tb.Skip("SKIP (network): testdeb: " + err.Error())
		}
		if deb = cached(debs, name, arch, version); deb == "" {
			tb.Fatalf("testdeb: apt-get download %s left no %s_%s*_%s.deb in %s", spec, name, version, arch, debs)
		}
	}
	x, err := debfetch.Unpack(context.Background(), dir, deb)
	if err != nil {
		tb.Fatalf("testdeb: %v", err)
	}
	return x
}

// Kernel makes sure the newest trixie cloud kernel for arch is downloaded
// and extracted, and returns the extraction directory and the kernel
// release (e.g. "6.12.117+deb13-cloud-amd64").
func Kernel(tb testing.TB, arch string) (dir, release string) {
	tb.Helper()
	arch = debArch(tb, arch)
	cacheDir, unlock := cache(tb)
	name := ""
	if debs, _ := filepath.Glob(filepath.Join(debfetch.DebDir(cacheDir), "linux-image-6.12.*-cloud-"+arch+"_*_"+arch+".deb")); len(debs) > 0 {
		sort.Strings(debs)
		name, _, _ = strings.Cut(filepath.Base(debs[len(debs)-1]), "_")
	} else {
		if testing.Short() {
			unlock()
			tb.Skipf("testdeb: no cached trixie cloud kernel for %s and -short forbids downloading", arch)
		}
		n, err := apt(tb, cacheDir).LatestKernel(context.Background(), arch)
		if err != nil {
			unlock()
			tb.Skipf("testdeb: %v", err)
		}
		name = n
	}
	unlock()
	release, ok := strings.CutPrefix(name, "linux-image-")
	if !ok || !strings.HasSuffix(release, "-cloud-"+arch) {
		tb.Fatalf("testdeb: unexpected kernel package name %q", name)
	}
	return Package(tb, name, arch), release
}

func cached(debs, name, arch, version string) string {
	m, _ := filepath.Glob(filepath.Join(debs, name+"_"+version+"*_"+arch+".deb"))
	sort.Strings(m)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1]
}
