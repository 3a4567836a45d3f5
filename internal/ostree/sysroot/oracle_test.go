package sysroot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/composefs/dirscan"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/internal/ostree"
	"github.com/cfs-compose/cfs-compose/internal/ostree/ostreetest"
)

// spec is a file of a generated test tree.
type spec struct {
	path     string
	mode     uint32 // permission bits; 0 with target for symlinks
	uid, gid int
	data     string // regular files
	size     int    // regular files: pseudo-random content of this size instead
	target   string // symlinks
	dir      bool
	xattrs   map[string]string
}

const kver = "6.12.0-test.x86_64"

// deployTree is a small bootable tree: a kernel with initramfs and device
// tree in usr/lib/modules, os-release, /usr/etc with files of several
// owners and modes, a symlink and attributes, an empty /etc (ostree
// replaces it), a /var with content (copied into the stateroot) and no
// usr/lib/tmpfiles.d (so ostree adds the legacy var directories), and the
// top-level links of an ostree system.
var deployTree = []spec{
	{path: "usr", dir: true, mode: 0o755},
	{path: "usr/bin", dir: true, mode: 0o755},
	{path: "usr/bin/tool", mode: 0o755, data: "#!/bin/sh\necho tool\n"},
	{path: "usr/bin/suid", mode: 0o4755, data: "suid"},
	{path: "usr/lib", dir: true, mode: 0o755},
	{path: "usr/lib/os-release", mode: 0o644, data: "NAME=\"Test OS\"\nID=testos\n# a comment\nVERSION_ID=42\nPRETTY_NAME=\"Test OS 42 (Container Image)\"\n"},
	{path: "usr/lib/modules", dir: true, mode: 0o755},
	{path: "usr/lib/modules/" + kver, dir: true, mode: 0o755},
	{path: "usr/lib/modules/" + kver + "/vmlinuz", mode: 0o755, size: 20000},
	{path: "usr/lib/modules/" + kver + "/initramfs.img", mode: 0o600, size: 30000},
	{path: "usr/lib/modules/" + kver + "/devicetree", mode: 0o644, size: 3000},
	{path: "usr/lib/modules/" + kver + "/modules.dep", mode: 0o644, data: "\n"},
	{path: "usr/lib/ostree", dir: true, mode: 0o755},
	{path: "usr/lib/ostree/prepare-root.conf", mode: 0o644, data: "[composefs]\nenabled = no\n"},
	{path: "usr/etc", dir: true, mode: 0o755},
	{path: "usr/etc/hostname", mode: 0o644, data: "testhost\n"},
	{path: "usr/etc/os-release", target: "../usr/lib/os-release"},
	{path: "usr/etc/localtime", target: "../usr/share/zoneinfo/UTC", xattrs: map[string]string{"security.link": "l"}},
	{path: "usr/etc/shadow", mode: 0o000, data: "root:*::0:99999:7:::\n"},
	{path: "usr/etc/owned", mode: 0o640, uid: 1000, gid: 1000, data: "owned\n", xattrs: map[string]string{"user.a": "1", "security.test": "s"}},
	{path: "usr/etc/empty", mode: 0o644},
	{path: "usr/etc/private", dir: true, mode: 0o700, uid: 1000, gid: 1000, xattrs: map[string]string{"user.dir": "d"}},
	{path: "usr/etc/private/key", mode: 0o600, uid: 1000, gid: 1000, data: "key"},
	{path: "usr/etc/sudoers.d", dir: true, mode: 0o750},
	{path: "etc", dir: true, mode: 0o755},
	{path: "var", dir: true, mode: 0o755},
	{path: "var/lib", dir: true, mode: 0o755},
	{path: "var/lib/app", dir: true, mode: 0o750, uid: 1000, gid: 1000},
	{path: "var/lib/app/state", mode: 0o600, uid: 1000, gid: 1000, data: "state"},
	{path: "var/spool", dir: true, mode: 0o1777},
	{path: "sysroot", dir: true, mode: 0o755},
	{path: "ostree", target: "sysroot/ostree"},
	{path: "bin", target: "usr/bin"},
	{path: "lib", target: "usr/lib"},
	{path: "boot", dir: true, mode: 0o755},
	{path: "root", dir: true, mode: 0o700},
	{path: "tmp", dir: true, mode: 0o1777},
}

