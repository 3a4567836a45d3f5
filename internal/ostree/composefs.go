package ostree

import (
	"fmt"
	"io"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

// MetaComposefsDigest is the commit metadata key of `ostree commit
// --generate-composefs-metadata`: the fs-verity digest ("ay", 32 bytes) of
// the commit's composefs image, as [Reader.WriteComposefs] returns it.
const MetaComposefsDigest = "ostree.composefs.digest.v0"

// composefsRootDirs are the directories ostree adds to the root of every
// composefs image (if the commit lacks them) as bind-mount points.
var composefsRootDirs = []string{"usr", "etc", "boot", "var", "sysroot"}

// ComposefsOptions control [Reader.ComposefsTree]. A nil *ComposefsOptions
// means the zero value.
type ComposefsOptions struct {
	// Verity records the fs-verity digest of every non-empty regular
	// file's content object in the image (the metacopy attribute), as
	// ostree does when it generates composefs commit metadata and when it
	// deploys with fs-verity required. The digest is computed from the
	// content. Without Verity no digests are recorded.
	Verity bool
}

// ComposefsTree returns the composefs tree libostree builds for commit c
// when it deploys the commit as a composefs image (the deployment's
// .ostree.cfs) or computes [MetaComposefsDigest]. The rules, from
// libostree's ostree-repo-composefs.c (2025.2):
//
//   - The image root is the commit's root directory. Every directory has
//     the owner, mode and extended attributes of its dirmeta object.
//   - Every dirtree entry becomes its own inode with link count 1, even
//     when several entries name the same content object: the image has no
//     hard links.
//   - A content object gives its owner, mode, size and all its extended
//     attributes (names and values as stored, nothing filtered). A symbolic
//     link gets its target. A non-empty regular file gets the payload
//     "XX/YYYY….file", its object path in the bare repository relative to
//     objects/, which the image writer turns into the redirect attribute
//     "/XX/YYYY….file"; overlayfs then reads its content from the
//     repository's objects directory mounted as the data-only lower layer.
//     With [ComposefsOptions.Verity] it also gets the object's fs-verity
//     digest (the metacopy attribute). An empty regular file gets neither:
//     it is an empty inline file.
//   - No content is stored inline, and every modification time is 0
//     (libcomposefs' default; ostree's model has no mtimes).
//   - Afterwards the root gets the directories usr, etc, boot, var and
//     sysroot where missing: mode 0755, owner 0:0, no attributes.
//
// The image itself is [composefs.WriteImage] of this tree with format
// versions 0 to 1 ([Reader.WriteComposefs]). Debian's ostree is built
// without composefs, so these rules are not checked against ostree's own
// output; they are tested against the rules themselves and a round trip
// through the composefs reader.
func (r *Reader) ComposefsTree(c Checksum, opts *ComposefsOptions) (*composefs.Tree, error) {
	cm, err := r.ReadCommit(c)
	if err != nil {
		return nil, err
	}
	return r.composefsTree(Root{Contents: cm.RootContents, Meta: cm.RootMeta}, opts)
}

// composefsTree is [Reader.ComposefsTree] of the tree at root.
func (r *Reader) composefsTree(root Root, opts *ComposefsOptions) (*composefs.Tree, error) {
	if opts == nil {
		opts = &ComposefsOptions{}
	}
	t := composefs.NewTree()
	err := r.Walk(root, func(e *Entry) error {
		ino := &composefs.Inode{}
		var xs []Xattr
		if e.Meta != nil {
			ino.Mode, ino.UID, ino.GID = composefs.Mode(e.Meta.Mode), e.Meta.UID, e.Meta.GID
			xs = e.Meta.Xattrs
		} else {
			h := e.File
			ino.Mode, ino.UID, ino.GID = composefs.Mode(h.Mode), h.UID, h.GID
			xs = h.Xattrs
			switch {
			case h.Mode&modeTypeMask == modeSymlink:
				ino.Target = h.Target
			case e.Size > 0:
				ino.Size = e.Size
				ino.Payload = strings.TrimPrefix(ObjectPath(e.FileSum, ObjectFile), "objects/")
				if opts.Verity {
					d, err := r.verityDigest(e.FileSum, e.Size)
					if err != nil {
						return err
					}
					ino.Digest = &d
				}
			}
		}
		for _, x := range xs {
			ino.Xattrs = append(ino.Xattrs, composefs.Xattr{Name: x.Name, Value: x.Value})
		}
		if e.Path == "/" {
			root := t.Root()
			root.Mode, root.UID, root.GID, root.Xattrs = ino.Mode, ino.UID, ino.GID, ino.Xattrs
			return nil
		}
		if err := t.Add(e.Path, ino); err != nil {
			return fmt.Errorf("ostree: composefs tree: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, d := range composefsRootDirs {
		if _, err := t.Lookup("/" + d); err == nil {
			continue
		}
		if err := t.Add("/"+d, &composefs.Inode{Mode: composefs.TypeDir | 0o755}); err != nil {
			return nil, fmt.Errorf("ostree: composefs tree: %w", err)
		}
	}
	return t, nil
}

// verityDigest computes the fs-verity digest of a regular content object.
func (r *Reader) verityDigest(c Checksum, size int64) ([fsverity.Size]byte, error) {
	f, err := r.OpenFile(c)
	if err != nil {
		return [fsverity.Size]byte{}, err
	}
	defer f.Close()
	d, n, err := fsverity.SumReader(f)
	if err != nil {
		return d, fmt.Errorf("ostree: %s: %w", ObjectPath(c, ObjectFile), err)
	}
	if n != size {
		return d, fmt.Errorf("ostree: %s: %w: size changed while reading", ObjectPath(c, ObjectFile), ErrFormat)
	}
	return d, nil
}

// WriteComposefs writes the composefs image of commit c ([Reader.ComposefsTree]
// written with format versions 0 to 1, as libostree does) to w and returns
// the image's fs-verity digest: the value ostree records under
// [MetaComposefsDigest] (where it always uses Verity) and checks when it
// mounts the image.
func (r *Reader) WriteComposefs(w io.Writer, c Checksum, opts *ComposefsOptions) ([fsverity.Size]byte, error) {
	t, err := r.ComposefsTree(c, opts)
	if err != nil {
		return [fsverity.Size]byte{}, err
	}
	return writeComposefs(w, t)
}

// ComposefsDigest returns the [MetaComposefsDigest] value of a commit
// whose root directory is root, computed before the commit exists: the
// fs-verity digest of the composefs image of that tree with
// [ComposefsOptions.Verity], as `ostree commit
// --generate-composefs-metadata` computes it. The tree's objects must be
// in the repository ([Writer.WriteTree] wrote them); give the result to
// the commit with [ComposefsDigestEntry].
func (r *Reader) ComposefsDigest(root Root) ([fsverity.Size]byte, error) {
	t, err := r.composefsTree(root, &ComposefsOptions{Verity: true})
	if err != nil {
		return [fsverity.Size]byte{}, err
	}
	return writeComposefs(io.Discard, t)
}

// ComposefsDigestEntry returns the commit metadata entry recording the
// composefs digest d ([MetaComposefsDigest], a byte array).
func ComposefsDigestEntry(d [fsverity.Size]byte) MetaEntry {
	return MetaEntry{Key: MetaComposefsDigest, Value: Bytes(d[:])}
}

// writeComposefs writes the image of t with format versions 0 to 1 and
// returns its fs-verity digest.
func writeComposefs(w io.Writer, t *composefs.Tree) ([fsverity.Size]byte, error) {
	d := fsverity.New()
	if err := composefs.WriteImage(io.MultiWriter(w, d), t, &composefs.WriteOptions{MinVersion: 0, MaxVersion: 1}); err != nil {
		return [fsverity.Size]byte{}, fmt.Errorf("ostree: composefs image: %w", err)
	}
	return d.Sum(), nil
}
