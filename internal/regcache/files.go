package regcache

import (
	"time"

	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
)

// pushFile uploads a file under the descriptor l unless the registry has it.
func (c *Cache) pushFile(ctx context.Context, l ocispec.Descriptor, path string) error {
	if ok, err := c.repo.Exists(ctx, l); err == nil && ok {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = c.repo.Push(ctx, l, f)
	if errors.Is(err, errdef.ErrAlreadyExists) {
		return nil
	}
	if err == nil {
		c.pushedB.Add(l.Size)
	}
	return err
}

// hashFile returns the OCI descriptor of a file.
func hashFile(mediaType, path string) (ocispec.Descriptor, error) {
	d, n, err := artifacts.HashFile(path)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.Digest(d), Size: n}, nil
}

// objectList returns the sorted, distinct composefs objects (hex fs-verity
// digests) the record's object sets list; the sets must be in st.
func objectList(st *artifacts.Store, rec *artifacts.Record) ([]string, error) {
	set := map[string]bool{}
	for _, os := range rec.ObjectSets {
		b, err := st.ReadBlob(os.Digest)
		if err != nil {
			return nil, fmt.Errorf("object set %s: %w", os.Digest.Short(), err)
		}
		for _, h := range strings.Fields(string(b)) {
			if len(h) != 2*fsverity.Size {
				return nil, fmt.Errorf("object set %s: bad object name %q", os.Digest.Short(), h)
			}
			if _, err := objstore.ParseName(h[:2] + "/" + h[2:]); err != nil {
				return nil, fmt.Errorf("object set %s: %w", os.Digest.Short(), err)
			}
			set[h] = true
		}
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	slices.Sort(out)
	return out, nil
}

// pushObjects uploads the objects as one tar (entries named by their hex
// fs-verity digest, in order, no times: one set always makes one tar).
func (c *Cache) pushObjects(ctx context.Context, st *artifacts.Store, objs []string) (ocispec.Descriptor, error) {
	tmp, err := st.TempDir("regcache-objects-")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer os.RemoveAll(tmp)
	p := filepath.Join(tmp, "objects.tar")
	if err := writeObjectTar(p, st.ObjectsDir(), objs); err != nil {
		return ocispec.Descriptor{}, err
	}
	l, err := hashFile(ObjectMediaType, p)
	if err != nil {
		return l, err
	}
	if err := c.pushFile(ctx, l, p); err != nil {
		return l, fmt.Errorf("composefs objects: %w", err)
	}
	return l, nil
}

func writeObjectTar(path, root string, objs []string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriter(f)
	tw := tar.NewWriter(bw)
	for _, h := range objs {
		src := filepath.Join(root, h[:2], h[2:])
		o, err := os.Open(src)
		if err != nil {
			return fmt.Errorf("composefs object %s: %w", h, err)
		}
		info, err := o.Stat()
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: h, Mode: 0o644, Size: info.Size(), Typeflag: tar.TypeReg, Format: tar.FormatPAX})
		}
		if err == nil {
			_, err = io.Copy(tw, o)
		}
		o.Close()
		if err != nil {
			return fmt.Errorf("composefs object %s: %w", h, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

// fetchObjects stores the objects of the tar layer l, checking each one's
// fs-verity digest against its name and that every wanted object came.
func (c *Cache) fetchObjects(ctx context.Context, st *artifacts.Store, want []string, l ocispec.Descriptor) error {
	objs, err := objstore.Open(st.ObjectsDir())
	if err != nil {
		return err
	}
	defer objs.Close()
	missing := false
	for _, h := range want {
		d, err := objstore.ParseName(h[:2] + "/" + h[2:])
		if err != nil {
			return err
		}
		if ok, _ := objs.Has(d); !ok {
			missing = true
			break
		}
	}
	if !missing {
		return nil
	}
	rc, err := c.repo.Fetch(ctx, l)
	if err != nil {
		return fmt.Errorf("fetching composefs objects: %w", err)
	}
	defer rc.Close()
	vr := content.NewVerifyReader(rc, l)
	cr := &countReader{r: vr}
	tr := tar.NewReader(cr)
	got := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("composefs objects: %w: %w", ErrRefused, err)
		}
		d, _, err := objs.Put(tr)
		if err != nil {
			return fmt.Errorf("composefs object %s: %w", hdr.Name, err)
		}
		if fsverity.Hex(d) != hdr.Name {
			return fmt.Errorf("composefs object %s has fs-verity digest %s: %w", hdr.Name, fsverity.Hex(d), ErrRefused)
		}
		got[hdr.Name] = true
	}
	c.pulledB.Add(cr.n)
	if err := vr.Verify(); err != nil {
		return fmt.Errorf("composefs objects: %w: %w", ErrRefused, err)
	}
	for _, h := range want {
		if !got[h] {
			return fmt.Errorf("composefs object %s missing: %w", h, ErrRefused)
		}
	}
	return objs.Sync()
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// pushTree uploads a directory tree as a tar keeping what the tree digest
// covers (modes, owners, extended attributes, symlinks, hard links).
func (c *Cache) pushTree(ctx context.Context, st *artifacts.Store, d artifacts.Descriptor) (ocispec.Descriptor, error) {
	tmp, err := st.TempDir("regcache-tree-")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer os.RemoveAll(tmp)
	p := filepath.Join(tmp, "tree.tar")
	if err := writeTreeTar(p, st.TreePath(d.Digest)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("tree %s: %w", d.Digest.Short(), err)
	}
	l, err := hashFile(TreeMediaType, p)
	if err != nil {
		return l, err
	}
	l.Annotations = map[string]string{TreeAnnotation: d.Digest.String()}
	if err := c.pushFile(ctx, l, p); err != nil {
		return l, fmt.Errorf("tree %s: %w", d.Digest.Short(), err)
	}
	return l, nil
}

func writeTreeTar(path, dir string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	bw := bufio.NewWriter(f)
	tw := tar.NewWriter(bw)
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		target := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Format = filepath.ToSlash(rel), tar.FormatPAX
		hdr.Uname, hdr.Gname = "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0).UTC(), time.Time{}, time.Time{}
		sys := info.Sys().(*syscall.Stat_t)
		hdr.Uid, hdr.Gid = int(sys.Uid), int(sys.Gid)
		if info.Mode().IsRegular() && sys.Nlink > 1 {
			k := inode{uint64(sys.Dev), sys.Ino}
			if first, ok := links[k]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[k] = hdr.Name
			}
		}
		xs, err := xattrs(p)
		if err != nil {
			return err
		}
		for k, v := range xs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func xattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || sz == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing extended attributes of %s: %w", p, err)
	}
	buf := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, buf); err != nil {
		return nil, fmt.Errorf("listing extended attributes of %s: %w", p, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("reading extended attribute %s of %s: %w", name, p, err)
		}
		v := make([]byte, n)
		if n, err = unix.Lgetxattr(p, name, v); err != nil {
			return nil, fmt.Errorf("reading extended attribute %s of %s: %w", name, p, err)
		}
		out[name] = string(v[:n])
	}
	return out, nil
}

