package ostree

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/ostree/ostreetest"
)

// TestOracle commits a generated tree with the real `ostree commit` of
// Debian trixie (ostree 2025.2, see package ostreetest) and with the
// Writer, and requires the same set of objects (every checksum), the same
// commit, the same object metadata (owner, mode, attributes, mtime of
// regular files), refs and config; the real `ostree fsck`, `show` and
// `ls -R` must accept the Writer's repository and print the same as for
// ostree's own.
func TestOracle(t *testing.T) {
	c := ostreetest.Get(t)
	t.Logf("oracle: ostree %s in %s", c.Version, c.Dir)
	tree := t.TempDir()
	if err := makeTree(tree, oracleTree); err != nil {
		t.Fatal(err)
	}
	const ref = "cfs/test"
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	parent, _ := ParseChecksum(strings.Repeat("ab", 32))
	tests := []struct {
		name   string
		args   []string
		commit Commit
	}{
		{
			name:   "defaults",
			args:   []string{"-s", "subject"},
			commit: Commit{Subject: "subject", Metadata: []MetaEntry{RefBinding(ref)}},
		},
		{
			name: "metadata",
			args: []string{"-s", "Fedora 42", "-m", "a body\nof two lines", "--add-metadata-string=version=42.1", "--add-metadata-string=ostree.linux=6.12.0-1-amd64", "--bind-ref=other", "--bind-ref=alpha"},
			commit: Commit{Subject: "Fedora 42", Body: "a body\nof two lines", Metadata: []MetaEntry{
				{MetaVersion, String("42.1")}, {MetaLinux, String("6.12.0-1-amd64")}, RefBinding(ref, "other", "alpha"),
			}},
		},
		{
			name: "typed metadata",
			args: []string{"-s", "typed", "--add-metadata-string=version=1",
				"--add-metadata=ostree.bootable=true", "--add-metadata=n=uint64 7", "--add-metadata=u=uint32 4000000000",
				"--add-metadata=blob=[byte 0x01, 0x02, 0x00]", "--add-metadata=refs=['a', 'b']",
				"--add-metadata=dict={'k': <'v'>, 'n': <{'deep': <true>}>}"},
			commit: Commit{Subject: "typed", Metadata: []MetaEntry{
				{MetaVersion, String("1")}, {MetaBootable, Bool(true)}, {"n", Uint64(7)}, {"u", Uint32(4000000000)},
				{"blob", Bytes([]byte{1, 2, 0})}, {"refs", Strings([]string{"a", "b"})},
				{"dict", Dict([]MetaEntry{{"k", String("v")}, {"n", Dict([]MetaEntry{{"deep", Bool(true)}})}})},
				RefBinding(ref),
			}},
		},
		{
			name:   "no bindings, parent, empty subject",
			args:   []string{"--no-bindings", "--parent=" + parent.String()},
			commit: Commit{Parent: &parent},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			real, ours := t.TempDir(), t.TempDir()
			binds := []ostreetest.Bind{{Host: tree, Guest: "/mnt/tree"}, {Host: real, Guest: "/mnt/real"}, {Host: ours, Guest: "/mnt/ours"}}
			if _, err := c.Ostree(binds, "--repo=/mnt/real", "init", "--mode=bare"); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"--repo=/mnt/real", "commit", "--tree=dir=/mnt/tree", "--timestamp=" + ts.Format(time.RFC3339), "--branch=" + ref}, tt.args...)
			out, err := c.Ostree(binds, args...)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ParseChecksum(strings.TrimSpace(string(out)))
			if err != nil {
				t.Fatalf("ostree commit printed %q: %v", out, err)
			}

			tr, open, err := loadDir(tree)
			if err != nil {
				t.Fatal(err)
			}
			w, err := NewWriter(ours, &Options{Open: open})
			if err != nil {
				t.Fatal(err)
			}
			root, err := w.WriteTree(tr)
			if err != nil {
				t.Fatal(err)
			}
			cm := tt.commit
			cm.Timestamp, cm.RootContents, cm.RootMeta = ts, root.Contents, root.Meta
			got, err := w.WriteCommit(&cm)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.SetRef(ref, got); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("commit %s, ostree wrote %s", got, want)
			}
			realObjs, ourObjs := objectList(t, real), objectList(t, ours)
			if !slices.Equal(realObjs, ourObjs) {
				t.Errorf("object sets differ:\nonly ostree: %v\nonly ours:   %v", minus(realObjs, ourObjs), minus(ourObjs, realObjs))
			}
			t.Logf("%d objects, stats %+v", len(ourObjs), w.Stats())
			compareObjectMeta(t, real, ours, minus(ourObjs, minus(ourObjs, realObjs)))
			if r, o := repoLayout(t, real), repoLayout(t, ours); !slices.Equal(r, o) {
				t.Errorf("repository layout differs:\nostree: %v\nours:   %v", r, o)
			}

			for _, repo := range []string{real, ours} {
				st, err := openDir(t, repo).Verify(got)
				if err != nil {
					t.Errorf("Verify %s: %v", repo, err)
				}
				if st.Files == 0 || st.DirTrees == 0 {
					t.Errorf("Verify stats %+v", st)
				}
			}
			if out, err := c.Ostree(binds, "--repo=/mnt/ours", "fsck"); err != nil {
				t.Errorf("ostree fsck of our repository: %v\n%s", err, out)
			} else {
				t.Logf("ostree fsck: %s", strings.TrimSpace(string(out)))
			}
			for _, cmd := range [][]string{{"show", ref}, {"ls", "-R", "-X", "-C", ref}, {"refs"}, {"log", ref}} {
				r, err1 := c.Ostree(binds, append([]string{"--repo=/mnt/real"}, cmd...)...)
				o, err2 := c.Ostree(binds, append([]string{"--repo=/mnt/ours"}, cmd...)...)
				if err1 != nil || err2 != nil {
					t.Errorf("ostree %v: %v / %v", cmd, err1, err2)
					continue
				}
				if string(r) != string(o) {
					t.Errorf("ostree %v differs:\nostree's repository:\n%s\nours:\n%s", cmd, r, o)
				}
			}
		})
	}
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

