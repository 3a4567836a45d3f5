package ostree

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/ostree/ostreetest"
)

// BenchmarkCommitUsr commits a copy of the oracle chroot's /usr (a Debian
// trixie root with apt and ostree: some thousands of files) into a fresh
// bare repository, once with the Writer (directory scan included) and
// once with the real `ostree commit` in the same iteration, and reports
// both times and their ratio ours/ostree (below 1: we are faster). Both
// sync the repository at the end. The commits must be identical.
func BenchmarkCommitUsr(b *testing.B) {
	c := ostreetest.Get(b)
	work := b.TempDir()
	tree := filepath.Join(work, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(c.Dir, "usr"), tree).CombinedOutput(); err != nil {
		b.Fatalf("copying /usr: %v\n%s", err, out)
	}
	var files, bytes int64
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files++
			if info, err := d.Info(); err == nil {
				bytes += info.Size()
			}
		}
		return nil
	})
	b.Logf("tree: %d regular files, %d MiB", files, bytes>>20)
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	const ref = "bench"
	var ours, real time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		repoOurs := filepath.Join(work, "ours"+strconv.Itoa(i))
		repoReal := filepath.Join(work, "real"+strconv.Itoa(i))
		if err := os.Mkdir(repoReal, 0o755); err != nil {
			b.Fatal(err)
		}
		binds := []ostreetest.Bind{{Host: tree, Guest: "/mnt/tree"}, {Host: repoReal, Guest: "/mnt/repo"}}
		if _, err := c.Ostree(binds, "--repo=/mnt/repo", "init", "--mode=bare"); err != nil {
			b.Fatal(err)
		}

		start := time.Now()
		tr, open, err := loadDir(tree)
		if err != nil {
			b.Fatal(err)
		}
		w, err := NewWriter(repoOurs, &Options{Open: open})
		if err != nil {
			b.Fatal(err)
		}
		root, err := w.WriteTree(tr)
		if err != nil {
			b.Fatal(err)
		}
		sum, err := w.WriteCommit(&Commit{Subject: "usr", Timestamp: ts, Metadata: []MetaEntry{RefBinding(ref)}, RootContents: root.Contents, RootMeta: root.Meta})
		if err != nil {
			b.Fatal(err)
		}
		if err := w.SetRef(ref, sum); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)

		start = time.Now()
		out, err := c.Ostree(binds, "--repo=/mnt/repo", "commit", "--tree=dir=/mnt/tree", "--timestamp="+ts.Format(time.RFC3339), "-s", "usr", "--branch="+ref)
		if err != nil {
			b.Fatal(err)
		}
		real += time.Since(start)
		if got := strings.TrimSpace(string(out)); got != sum.String() {
			b.Fatalf("ostree committed %s, we %s", got, sum)
		}
		b.StopTimer()
		os.RemoveAll(repoOurs)
		os.RemoveAll(repoReal)
		b.StartTimer()
	}
	b.ReportMetric(float64(ours.Milliseconds())/float64(b.N), "ours-ms/op")
	b.ReportMetric(float64(real.Milliseconds())/float64(b.N), "ostree-ms/op")
	b.ReportMetric(ours.Seconds()/real.Seconds(), "ours/ostree")
}