// makeTree creates specs under dir, which gets mode 0755 and owner root.
func makeTree(dir string, specs []spec) error {
	rng := rand.New(rand.NewPCG(3, 4))
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for _, s := range specs {
		p := filepath.Join(dir, s.path)
		switch {
		case s.dir:
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
		case s.target != "":
			if err := os.Symlink(s.target, p); err != nil {
				return err
			}
		default:
			data := []byte(s.data)
			if s.size > 0 {
				data = make([]byte, s.size)
				for i := range data {
					data[i] = byte(rng.Uint32())
				}
			}
			if err := os.WriteFile(p, data, 0o600); err != nil {
				return err
			}
		}
		if err := os.Lchown(p, s.uid, s.gid); err != nil {
			return err
		}
		for k, v := range s.xattrs {
			if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		if s.target == "" {
			if err := unix.Chmod(p, s.mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// clearImmutable drops the immutable flag of the deployment directories
// under sysroot so that the test's temporary directories can be removed.
func clearImmutable(sysroot string) {
	ds, _ := filepath.Glob(filepath.Join(sysroot, "ostree/deploy/*/deploy/*"))
	for _, d := range ds {
		fd, err := unix.Open(d, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			continue
		}
		if fl, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS); err == nil {
			unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(fl&^fsImmutableFL))
		}
		unix.Close(fd)
	}
}

// sysrootDir returns a fresh temporary directory whose deployments are
// made mutable again before it is removed.
func sysrootDir(t *testing.T) string {
	d := t.TempDir()
	t.Cleanup(func() { clearImmutable(d) })
	return d
}

// writeCommit writes the tree in dir into the sysroot's repository the
// way the pipeline holds a tree (dirscan and an object store), commits it
// with metadata and sets ref.
func writeCommit(t *testing.T, sysroot, dir, ref string, cm ostree.Commit, composefsDigest bool) ostree.Checksum {
	t.Helper()
	store, err := objstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tree, err := dirscan.Scan(context.Background(), dir, &dirscan.Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	w, err := ostree.NewWriter(filepath.Join(sysroot, RepoDir), &ostree.Options{Objects: store.FS(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	root, err := w.WriteTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	if composefsDigest {
		r, err := ostree.OpenDir(filepath.Join(sysroot, RepoDir))
		if err != nil {
			t.Fatal(err)
		}
		d, err := r.ComposefsDigest(root)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		cm.Metadata = append([]ostree.MetaEntry{ostree.ComposefsDigestEntry(d)}, cm.Metadata...)
	}
	cm.RootContents, cm.RootMeta = root.Contents, root.Meta
	c, err := w.WriteCommit(&cm)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetRef(ref, c); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return c
}

// minimalTree is a bootable tree at the other edges: no initramfs (ostree
// then boots ostree-prepare-root as init=), no device tree, a FIPS HMAC
// file, no /etc and no /var, os-release with only an ID in usr/etc,
// usr/lib/tmpfiles.d (no legacy var directories) and an empty file in
// the hard-link checkout (ostree copies empty files).
var minimalTree = []spec{
	{path: "usr", dir: true, mode: 0o755},
	{path: "usr/lib", dir: true, mode: 0o755},
	{path: "usr/lib/modules", dir: true, mode: 0o755},
	{path: "usr/lib/modules/" + kver, dir: true, mode: 0o755},
	{path: "usr/lib/modules/" + kver + "/vmlinuz", mode: 0o644, size: 5000},
	{path: "usr/lib/modules/" + kver + "/.vmlinuz.hmac", mode: 0o644, data: "hmac\n"},
	{path: "usr/lib/tmpfiles.d", dir: true, mode: 0o755},
	{path: "usr/lib/tmpfiles.d/empty.conf", mode: 0o644},
	{path: "usr/etc", dir: true, mode: 0o755},
	{path: "usr/etc/os-release", mode: 0o644, data: "ID='minimal'\nBROKEN=\"unterminated\n"},
}

// TestOracle lays out a sysroot with the real `ostree admin init-fs`,
// `os-init`, `ostree commit` and `ostree admin deploy` (ostree 2025.2 of
// Debian trixie, built without composefs; no boot loader configuration,
// so ostree writes BLS entries only) and the same with Init,
// InitStateroot, the ostree Writer and Deploy, and compares the two trees
// file by file (see compareTrees for what is compared and what is
// ignored). Then the real ostree must accept ours: `ostree fsck`, `ostree
// admin status` (same output as for its own), and `ostree admin deploy`
// of a second commit onto our sysroot, which keeps our kernel arguments.
// The cases cover both init-fs epochs, the kernel layouts and origins
// Deploy supports, and bootc's repository configuration.
func TestOracle(t *testing.T) {
	c := ostreetest.Get(t)
	t.Logf("oracle: ostree %s in %s", c.Version, c.Dir)
	tests := []struct {
		name    string
		tree    []spec
		modern  bool
		kargs   []string
		image   ImageRef
		version string
		config  Config
	}{
		{
			name:    "full",
			tree:    deployTree,
			kargs:   []string{"quiet", "console=ttyS0,115200n8", "rd.luks=0"},
			image:   ImageRef{Image: "quay.io/example/testos:42"},
			version: "42.20250304.0",
		},
		{
			name:   "minimal modern",
			tree:   minimalTree,
			modern: true,
			kargs:  []string{"init=/sbin/init", "rw", "init=/bin/sh"},
			image:  ImageRef{Image: "quay.io/example/testos@sha256:" + strings.Repeat("ab", 32), Verify: VerifyPolicy},
		},
		{
			name:    "bootc",
			tree:    deployTree,
			modern:  true,
			kargs:   []string{"root=UUID=0b5f3c3e-0000-4000-8000-000000000000", "rw", "console=tty0"},
			image:   ImageRef{Image: "registry.example/os:1", Verify: VerifyOstreeRemote, Remote: "example"},
			version: "1",
			config:  BootcConfig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const (
				ref       = "testos/x86_64"
				stateroot = "testos"
			)
			ts := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
			tree, in, real, ours := t.TempDir(), t.TempDir(), sysrootDir(t), sysrootDir(t)
			if err := makeTree(tree, tt.tree); err != nil {
				t.Fatal(err)
			}
			origin, err := ContainerOrigin(tt.image)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(in, "origin"), []byte(origin), 0o644); err != nil {
				t.Fatal(err)
			}
			binds := []ostreetest.Bind{{Host: tree, Guest: "/mnt/tree"}, {Host: in, Guest: "/mnt/in"}, {Host: real, Guest: "/mnt/real"}, {Host: ours, Guest: "/mnt/ours"}}
			run := func(args ...string) string {
				t.Helper()
				out, err := c.Ostree(binds, args...)
				if err != nil {
					t.Fatal(err)
				}
				return string(out)
			}

			initArgs := []string{"admin", "init-fs"}
			if tt.modern {
				initArgs = append(initArgs, "--modern")
			}
			run(append(initArgs, "/mnt/real")...)
			for _, kv := range [][2]string{{"bootloader", tt.config.Bootloader}, {"bootprefix", fmt.Sprint(tt.config.BootPrefix)}, {"readonly", fmt.Sprint(tt.config.ReadOnly)}} {
				if kv[1] != "" && kv[1] != "false" {
					run("--repo=/mnt/real/ostree/repo", "config", "set", "sysroot."+kv[0], kv[1])
				}
			}
			run("admin", "os-init", "--sysroot=/mnt/real", stateroot)
			commitArgs := []string{"--repo=/mnt/real/ostree/repo", "commit", "--tree=dir=/mnt/tree", "--branch=" + ref,
				"--timestamp=" + ts.Format(time.RFC3339), "-s", "subject"}
			meta := []ostree.MetaEntry{ostree.RefBinding(ref)}
			if tt.version != "" {
				commitArgs = append(commitArgs, "--add-metadata-string=version="+tt.version)
				meta = append([]ostree.MetaEntry{{Key: ostree.MetaVersion, Value: ostree.String(tt.version)}}, meta...)
			}
			want := strings.TrimSpace(run(commitArgs...))
			deployArgs := []string{"admin", "deploy", "--sysroot=/mnt/real", "--os=" + stateroot, "--origin-file=/mnt/in/origin"}
			for _, k := range append(slices.Clone(tt.kargs), KargComposefsOff) {
				deployArgs = append(deployArgs, "--karg-append="+k)
			}
			t.Logf("ostree admin deploy: %s", strings.TrimSpace(run(append(deployArgs, ref)...)))

			if err := Init(ours, &InitOptions{Modern: tt.modern}); err != nil {
				t.Fatal(err)
			}
			if err := Configure(ours, tt.config); err != nil {
				t.Fatal(err)
			}
			if err := InitStateroot(ours, stateroot); err != nil {
				t.Fatal(err)
			}
			commit := writeCommit(t, ours, tree, ref, ostree.Commit{Subject: "subject", Timestamp: ts, Metadata: meta}, false)
			if commit.String() != want {
				t.Fatalf("commit %s, ostree commit wrote %s", commit, want)
			}
			dep, err := Deploy(ours, commit, &Options{Stateroot: stateroot, Kargs: tt.kargs, Origin: origin})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("deployment %+v", *dep)

			compareTrees(t, real, ours, ts)

			// The real ostree accepts our sysroot.
			t.Logf("ostree fsck: %s", strings.TrimSpace(run("--repo=/mnt/ours/ostree/repo", "fsck")))
			statusReal := run("admin", "status", "--sysroot=/mnt/real")
			statusOurs := run("admin", "status", "--sysroot=/mnt/ours")
			if statusReal != statusOurs {
				t.Errorf("ostree admin status differs:\nostree's sysroot:\n%s\nours:\n%s", statusReal, statusOurs)
			}
			if !strings.Contains(statusOurs, stateroot+" "+commit.String()+".0") {
				t.Errorf("ostree admin status does not list the deployment:\n%s", statusOurs)
			}
			t.Logf("ostree admin status:\n%s", statusOurs)

			// Updatable: ostree deploys a second commit onto our sysroot
			// and takes the kernel arguments from our entry.
			if err := os.WriteFile(filepath.Join(tree, "usr/lib/new"), []byte("second\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			second := strings.TrimSpace(run("--repo=/mnt/ours/ostree/repo", "commit", "--tree=dir=/mnt/tree", "--branch="+ref,
				"--timestamp="+ts.Add(time.Hour).Format(time.RFC3339), "-s", "second"))
			t.Logf("second deploy: %s", strings.TrimSpace(run("admin", "deploy", "--sysroot=/mnt/ours", "--os="+stateroot, ref)))
			status := run("admin", "status", "--sysroot=/mnt/ours")
			t.Logf("ostree admin status after the second deploy:\n%s", status)
			for _, d := range []string{second + ".0", commit.String() + ".0"} {
				if !strings.Contains(status, stateroot+" "+d) {
					t.Errorf("status after the second deploy lacks %s", d)
				}
			}
			entry, err := os.ReadFile(filepath.Join(ours, "boot/loader/entries/ostree-2.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := userKargs(string(entry)), userKargs("options "+dep.Options); got != want {
				t.Errorf("the second deployment has kernel arguments %q, the first %q", got, want)
			}
			run("--repo=/mnt/ours/ostree/repo", "fsck")
		})
	}
}

// userKargs returns the options line of a BLS entry without the
// arguments ostree sets per deployment (ostree=, init=).
func userKargs(entry string) string {
	for _, line := range strings.Split(entry, "\n") {
		if v, ok := strings.CutPrefix(line, "options "); ok {
			return strings.Join(slices.DeleteFunc(strings.Fields(v), func(a string) bool {
				return strings.HasPrefix(a, "ostree=") || strings.HasPrefix(a, "init=")
			}), " ")
		}
	}
	return ""
}

// node is what compareTrees compares of one path.
type node struct {
	kind            string // "dir", "file", "symlink"
	mode, uid, gid  uint32
	xattrs          []string
	target, content string
	immutable       bool
	mtime           int64
	links           string // the other paths sharing the inode, sorted
	ino             uint64
}

// scan records every path under root.
func scan(t *testing.T, root string) (map[string]*node, []string) {
	t.Helper()
	nodes := make(map[string]*node)
	byIno := make(map[uint64][]string)
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := &node{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano(), ino: st.Ino}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			n.kind = "dir"
		case unix.S_IFLNK:
			n.kind = "symlink"
			n.target, _ = os.Readlink(p)
		case unix.S_IFREG:
			n.kind = "file"
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			n.content = fmt.Sprintf("%d bytes sha256 %s", len(b), hex.EncodeToString(s[:]))
			if len(b) < 1024 {
				n.content += fmt.Sprintf(" %q", b)
			}
		default:
			n.kind = fmt.Sprintf("type %o", st.Mode&unix.S_IFMT)
		}
		if n.kind != "dir" {
			byIno[st.Ino] = append(byIno[st.Ino], rel)
		}
		if n.kind != "symlink" {
			if fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
				if fl, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS); err == nil {
					n.immutable = fl&fsImmutableFL != 0
				}
				unix.Close(fd)
			}
		}
		buf := make([]byte, 1<<16)
		sz, err := unix.Llistxattr(p, buf)
		if err != nil {
			return err
		}
		for _, name := range strings.Split(string(buf[:sz]), "\x00") {
			if name == "" {
				continue
			}
			v := make([]byte, 1<<16)
			vn, err := unix.Lgetxattr(p, name, v)
			if err != nil {
				return err
			}
			n.xattrs = append(n.xattrs, fmt.Sprintf("%s=%q", name, v[:vn]))
		}
		slices.Sort(n.xattrs)
		nodes[rel] = n
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel, n := range nodes {
		if n.kind != "dir" {
			others := slices.DeleteFunc(slices.Clone(byIno[n.ino]), func(s string) bool { return s == rel })
			slices.Sort(others)
			n.links = strings.Join(others, ",")
		}
	}
	return nodes, paths
}

// compareTrees requires the same paths in both sysroots with the same
// type, mode, owner, extended attributes, symlink target, content,
// immutable flag and hard-link structure (which other paths share the
// inode: the checkout's files and /boot's kernel are the repository's
// content objects). Modification times must match where ostree's are
// deterministic (0: content objects and the checkout's directories).
//
// Ignored, because ostree takes them from the clock or the file system
// decides them: modification times ostree sets to the current time
// (directories it creates or changes, copied files, metadata objects,
// refs, the BLS entry, symlinks it creates), whose values in our tree
// must all be the deployment time instead (or 0); access and change
// times; inode numbers (only compared as hard-link structure); directory
// sizes; inode flags other than immutable (extents, indexed directories).
func compareTrees(t *testing.T, real, ours string, when time.Time) {
	t.Helper()
	rn, rpaths := scan(t, real)
	on, opaths := scan(t, ours)
	if !slices.Equal(rpaths, opaths) {
		t.Errorf("paths differ:\nonly in ostree's: %v\nonly in ours: %v", minus(rpaths, opaths), minus(opaths, rpaths))
	}
	compared := 0
	for _, p := range rpaths {
		r, o := rn[p], on[p]
		if o == nil {
			continue
		}
		compared++
		type cmp struct {
			what     string
			got, exp any
		}
		for _, c := range []cmp{
			{"type", o.kind, r.kind}, {"mode", fmt.Sprintf("%o", o.mode), fmt.Sprintf("%o", r.mode)},
			{"owner", fmt.Sprint(o.uid, ":", o.gid), fmt.Sprint(r.uid, ":", r.gid)},
			{"xattrs", strings.Join(o.xattrs, " "), strings.Join(r.xattrs, " ")},
			{"target", o.target, r.target}, {"content", o.content, r.content},
			{"immutable", o.immutable, r.immutable}, {"hard links", o.links, r.links},
		} {
			if c.got != c.exp {
				t.Errorf("%s: %s %v, ostree's %v", p, c.what, c.got, c.exp)
			}
		}
		if r.mtime == 0 && o.mtime != 0 {
			t.Errorf("%s: mtime %d, ostree's 0", p, o.mtime)
		}
	}
	for _, p := range opaths {
		if m := on[p].mtime; m != 0 && m != when.UnixNano() {
			t.Errorf("%s: mtime %v, neither 0 nor the deployment time", p, time.Unix(0, m).UTC())
		}
	}
	t.Logf("compared %d paths", compared)
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
