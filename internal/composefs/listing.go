package composefs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"syscall"
)

// WriteListing writes the `composefs-info ls` listing of t: every name
// below the root, depth first in byte order, one per line; directories end
// in "/" and a tab, symlinks show "\t-> TARGET", regular files with a
// payload "\t@ PAYLOAD". Secondary names of hard-linked inodes are listed
// bare, as composefs-info does.
func WriteListing(w io.Writer, t *Tree) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	err := t.Walk(func(name string, ino *Inode, isLink bool) error {
		if name == "/" {
			return nil
		}
		line = appendEscaped(line[:0], name, escNoSpace)
		if !isLink {
			switch ino.Mode.Type() {
			case TypeDir:
				line = append(line, "/\t"...)
			case TypeSymlink:
				line = append(line, "\t-> "...)
				line = appendEscaped(line, ino.Target, escStandard)
			case TypeRegular:
				if ino.Payload != "" {
					line = append(line, "\t@ "...)
					line = appendEscaped(line, ino.Payload, escStandard)
				}
			}
		}
		line = append(line, '\n')
		_, err := bw.Write(line)
		return err
	})
	if err != nil {
		return fmt.Errorf("writing listing: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing listing: %w", err)
	}
	return nil
}

// Objects returns the payloads (backing-file paths, "XX/YYYY…" for object
// store files) of the tree's regular files, sorted and without duplicates:
// the `composefs-info objects` list.
func (t *Tree) Objects() []string {
	set := map[string]bool{}
	t.Walk(func(name string, ino *Inode, isLink bool) error {
		if !isLink && ino.Mode.IsRegular() && ino.Payload != "" {
			set[ino.Payload] = true
		}
		return nil
	})
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// MissingObjects returns the objects (as returned by [Tree.Objects]) that
// do not exist in base, the object store directory: the
// `composefs-info missing-objects` list.
func MissingObjects(objects []string, base fs.FS) ([]string, error) {
	var missing []string
	for _, o := range objects {
		name := path.Clean(strings.TrimLeft(o, "/"))
		if !fs.ValidPath(name) {
			missing = append(missing, o)
			continue
		}
		_, err := fs.Stat(base, name)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrNotDir), errors.Is(err, syscall.ENOTDIR):
			missing = append(missing, o)
		default:
			return nil, fmt.Errorf("checking object %s: %w", o, err)
		}
	}
	return missing, nil
}
