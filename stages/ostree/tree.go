package ostree

import (
	"fmt"
	"strings"

	cfs "github.com/cfs-compose/cfs-compose/internal/composefs"
)

// commitTree returns the tree to commit for the image tree src, as
// ostree-rs-ext imports a container image: /etc becomes /usr/etc (ostree
// makes the deployment's /etc from it); src is not modified. Device
// nodes, FIFOs and sockets cannot be committed (ostree refuses them) and
// are an error naming the path.
func commitTree(src *cfs.Tree) (*cfs.Tree, error) {
	if _, err := src.Lookup("usr/etc"); err == nil {
		if _, err := src.Lookup("etc"); err == nil {
			return nil, fmt.Errorf("the image has both /etc and /usr/etc; ostree deploys /usr/etc as /etc, so only one may exist")
		}
	}
	type entry struct {
		name string
		ino  *cfs.Inode
	}
	type hardlink struct{ name, target string }
	var entries, etc []entry
	var links []hardlink
	err := src.Walk(func(name string, ino *cfs.Inode, link bool) error {
		to := mapPath(name)
		switch {
		case link:
			links = append(links, hardlink{to, mapPath(ino.Path())})
		case to != "/"+strings.TrimPrefix(name, "/"):
			// /etc sorts before /usr: add it once /usr exists.
			etc = append(etc, entry{to, ino})
		default:
			entries = append(entries, entry{to, ino})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	dst := cfs.NewTree()
	for _, e := range append(entries, etc...) {
		ino := e.ino
		switch ino.Mode.Type() {
		case cfs.TypeDir, cfs.TypeRegular, cfs.TypeSymlink:
		default:
			return nil, fmt.Errorf("the image's %s is a %s, which an ostree commit cannot hold", ino.Path(), typeName(ino.Mode.Type()))
		}
		n := &cfs.Inode{
			Mode: ino.Mode, UID: ino.UID, GID: ino.GID, Mtime: ino.Mtime, Rdev: ino.Rdev, Size: ino.Size,
			Target: ino.Target, Payload: ino.Payload, Digest: ino.Digest, Content: ino.Content,
			Xattrs: append([]cfs.Xattr(nil), ino.Xattrs...),
		}
		if err := dst.Add(e.name, n); err != nil {
			return nil, fmt.Errorf("committing %s: %w", ino.Path(), err)
		}
	}
	for _, l := range links {
		if err := dst.Link(l.name, l.target); err != nil {
			return nil, fmt.Errorf("committing hard link %s: %w", l.name, err)
		}
	}
	return dst, nil
}

// mapPath moves /etc and everything under it to /usr/etc.
func mapPath(name string) string {
	p := "/" + strings.TrimPrefix(name, "/")
	if p == "/etc" || strings.HasPrefix(p, "/etc/") {
		return "/usr" + p
	}
	return p
}

func typeName(t cfs.Mode) string {
	switch t {
	case cfs.TypeChar:
		return "character device"
	case cfs.TypeBlock:
		return "block device"
	case cfs.TypeFIFO:
		return "FIFO"
	case cfs.TypeSocket:
		return "socket"
	}
	return fmt.Sprintf("file of type %o", uint32(t))
}
