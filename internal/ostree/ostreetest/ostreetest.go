// Package ostreetest provides the reference ostree CLI for tests and
// benchmarks: Debian trixie's ostree (2025.2) in a chroot built with
// mmdebstrap, cached outside the checkout in
// the fixture cache (internal/debfetch.CacheDir: $CFS_FIXTURES_CACHE, else
// /var/cache/cfs-compose/fixtures as root), in ostree-trixie, and
// rebuilt when missing or when its recipe changes.
//
// Building needs root, mmdebstrap (make deps installs it) and the Debian
// mirror of the host's apt sources (the bookworm debian-archive-keyring
// holds the trixie key); it takes about 35 seconds. The ostree commands run
// in a private mount namespace (unshare --mount) where /proc and the
// caller's host directories are mounted into the chroot, so concurrent
// test processes share the chroot without sharing mounts and nothing stays
// mounted afterwards.
package ostreetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/internal/debfetch"
)

// Suite is the Debian release the chroot is built from.
const Suite = "trixie"

// recipe identifies how the chroot is built; a cached chroot with another
// recipe is rebuilt.
const recipe = "mmdebstrap --variant=apt --include=ostree trixie (v1)\n"

// stampFile, in the chroot, holds the recipe it was built with.
const stampFile = ".cfs-ostreetest-recipe"

// Chroot is a Debian root directory holding the ostree CLI.
type Chroot struct {
	// Dir is the root directory.
	Dir string
	// Version is the ostree version (`ostree --version`), e.g. "2025.2".
	Version string
}

// Build returns the cached chroot under cache, building it first if it is
// missing or stale. Concurrent callers (in several processes) are
// serialized by a lock file; mmdebstrap's output goes to log.
func Build(cache string, log io.Writer) (*Chroot, error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(cache, "ostree-trixie.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	dir := filepath.Join(cache, "ostree-trixie")
	if b, err := os.ReadFile(filepath.Join(dir, stampFile)); err != nil || string(b) != recipe {
		if _, err := exec.LookPath("mmdebstrap"); err != nil {
			return nil, fmt.Errorf("building the ostree chroot: %w (make deps installs mmdebstrap)", err)
		}
		tmp := dir + ".tmp"
		if err := os.RemoveAll(tmp); err != nil {
			return nil, err
		}
		cmd := exec.Command("mmdebstrap", "--variant=apt", "--include=ostree", Suite, tmp, debfetch.Mirror())
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("mmdebstrap %s: %w", Suite, err)
		}
		if err := os.WriteFile(filepath.Join(tmp, stampFile), []byte(recipe), 0o644); err != nil {
			return nil, err
		}
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
		if err := atomicfile.PublishKeep(tmp, dir); err != nil {
			return nil, err
		}
	}
	c := &Chroot{Dir: dir}
	out, err := c.Ostree(nil, "--version")
	if err != nil {
		return nil, fmt.Errorf("ostree --version: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Version:"); ok {
			c.Version = strings.Trim(strings.TrimSpace(v), "'")
		}
	}
	return c, nil
}

// Get returns the chroot for a test, building it if needed. Without root
// the test is skipped (building the chroot and running bare-mode ostree
// need it); under -short it is skipped when the chroot is not cached yet.
// Any other problem fails the test.
func Get(tb testing.TB) *Chroot {
	tb.Helper()
	if os.Getuid() != 0 {
		tb.Skip("SKIPPING: the ostree oracle (a Debian trixie chroot with ostree) needs root to build and to run bare-mode commits; CI runs as root")
	}
	cache, err := debfetch.CacheDir()
	if err != nil {
		tb.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(cache, "ostree-trixie", stampFile)); (err != nil || string(b) != recipe) && testing.Short() {
		tb.Skipf("SKIPPING: -short and the ostree chroot is not cached in %s (building it takes ~35 s)", cache)
	}
	start := time.Now()
	var log bytes.Buffer
	c, err := Build(cache, &log)
	if err != nil {
		tb.Fatalf("ostree oracle chroot: %v\n%s", err, log.String())
	}
	if log.Len() > 0 {
		tb.Logf("built the ostree chroot %s in %v", c.Dir, time.Since(start).Round(time.Second))
	}
	return c
}

// Bind mounts the host directory Host at the absolute path Guest inside
// the chroot while a command runs.
type Bind struct {
	Host, Guest string
}

// script mounts /proc and the binds in a private mount namespace, then
// runs ostree in the chroot. Arguments: root, number of binds, the bind
// pairs, then ostree's arguments.
const script = `set -e
root=$1; n=$2; shift 2
mount -t proc proc "$root/proc"
while [ "$n" -gt 0 ]; do
	mkdir -p "$root$2"
	mount --bind "$1" "$root$2"
	shift 2; n=$((n-1))
done
exec chroot "$root" ostree "$@"
`

// Command returns the command running `ostree args...` in the chroot with
// binds mounted. Its environment is a fixed minimal one.
func (c *Chroot) Command(binds []Bind, args ...string) *exec.Cmd {
	argv := []string{"--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", c.Dir, fmt.Sprint(len(binds))}
	for _, b := range binds {
		argv = append(argv, b.Host, b.Guest)
	}
	argv = append(argv, args...)
	cmd := exec.Command("unshare", argv...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root", "TMPDIR=/tmp"}
	return cmd
}

// Ostree runs `ostree args...` in the chroot with binds mounted and
// returns its standard output; on failure the error includes standard
// error.
func (c *Chroot) Ostree(binds []Bind, args ...string) ([]byte, error) {
	cmd := c.Command(binds, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out, fmt.Errorf("ostree %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return out, fmt.Errorf("ostree %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}
