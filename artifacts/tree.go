package artifacts

import (
	"crypto/sha256"
	"errors"
	"strings"
	"syscall"

	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// TreeDigest computes the digest of a directory tree: the sha256 of a
// canonical listing with one line per entry (sorted relative path, type and
// permission bits, owner, extended attributes sorted by name, size and
// content sha256 for regular files, target for symlinks, and for a further
// name of a hard-linked file the first name in walk order). Trees may hold
// root file systems (the ostree stage's sysroot), so everything a file
// system image keeps of a file is covered except times and inode flags;
// the size counts each hard-linked file once.
func TreeDigest(dir string) (Digest, int64, error) {
	var lines []string
	var total int64
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := strconv.Quote(rel) + " " + strconv.FormatUint(uint64(info.Mode()), 8)
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner information", p)
		}
		line += " " + strconv.FormatUint(uint64(st.Uid), 10) + ":" + strconv.FormatUint(uint64(st.Gid), 10)
		xattrs, err := xattrLine(p)
		if err != nil {
			return err
		}
		line += xattrs
		if info.Mode().IsRegular() && st.Nlink > 1 {
			k := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[k]; ok {
				lines = append(lines, line+" link "+strconv.Quote(first))
				return nil
			}
			seen[k] = rel
		}
		switch {
		case info.Mode().IsRegular():
			sum, _, err := HashFile(p)
			if err != nil {
				return err
			}
			total += info.Size()
			line += " " + strconv.FormatInt(info.Size(), 10) + " " + sum.Hex()
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " " + strconv.Quote(t)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		return "", 0, fmt.Errorf("hashing tree %s: %w", dir, err)
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		io.WriteString(h, l+"\n")
	}
	return NewDigest(h.Sum(nil)), total, nil
}

// xattrLine returns the extended attributes of p as " x=" entries sorted by
// name, values quoted.
func xattrLine(p string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("listing extended attributes of %s: %w", p, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		sz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return "", fmt.Errorf("reading extended attribute %s of %s: %w", name, p, err)
		}
		v := make([]byte, sz)
		if sz, err = unix.Lgetxattr(p, name, v); err != nil {
			return "", fmt.Errorf("reading extended attribute %s of %s: %w", name, p, err)
		}
		b.WriteString(" x" + strconv.Quote(name) + "=" + strconv.Quote(string(v[:sz])))
	}
	return b.String(), nil
}

// AddTree moves a directory built under [Store.TempDir] into the store as an
// immutable tree and returns its descriptor.
func (s *Store) AddTree(dir, mediaType string) (Descriptor, error) {
	d, size, err := TreeDigest(dir)
	if err != nil {
		return Descriptor{}, err
	}
	dst := s.TreePath(d)
	if _, err := os.Lstat(dst); err == nil {
		if err := os.RemoveAll(dir); err != nil {
			return Descriptor{}, fmt.Errorf("adding tree %s: %w", dir, err)
		}
	} else if err := atomicfile.PublishKeep(dir, dst); err != nil {
		// Another process may have installed the same tree meanwhile.
		if _, serr := os.Lstat(dst); serr != nil {
			return Descriptor{}, fmt.Errorf("adding tree %s: %w", dir, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return Descriptor{}, fmt.Errorf("adding tree %s: %w", dir, err)
		}
	}
	return Descriptor{Digest: d, Size: size, MediaType: mediaType, Tree: true}, nil
}
