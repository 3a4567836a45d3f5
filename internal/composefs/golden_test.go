package composefs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

// goldenRow is one line of golden/digests.txt: the reference outputs of
// mkcomposefs 1.0.8 for one tree and flag set.
type goldenRow struct {
	tree, flags string
	digest      string // composefs digest (fs-verity of the image)
	sha256      string
	size        int64
	version     uint32
}

// goldenRows parses golden/digests.txt.
func goldenRows(t testing.TB) map[string]goldenRow {
	t.Helper()
	f, err := os.Open(filepath.Join(goldenDir, "digests.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]goldenRow{}
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
		rows[fs[0]+" "+fs[1]] = goldenRow{fs[0], fs[1], fs[2], fs[3], size, uint32(version)}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 24 {
		t.Fatalf("digests.txt: only %d rows", len(rows))
	}
	return rows
}

// checkImage compares an image with a golden row.
func checkImage(t *testing.T, img []byte, want goldenRow) {
	t.Helper()
	sum := sha256.Sum256(img)
	if got := fsverity.Hex(fsverity.Sum(img)); got != want.digest {
		t.Errorf("composefs digest %s, want %s", got, want.digest)
	}
	if got := hex.EncodeToString(sum[:]); got != want.sha256 {
		t.Errorf("sha256 %s, want %s", got, want.sha256)
	}
	if int64(len(img)) != want.size {
		t.Errorf("size %d, want %d", len(img), want.size)
	}
	if len(img) >= 16 {
		if v := uint32(img[12]) | uint32(img[13])<<8; v != want.version {
			t.Errorf("header version %d, want %d", v, want.version)
		}
	}
}

func readGoldenDump(t *testing.T, name string) *Tree {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, "dumps", name+".dump"))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := ReadDumpfile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func writeImage(t testing.TB, tree *Tree, opts *WriteOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteImage(&b, tree, opts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// setEpoch sets every mtime to 0, like mkcomposefs --use-epoch.
func setEpoch(t *testing.T, tree *Tree) {
	t.Helper()
	err := tree.Walk(func(name string, ino *Inode, link bool) error {
		ino.Mtime = Timespec{}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var goldenDumps = []string{"t1-mixed", "t2-minimal", "t3-xattrs", "t4-dirs", "t5-special", "t6-ids-times", "t7-sizes"}

// TestGoldenDumps builds images from the golden dumps and compares them
// with the reference tool's digests for the default, v1 and epoch rows.
func TestGoldenDumps(t *testing.T) {
	rows := goldenRows(t)
	for _, name := range goldenDumps {
		t.Run(name, func(t *testing.T) {
			checkImage(t, writeImage(t, readGoldenDump(t, name), nil), rows[name+" default"])
			checkImage(t, writeImage(t, readGoldenDump(t, name), &WriteOptions{MinVersion: 1, MaxVersion: 1}), rows[name+" v1"])
			tree := readGoldenDump(t, name)
			setEpoch(t, tree)
			checkImage(t, writeImage(t, tree, nil), rows[name+" epoch"])
		})
	}
	t.Run("hardlinks", func(t *testing.T) {
		checkImage(t, writeImage(t, readGoldenDump(t, "hardlinks"), nil), goldenRow{
			digest:  "05f51ce6a3c673451dd7ad5af6bf9051ae1def2f369113668bd54bce20f8fb85",
			sha256:  "55c567c03132f6756578a864f8f2ebee5d57aaca7a7ea516e410b5021e5bb658",
			size:    20480,
			version: 0,
		})
	})
}

// TestGoldenDumpCreateDump checks dump -> create -> dump: the dump of the
// image built from a golden dump is the golden dump again, byte for byte.
func TestGoldenDumpCreateDump(t *testing.T) {
	for _, name := range goldenDumps {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(goldenDir, "dumps", name+".dump"))
			if err != nil {
				t.Fatal(err)
			}
			img := writeImage(t, readGoldenDump(t, name), nil)
			tree, err := ReadImage(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			got := dumpOf(t, tree)
			if got != string(want) {
				t.Errorf("dump of the image differs:\n%s", firstDiff(want, []byte(got)))
			}
			// And the image of the re-read tree is the same image.
			if img2 := writeImage(t, tree, nil); !bytes.Equal(img, img2) {
				t.Error("image -> tree -> image is not byte-identical")
			}
		})
	}
}
