// Package testdeb fetches Debian trixie packages for tests (EFI stubs,
// kernels, firmware) without touching the system's apt configuration.
//
// Packages are downloaded with apt-get through a private configuration
// (sources list for trixie and bookworm, lists and cache under
// testbed/fixtures/cache/apt-boot, see
// shared/testbed/FACTS.md section 9) into testbed/fixtures/cache/debs/, the
// .deb cache shared with the testbed fixtures, and extracted with dpkg-deb
// under testbed/fixtures/cache/x/. The cache directory is gitignored. A file
// lock serialises test processes of different packages.
//
// Under testing.Short() nothing is downloaded: a package that is not cached
// skips the test with the reason.
package testdeb

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// Root returns the repository root (the directory holding go.mod).
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("testdeb: no go.mod above the working directory")
		}
		dir = parent
	}
}

// CacheDir returns testbed/fixtures/cache under the repository root.
func CacheDir(tb testing.TB) string {
	return filepath.Join(Root(tb), "testbed", "fixtures", "cache")
}

// lock takes an exclusive lock on the cache for the rest of the call.
func lock(tb testing.TB, cache string) func() {
	tb.Helper()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		tb.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		tb.Fatal(err)
	}
	return func() { f.Close() }
}

// debArch maps Fedora/GOARCH names to Debian architectures.
func debArch(arch string) string {
	switch arch {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	}
	return arch
}

// Package makes sure the trixie package name (e.g. "systemd-boot-efi") for
// arch ("amd64", "arm64", "all") is downloaded and extracted, and returns
// the extraction directory.
func Package(tb testing.TB, name, arch string) string {
	tb.Helper()
	return PackageFrom(tb, "trixie", name, arch, "")
}

// PackageFrom is [Package] for a suite ("trixie" or "bookworm"); a cached
// .deb counts only when its version starts with version (empty: any).
func PackageFrom(tb testing.TB, suite, name, arch, version string) string {
	tb.Helper()
	arch = debArch(arch)
	cache := CacheDir(tb)
	defer lock(tb, cache)()
	deb := cached(cache, name, arch, version)
	if deb == "" {
		spec := name
		if arch != "all" {
			spec += ":" + arch
		}
		spec += "/" + suite
		download(tb, cache, spec)
		if deb = cached(cache, name, arch, version); deb == "" {
			tb.Fatalf("testdeb: apt-get download %s left no %s_%s*_%s.deb in %s", spec, name, version, arch, filepath.Join(cache, "debs"))
		}
	}
	return extract(tb, cache, deb)
}

// Kernel makes sure the newest trixie cloud kernel for arch is downloaded
// and extracted, and returns the extraction directory and the kernel
// release (e.g. "6.12.117+deb13-cloud-amd64").
func Kernel(tb testing.TB, arch string) (dir, release string) {
	tb.Helper()
	arch = debArch(arch)
	cache := CacheDir(tb)
	unlock := lock(tb, cache)
	pattern := regexp.MustCompile(`^linux-image-(6\.12\.[0-9]+\+deb13-cloud-` + arch + `)$`)
	name := ""
	if debs, _ := filepath.Glob(filepath.Join(cache, "debs", "linux-image-6.12.*-cloud-"+arch+"_*_"+arch+".deb")); len(debs) > 0 {
		sort.Strings(debs)
		name, _, _ = strings.Cut(filepath.Base(debs[len(debs)-1]), "_")
	} else {
		if testing.Short() {
			unlock()
			tb.Skipf("testdeb: no cached trixie cloud kernel for %s and -short forbids downloading", arch)
		}
		update(tb, cache)
		out := aptCache(tb, cache, "search", "--names-only", `^linux-image-6\.12\..*-cloud-`+arch+`$`)
		var names []string
		for _, l := range strings.Split(out, "\n") {
			n, _, _ := strings.Cut(l, " ")
			if pattern.MatchString(n) {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			unlock()
			tb.Skipf("testdeb: trixie has no linux-image-6.12.*-cloud-%s package", arch)
		}
		sort.Slice(names, func(i, j int) bool { return kernelLess(names[i], names[j]) })
		name = names[len(names)-1]
	}
	unlock()
	m := pattern.FindStringSubmatch(name)
	if m == nil {
		tb.Fatalf("testdeb: unexpected kernel package name %q", name)
	}
	return Package(tb, name, arch), m[1]
}

// kernelLess orders linux-image-6.12.N+... names by N.
func kernelLess(a, b string) bool {
	num := func(s string) int {
		var n int
		fmt.Sscanf(strings.TrimPrefix(s, "linux-image-6.12."), "%d", &n)
		return n
	}
	return num(a) < num(b)
}

func cached(cache, name, arch, version string) string {
	debs, _ := filepath.Glob(filepath.Join(cache, "debs", name+"_"+version+"*_"+arch+".deb"))
	sort.Strings(debs)
	if len(debs) == 0 {
		return ""
	}
	return debs[len(debs)-1]
}

// aptOptions returns the apt-get options of the private configuration.
func aptOptions(cache string) []string {
	d := filepath.Join(cache, "apt-boot")
	return []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(d, "sources.list"),
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(d, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(d, "cache"),
		"-o", "APT::Architectures::=amd64", "-o", "APT::Architectures::=arm64",
		"-o", "Acquire::Languages=none",
	}
}

// update writes the private sources list and runs apt-get update once.
func update(tb testing.TB, cache string) {
	tb.Helper()
	d := filepath.Join(cache, "apt-boot")
	if fi, err := os.Stat(filepath.Join(d, "lists")); err == nil && fi.IsDir() {
		m, _ := filepath.Glob(filepath.Join(d, "lists", "*_bookworm_*Packages"))
		if len(m) > 0 {
			return
		}
	}
	for _, sub := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	mirror := "http://deb.debian.org/debian"
	if b, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "URIs:" {
				mirror = f[1]
				break
			}
		}
	}
	var src string
	for _, suite := range []string{"trixie", "bookworm"} {
		src += fmt.Sprintf("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n", mirror, suite)
	}
	if err := os.WriteFile(filepath.Join(d, "sources.list"), []byte(src), 0o644); err != nil {
		tb.Fatal(err)
	}
	run(tb, "", "apt-get", append(aptOptions(cache), "-q", "update")...)
}

func aptCache(tb testing.TB, cache string, args ...string) string {
	tb.Helper()
	return run(tb, "", "apt-cache", append(aptOptions(cache), args...)...)
}

func download(tb testing.TB, cache, spec string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("testdeb: %s is not cached in %s and -short forbids downloading", spec, filepath.Join(cache, "debs"))
	}
	update(tb, cache)
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		tb.Fatal(err)
	}
	run(tb, debs, "apt-get", append(aptOptions(cache), "-q", "download", spec)...)
}

// extract unpacks deb under cache/x/<name> (once) and returns that directory.
func extract(tb testing.TB, cache, deb string) string {
	tb.Helper()
	dir := filepath.Join(cache, "x", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { // dpkg-deb -x creates only the last component
		tb.Fatal(err)
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	run(tb, "", "dpkg-deb", "-x", deb, tmp)
	if err := os.Rename(tmp, dir); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func run(tb testing.TB, dir, name string, args ...string) string {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		tb.Skipf("testdeb: %s is not installed: %v", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := fmt.Sprintf("testdeb: %s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
		if name == "apt-get" {
			// No mirror reachable: the facility is absent, say so loudly.
			tb.Skip("SKIP (network): " + msg)
		}
		tb.Fatal(msg)
	}
	return out.String()
}