// fetchTree unpacks a tree layer and adds it to the store; a tree whose
// digest differs from the one the record names is refused.
func (c *Cache) fetchTree(ctx context.Context, st *artifacts.Store, d artifacts.Descriptor, l ocispec.Descriptor) error {
	if st.Has(d) {
		return nil
	}
	tmp, err := st.TempDir("regcache-tree-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rc, err := c.repo.Fetch(ctx, l)
	if err != nil {
		return fmt.Errorf("fetching tree %s: %w", d.Digest.Short(), err)
	}
	defer rc.Close()
	vr := content.NewVerifyReader(rc, l)
	cr := &countReader{r: vr}
	root := filepath.Join(tmp, "tree")
	if err := extractTree(tar.NewReader(cr), root); err != nil {
		return fmt.Errorf("tree %s: %w: %w", d.Digest.Short(), ErrRefused, err)
	}
	c.pulledB.Add(cr.n)
	if err := vr.Verify(); err != nil {
		return fmt.Errorf("tree %s: %w: %w", d.Digest.Short(), ErrRefused, err)
	}
	got, _, err := artifacts.TreeDigest(root)
	if err != nil {
		return err
	}
	if got != d.Digest {
		return fmt.Errorf("tree %s unpacks to tree digest %s: %w", d.Digest, got, ErrRefused)
	}
	if _, err := st.AddTree(root, d.MediaType); err != nil {
		return err
	}
	return nil
}

func extractTree(tr *tar.Reader, root string) error {
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(hdr.Name) {
			return fmt.Errorf("entry %q escapes the tree", hdr.Name)
		}
		p := filepath.Join(root, filepath.FromSlash(hdr.Name))
		mode := fs.FileMode(hdr.Mode).Perm()
		if hdr.Mode&0o4000 != 0 {
			mode |= fs.ModeSetuid
		}
		if hdr.Mode&0o2000 != 0 {
			mode |= fs.ModeSetgid
		}
		if hdr.Mode&0o1000 != 0 {
			mode |= fs.ModeSticky
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if p != root {
				if err := os.Mkdir(p, 0o700); err != nil {
					return err
				}
			}
			dirs = append(dirs, dirMode{p, mode})
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			if !filepath.IsLocal(hdr.Linkname) {
				return fmt.Errorf("link %q escapes the tree", hdr.Linkname)
			}
			if err := os.Link(filepath.Join(root, filepath.FromSlash(hdr.Linkname)), p); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
		}
		if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if err := unix.Lsetxattr(p, name, []byte(v), 0); err != nil {
					return fmt.Errorf("%s: extended attribute %s: %w", hdr.Name, name, err)
				}
			}
		}
		if hdr.Typeflag == tar.TypeReg {
			if err := os.Chmod(p, mode); err != nil {
				return err
			}
		}
	}
	// Directory modes last, deepest first, so read-only directories
	// could still be filled.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}
