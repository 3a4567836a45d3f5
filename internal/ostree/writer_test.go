package ostree

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/composefs/dirscan"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
)

// smallTree is the tree of the golden vector below: /d/f ("hi\n", 0644)
// and /d/l -> f, directories 0755, everything owned by root.
func smallTree(t *testing.T) *composefs.Tree {
	t.Helper()
	tr := composefs.NewTree()
	tr.Root().Mode = composefs.TypeDir | 0o755
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.Add("/d", &composefs.Inode{Mode: composefs.TypeDir | 0o755}))
	must(tr.Add("/d/f", &composefs.Inode{Mode: composefs.TypeRegular | 0o644, Size: 3, Content: []byte("hi\n")}))
	must(tr.Add("/d/l", &composefs.Inode{Mode: composefs.TypeSymlink | 0o777, Target: "f"}))
	return tr
}

// objectList returns "XX/rest.ext" for every object file of a repository.
func objectList(t *testing.T, repo string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(repo, "objects"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(repo, "objects"), p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestWriterGolden checks a tree against objects ostree 2025.2 (Debian
// trixie) wrote for it:
//
//	mkdir -p /tmp/t/d && echo hi > /tmp/t/d/f && ln -s f /tmp/t/d/l
//	ostree --repo=/tmp/r init --mode=bare
//	ostree --repo=/tmp/r commit --tree=dir=/tmp/t --timestamp=2024-01-01T00:00:00Z -s subj --branch main
func TestWriterGolden(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("SKIPPING: writing a bare repository needs root (chown, security xattrs)")
	}
	repo := t.TempDir()
	w, err := NewWriter(repo, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	root, err := w.WriteTree(smallTree(t))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := w.WriteCommit(&Commit{
		Metadata:     []MetaEntry{RefBinding("main")},
		Subject:      "subj",
		Timestamp:    time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		RootContents: root.Contents,
		RootMeta:     root.Meta,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetRef("main", sum); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := sum.String(), "1dc661fc55165ece498d1c46fea04071808de4a409f09a1dcb3834f0e58ef58b"; got != want {
		t.Errorf("commit %s, want %s", got, want)
	}
	want := []string{
		"1d/c661fc55165ece498d1c46fea04071808de4a409f09a1dcb3834f0e58ef58b.commit",
		"43/f338adeb68637b721d7ba4c39b7677a4fbb87e3adf4a363a3d50c9de9a35ed.file",
		"44/6a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488.dirmeta",
		"61/608761d19d6a54c4217b6d679577fde5a2675c5b6e6405469941aa4e2398c6.dirtree",
		"7c/586cb0df000e04dc738fa77ed804a6917bdd345af6c5cfabc8bbb4ebb53982.dirtree",
		"fb/f7cf77a1b50d9f074cb6e9ef6ddb65b6532ea89e4f4ca1b07a05b4cd1be259.file",
	}
	if got := objectList(t, repo); !slices.Equal(got, want) {
		t.Errorf("objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cfg, _ := os.ReadFile(filepath.Join(repo, "config"))
	if string(cfg) != Config {
		t.Errorf("config %q", cfg)
	}
	ref, _ := os.ReadFile(filepath.Join(repo, "refs/heads/main"))
	if string(ref) != sum.String()+"\n" {
		t.Errorf("ref %q", ref)
	}
	vst, err := openDir(t, repo).Verify(sum)
	if err != nil {
		t.Fatal(err)
	}
	if vst != (VerifyStats{Commits: 1, DirTrees: 2, DirMetas: 1, Files: 2}) {
		t.Errorf("verify stats %+v", vst)
	}
	st := w.Stats()
	if st.ContentTotal != 2 || st.ContentWritten != 2 || st.MetadataWritten != 4 || st.MetadataTotal != 5 {
		t.Errorf("stats %+v", st)
	}
}

// TestVerifyCorrupt checks that Verify notices changed content, owner,
// attributes and metadata objects.
func TestVerifyCorrupt(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("SKIPPING: writing a bare repository needs root (chown, security xattrs)")
	}
	const file = "fb/f7cf77a1b50d9f074cb6e9ef6ddb65b6532ea89e4f4ca1b07a05b4cd1be259.file"
	tests := []struct {
		name    string
		corrupt func(repo string) error
		want    error
	}{
		{"content", func(repo string) error {
			return os.WriteFile(filepath.Join(repo, "objects", file), []byte("ho\n"), 0o644)
		}, ErrChecksum},
		{"owner", func(repo string) error { return os.Lchown(filepath.Join(repo, "objects", file), 1, 1) }, ErrChecksum},
		{"mode", func(repo string) error { return os.Chmod(filepath.Join(repo, "objects", file), 0o600) }, ErrChecksum},
		{"missing", func(repo string) error { return os.Remove(filepath.Join(repo, "objects", file)) }, ErrNotExist},
		{"dirtree", func(repo string) error {
			return os.WriteFile(filepath.Join(repo, "objects/7c/586cb0df000e04dc738fa77ed804a6917bdd345af6c5cfabc8bbb4ebb53982.dirtree"), nil, 0o644)
		}, ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := t.TempDir()
			w, err := NewWriter(repo, &Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			root, _ := w.WriteTree(smallTree(t))
			sum, _ := w.WriteCommit(&Commit{RootContents: root.Contents, RootMeta: root.Meta, Timestamp: time.Unix(0, 0)})
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := tt.corrupt(repo); err != nil {
				t.Fatal(err)
			}
			if _, err := openDir(t, repo).Verify(sum); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestWriterInputs checks content sources and rejected input.
func TestWriterInputs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("SKIPPING: writing a bare repository needs root (chown, security xattrs)")
	}
	content := strings.Repeat("external content ", 10)
	ext := func() *composefs.Inode {
		return &composefs.Inode{Mode: composefs.TypeRegular | 0o644, Size: int64(len(content)), Payload: "ab/cdef"}
	}
	want := func() Checksum {
		c, err := FileChecksum(&FileHeader{Mode: modeRegular | 0o644}, strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}()
	tests := []struct {
		name  string
		add   func(tr *composefs.Tree) error
		opts  Options
		check func(r *Reader, root Root) error
		err   error
	}{
		{
			name: "objects fs",
			add:  func(tr *composefs.Tree) error { return tr.Add("/f", ext()) },
			opts: Options{Objects: fstest.MapFS{"ab/cdef": {Data: []byte(content)}}},
		},
		{
			name: "open callback",
			add:  func(tr *composefs.Tree) error { return tr.Add("/f", ext()) },
			opts: Options{Open: func(name string, _ *composefs.Inode) (io.ReadCloser, error) {
				if name != "/f" {
					return nil, fs.ErrNotExist
				}
				return io.NopCloser(strings.NewReader(content)), nil
			}},
		},
		{name: "no source", add: func(tr *composefs.Tree) error { return tr.Add("/f", ext()) }, err: ErrInvalid},
		{
			name: "short content",
			add:  func(tr *composefs.Tree) error { return tr.Add("/f", ext()) },
			opts: Options{Objects: fstest.MapFS{"ab/cdef": {Data: []byte("short")}}},
			err:  ErrInvalid,
		},
		{
			name: "device",
			add: func(tr *composefs.Tree) error {
				return tr.Add("/dev", &composefs.Inode{Mode: composefs.TypeChar | 0o600, Rdev: 0x0103})
			},
			err: ErrInvalid,
		},
		{
			name: "fifo",
			add: func(tr *composefs.Tree) error {
				return tr.Add("/p", &composefs.Inode{Mode: composefs.TypeFIFO | 0o600})
			},
			err: ErrInvalid,
		},
		{
			name: "non-UTF-8 name",
			add: func(tr *composefs.Tree) error {
				return tr.Add("/\xff", &composefs.Inode{Mode: composefs.TypeRegular | 0o644})
			},
			err: ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := composefs.NewTree()
			if err := tt.add(tr); err != nil {
				t.Fatal(err)
			}
			opts := tt.opts
			opts.NoSync = true
			w, err := NewWriter(t.TempDir(), &opts)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			root, err := w.WriteTree(tr)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("WriteTree = %v, want %v", err, tt.err)
				}
				if _, err2 := w.WriteCommit(&Commit{}); err2 != err {
					t.Fatalf("error not sticky: %v", err2)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			dt, err := openDir(t, w.root).ReadDirTree(root.Contents)
			if err != nil {
				t.Fatal(err)
			}
			if len(dt.Files) != 1 || dt.Files[0].Checksum != want {
				t.Fatalf("dirtree %+v, want file %s", dt, want)
			}
		})
	}
}

// openDir is OpenDir, closed when the test ends.
func openDir(t *testing.T, dir string) *Reader {
	t.Helper()
	r, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestWriterObjstore writes the oracle tree the way the pipeline holds it
// (scanned by dirscan, small files inline, the others in an object store)
// and requires the same root as from the directory itself (which
// TestOracle checks against ostree).
func TestWriterObjstore(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("SKIPPING: the generated test tree and the bare repository need root (chown, security xattrs)")
	}
	src := t.TempDir()
	if err := makeTree(src, oracleTree); err != nil {
		t.Fatal(err)
	}
	store, err := objstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	scanned, err := dirscan.Scan(context.Background(), src, &dirscan.Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	direct, open, err := loadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	var roots []Root
	for _, c := range []struct {
		tree *composefs.Tree
		opts Options
	}{{scanned, Options{Objects: store.FS()}}, {direct, Options{Open: open}}} {
		c.opts.NoSync = true
		w, err := NewWriter(t.TempDir(), &c.opts)
		if err != nil {
			t.Fatal(err)
		}
		root, err := w.WriteTree(c.tree)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		roots = append(roots, root)
	}
	if roots[0] != roots[1] {
		t.Fatalf("root from the object store %+v, from the directory %+v", roots[0], roots[1])
	}
}
