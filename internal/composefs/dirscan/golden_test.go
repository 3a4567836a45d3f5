package dirscan

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

const goldenDir = "../testdata/golden"

var (
	treesOnce sync.Once
	treesDir  string
	treesErr  error
	treesTmp  string
)

// TestMain removes the generated trees after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if treesTmp != "" {
		os.RemoveAll(treesTmp)
	}
	os.Exit(code)
}

// goldenTrees generates the golden trees t1..t8 with gen-trees.sh (once per
// test binary) and returns their parent directory. It needs root (mknod,
// chown, trusted.* xattrs); without root the test is skipped with a reason.
// CFS_GOLDEN_TREES may name a directory already filled by gen-trees.sh, to
// save the minute the script takes during development.
func goldenTrees(t testing.TB) string {
	t.Helper()
	treesOnce.Do(func() {
		if dir := os.Getenv("CFS_GOLDEN_TREES"); dir != "" {
			treesDir = dir
			return
		}
		if os.Geteuid() != 0 {
			treesErr = errSkip("gen-trees.sh needs root (mknod, chown, trusted.* xattrs)")
			return
		}
		for _, tool := range []string{"setfattr", "setfacl", "bash"} {
			if _, err := exec.LookPath(tool); err != nil {
				treesErr = errSkip(tool + " not installed (packages attr, acl): run make deps")
				return
			}
		}
		dir, err := os.MkdirTemp("", "cfs-golden-trees-")
		if err != nil {
			treesErr = err
			return
		}
		treesTmp = dir
		script, err := filepath.Abs(filepath.Join(goldenDir, "gen-trees.sh"))
		if err != nil {
			treesErr = err
			return
		}
		out, err := exec.Command("bash", script, dir).CombinedOutput()
		if err != nil {
			treesErr = &genError{err, string(out)}
			return
		}
		treesDir = dir
	})
	if s, ok := treesErr.(errSkip); ok {
		t.Skip("golden trees: " + string(s))
	}
	if treesErr != nil {
		t.Fatalf("generating golden trees: %v", treesErr)
	}
	return treesDir
}

type errSkip string

func (e errSkip) Error() string { return string(e) }

type genError struct {
	err error
	out string
}

func (e *genError) Error() string { return e.err.Error() + "\n" + e.out }

// goldenRow is one line of golden/digests.txt.
type goldenRow struct {
	tree, flags string
	digest      string
	sha256      string
	size        int64
	version     uint32
}

func goldenRows(t testing.TB) []goldenRow {
	t.Helper()
	f, err := os.Open(filepath.Join(goldenDir, "digests.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []goldenRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 6 || !strings.HasPrefix(fs[0], "t") || len(fs[2]) != 64 {
			continue
		}
		size, err1 := strconv.ParseInt(fs[4], 10, 64)
		version, err2 := strconv.ParseUint(fs[5], 10, 32)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad digests.txt line %q", sc.Text())
		}
		rows = append(rows, goldenRow{fs[0], fs[1], fs[2], fs[3], size, uint32(version)})
	}
	if len(rows) != 24 {
		t.Fatalf("digests.txt: %d rows, want 24 (t1..t8 x default, epoch, v1)", len(rows))
	}
	return rows
}

// buildImage scans a tree and writes its image.
func buildImage(t testing.TB, src string, scan *Options, write *composefs.WriteOptions) []byte {
	t.Helper()
	tree, err := Scan(context.Background(), src, scan)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := composefs.WriteImage(&b, tree, write); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestGoldenTrees scans every golden tree with every flag set of
// digests.txt and compares the image with mkcomposefs 1.0.8's: composefs
// digest, sha256, size and header version.
func TestGoldenTrees(t *testing.T) {
	dir := goldenTrees(t)
	for _, row := range goldenRows(t) {
		t.Run(row.tree+"/"+row.flags, func(t *testing.T) {
			var scan Options
			write := composefs.DefaultWriteOptions
			switch row.flags {
			case "default":
			case "epoch":
				scan.UseEpoch = true
			case "v1":
				write = composefs.WriteOptions{MinVersion: 1, MaxVersion: 1}
			default:
				t.Fatalf("unknown flag set %q", row.flags)
			}
			img := buildImage(t, filepath.Join(dir, row.tree), &scan, &write)
			sum := sha256.Sum256(img)
			if got := fsverity.Hex(fsverity.Sum(img)); got != row.digest {
				t.Errorf("composefs digest %s, want %s", got, row.digest)
			}
			if got := hex.EncodeToString(sum[:]); got != row.sha256 {
				t.Errorf("sha256 %s, want %s", got, row.sha256)
			}
			if int64(len(img)) != row.size {
				t.Errorf("size %d, want %d", len(img), row.size)
			}
			if v := uint32(img[12]); v != row.version {
				t.Errorf("header version %d, want %d", v, row.version)
			}
		})
	}
}

// TestGoldenFileDigests checks the per-file fs-verity digests listed in
// digests.txt (the object names of mkcomposefs --digest-store).
func TestGoldenFileDigests(t *testing.T) {
	dir := goldenTrees(t)
	f, err := os.Open(filepath.Join(goldenDir, "digests.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 || !strings.HasPrefix(fs[1], "size=") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, fs[0]))
		if err != nil {
			t.Fatal(err)
		}
		if got := fsverity.Hex(fsverity.Sum(data)); got != fs[2] {
			t.Errorf("%s: digest %s, want %s", fs[0], got, fs[2])
		}
		if strconv.Itoa(len(data)) != strings.TrimPrefix(fs[1], "size=") {
			t.Errorf("%s: size %d, want %s", fs[0], len(data), fs[1])
		}
		n++
	}
	if n != 8 {
		t.Fatalf("checked %d file digests, want 8", n)
	}
}

// TestGoldenScanMatchesDump checks that a scanned golden tree dumps to
// the golden dump made by composefs-info from the reference image.
func TestGoldenScanMatchesDump(t *testing.T) {
	dir := goldenTrees(t)
	for _, name := range []string{"t1-mixed", "t2-minimal", "t3-xattrs", "t4-dirs", "t5-special", "t6-ids-times", "t7-sizes"} {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(goldenDir, "dumps", name+".dump"))
			if err != nil {
				t.Fatal(err)
			}
			img := buildImage(t, filepath.Join(dir, name), nil, nil)
			tree, err := composefs.ReadImage(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := composefs.WriteDumpfile(&got, tree); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("dump differs from the golden dump")
			}
		})
	}
}
