package diskimage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// treeMtime is the modification time every test tree entry carries; the
// image keeps mtimes from the tree, so the tree must fix them.
var treeMtime = time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)

// treeEntry is one entry of a test root tree.
type treeEntry struct {
	path     string
	kind     byte   // 'f' file, 'd' dir, 'l' symlink, 'h' hardlink, 'c' char device, 'p' fifo
	data     []byte // file content, symlink or hardlink target
	xattrs   map[string][]byte
	dev      uint64
	mode     uint32
	uid, gid int
}

// rootTree is a small OS-like tree with every kind of entry the root
// partition must keep.
func rootTree() []treeEntry {
	caps := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x10, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	return []treeEntry{
		{path: "usr", kind: 'd', mode: 0o755},
		{path: "usr/bin", kind: 'd', mode: 0o755},
		{path: "usr/bin/ping", kind: 'f', data: bytes.Repeat([]byte("ping!"), 3000), mode: 0o755,
			xattrs: map[string][]byte{"security.capability": caps, "user.x": []byte("hello")}},
		{path: "usr/bin/ping6", kind: 'h', data: []byte("usr/bin/ping")},
		{path: "usr/bin/sh", kind: 'l', data: []byte("bash")},
		{path: "usr/bin/bash", kind: 'f', data: []byte("#!bash\n"), mode: 0o755},
		{path: "usr/lib", kind: 'd', mode: 0o755},
		{path: "usr/lib/long-symlink", kind: 'l', data: bytes.Repeat([]byte("x/"), 60)},
		{path: "usr/lib/empty", kind: 'f', mode: 0o644},
		{path: "usr/lib/setuid", kind: 'f', data: []byte("s"), mode: 0o4755, uid: 0, gid: 0},
		{path: "usr/lib/owned", kind: 'f', data: []byte("o"), mode: 0o640, uid: 1000, gid: 100},
		// More xattr bytes than a 256-byte inode holds: some go to a block.
		{path: "usr/lib/many-xattrs", kind: 'f', data: []byte("x"), mode: 0o644, xattrs: map[string][]byte{
			"user.a":         bytes.Repeat([]byte("a"), 40),
			"user.bb":        bytes.Repeat([]byte("b"), 100),
			"user.c":         []byte("c"),
			"trusted.zz":     bytes.Repeat([]byte("z"), 30),
			"security.label": []byte("system_u:object_r:bin_t:s0"),
		}},
		{path: "usr/lib/big-xattr", kind: 'f', data: []byte("y"), mode: 0o644, xattrs: map[string][]byte{
			"user.big": bytes.Repeat([]byte("B"), 500),
		}},
		{path: "dev", kind: 'd', mode: 0o755},
		{path: "dev/null", kind: 'c', dev: unix.Mkdev(1, 3), mode: 0o666},
		{path: "dev/initctl", kind: 'p', mode: 0o600},
		{path: "etc", kind: 'd', mode: 0o755},
		{path: "etc/os-release", kind: 'f', data: []byte("ID=fedora\n"), mode: 0o644},
		{path: "composefs/objects/ab", kind: 'd', mode: 0o755},
		{path: "composefs/objects/ab/cdef", kind: 'f', data: bytes.Repeat([]byte{0}, 20000), mode: 0o644},
	}
}

// materialise creates the tree under dir. reverse creates entries in the
// opposite order, so two materialisations differ in creation order, inode
// numbers, readdir order and ctimes while holding the same content.
func materialise(t testing.TB, dir string, entries []treeEntry, reverse bool) {
	t.Helper()
	order := make([]treeEntry, len(entries))
	copy(order, entries)
	if reverse {
		// Parents must exist first: create all directories, then the rest
		// in reverse.
		sort.SliceStable(order, func(i, j int) bool { return order[i].kind == 'd' && order[j].kind != 'd' })
		var dirs, rest []treeEntry
		for _, e := range order {
			if e.kind == 'd' {
				dirs = append(dirs, e)
			} else {
				rest = append([]treeEntry{e}, rest...)
			}
		}
		// Hardlinks need their target: move them to the end.
		sort.SliceStable(rest, func(i, j int) bool { return rest[i].kind != 'h' && rest[j].kind == 'h' })
		order = append(dirs, rest...)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range order {
		p := filepath.Join(dir, e.path)
		switch e.kind {
		case 'd':
			must(os.MkdirAll(p, 0o755))
			must(os.Chmod(p, os.FileMode(e.mode)))
		case 'f':
			must(os.WriteFile(p, e.data, 0o600))
			must(os.Chown(p, e.uid, e.gid))
			must(unix.Chmod(p, e.mode))
		case 'l':
			must(os.Symlink(string(e.data), p))
		case 'h':
			must(os.Link(filepath.Join(dir, string(e.data)), p))
		case 'c':
			must(unix.Mknod(p, unix.S_IFCHR|e.mode, int(e.dev)))
			must(unix.Chmod(p, e.mode))
		case 'p':
			must(unix.Mkfifo(p, e.mode))
			must(unix.Chmod(p, e.mode))
		}
		// Set xattrs in sorted order, or reversed: file systems list them
		// in insertion order, which the image must not depend on.
		var names []string
		for k := range e.xattrs {
			names = append(names, k)
		}
		sort.Strings(names)
		if reverse {
			sort.Sort(sort.Reverse(sort.StringSlice(names)))
		}
		for _, k := range names {
			must(unix.Lsetxattr(p, k, e.xattrs[k], 0))
		}
	}
	// Fix every mtime, deepest first so directory times stick.
	var all []string
	must(filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		all = append(all, p)
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(all)))
	ts := []unix.Timespec{unix.NsecToTimespec(treeMtime.UnixNano()), unix.NsecToTimespec(treeMtime.UnixNano())}
	for _, p := range all {
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// bigTree returns n files spread over directories, for benchmarks.
func bigTree(n int) []treeEntry {
	var out []treeEntry
	for d := range (n + 99) / 100 {
		out = append(out, treeEntry{path: fmt.Sprintf("usr/share/d%03d", d), kind: 'd', mode: 0o755})
	}
	for i := range n {
		size := 200 + (i*7919)%20000
		out = append(out, treeEntry{path: fmt.Sprintf("usr/share/d%03d/file-%05d", i/100, i), kind: 'f',
			data: bytes.Repeat([]byte{byte(i), byte(i >> 8), 'x'}, size/3), mode: 0o644})
	}
	return out
}