// compareObjectMeta compares owner, mode, attributes, symlink targets and
// (for regular files) mtime of the object files both repositories hold.
func compareObjectMeta(t *testing.T, real, ours string, objs []string) {
	t.Helper()
	for _, o := range objs {
		a, b := filepath.Join(real, "objects", o), filepath.Join(ours, "objects", o)
		var sa, sb unix.Stat_t
		if err := unix.Lstat(a, &sa); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lstat(b, &sb); err != nil {
			t.Fatal(err)
		}
		if sa.Mode != sb.Mode || sa.Uid != sb.Uid || sa.Gid != sb.Gid || sa.Size != sb.Size {
			t.Errorf("%s: mode %o uid %d gid %d size %d, ostree's %o %d %d %d", o, sb.Mode, sb.Uid, sb.Gid, sb.Size, sa.Mode, sa.Uid, sa.Gid, sa.Size)
		}
		if sa.Mode&unix.S_IFMT == unix.S_IFREG && strings.HasSuffix(o, ".file") && sa.Mtim.Sec != sb.Mtim.Sec {
			t.Errorf("%s: mtime %d, ostree's %d", o, sb.Mtim.Sec, sa.Mtim.Sec)
		}
		if !strings.HasSuffix(o, ".file") {
			continue
		}
		c, err := ParseChecksum(strings.ReplaceAll(strings.TrimSuffix(o, ".file"), "/", ""))
		if err != nil {
			t.Fatal(err)
		}
		ha, err1 := openDir(t, real).FileHeader(c)
		hb, err2 := openDir(t, ours).FileHeader(c)
		if err1 != nil || err2 != nil {
			t.Fatalf("%v %v", err1, err2)
		}
		slices.SortFunc(ha.Xattrs, func(x, y Xattr) int { return strings.Compare(x.Name, y.Name) })
		slices.SortFunc(hb.Xattrs, func(x, y Xattr) int { return strings.Compare(x.Name, y.Name) })
		if ha.Target != hb.Target || !slices.Equal(ha.Xattrs, hb.Xattrs) {
			t.Errorf("%s: header %+v, ostree's %+v", o, hb, ha)
		}
	}
}

// repoLayout lists a repository's directories and non-object files,
// leaving out tmp/ and the .lock file ostree creates when it opens a
// repository.
func repoLayout(t *testing.T, repo string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		if rel == "tmp" {
			return fs.SkipDir
		}
		if rel == ".lock" || strings.HasPrefix(rel, "objects/") && !d.IsDir() {
			return nil
		}
		info, _ := d.Info()
		out = append(out, rel+" "+info.Mode().String())
		if !d.IsDir() {
			b, _ := os.ReadFile(p)
			out[len(out)-1] += " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
