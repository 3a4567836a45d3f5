package artifacts

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// TreeDigest computes the digest of a directory tree: the sha256 of a
// canonical listing with one line per entry (sorted relative path, type and
// permission bits, size and content sha256 for regular files, target for
// symlinks). Owners, times and xattrs are not part of it: trees hold build
// outputs, not root filesystems.
func TreeDigest(dir string) (Digest, int64, error) {
	var lines []string
	var total int64
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
