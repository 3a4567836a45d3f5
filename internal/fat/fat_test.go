package fat

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

var epoch = time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)

type testFile struct {
	name string
	data []byte
	dir  bool
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// sampleFiles covers 8.3 names, long names, numeric-tail collisions,
// non-ASCII names, empty files, explicit and implicit directories, and a
// multi-cluster file.
func sampleFiles() []testFile {
	files := []testFile{
		{name: "EFI/BOOT/BOOTX64.EFI", data: pattern(300000, 1)},
		{name: "EFI/BOOT/BOOTAA64.EFI", data: pattern(1000, 2)},
		{name: "EFI/Linux/fedora-41.efi", data: pattern(70000, 3)},
		{name: "EFI/Linux/fedora-41-rescue.efi", data: pattern(513, 4)},
		{name: "EFI/Linux/fedora-42.efi", data: pattern(512, 5)},
		{name: "loader/entries", dir: true},
		{name: "empty", data: nil},
		{name: "Über größe ünicode.txt", data: []byte("unicode\n")},
		{name: "a.b.c.d", data: []byte("dots\n")},
	}
	// Enough root entries to push the root directory past one cluster.
	for i := range 20 {
		files = append(files, testFile{name: fmt.Sprintf("root-file-%02d.txt", i), data: []byte(fmt.Sprintf("file %d\n", i))})
	}
	return files
}

func writeVolume(t testing.TB, path string, size int64, files []testFile) error {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(f, size, Options{Label: "ESP", VolumeID: 0x1234abcd, Time: epoch, HiddenSectors: 2048})
	if err != nil {
		return err
	}
	for _, tf := range files {
		if err := w.WriteHeader(&Header{Name: tf.name, Size: int64(len(tf.data)), Dir: tf.dir}); err != nil {
			return err
		}
		if _, err := w.Write(tf.data); err != nil {
			return err
		}
	}
	return w.Close()
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "esp.img")
	size := int64(40 << 20)
	files := sampleFiles()
	if err := writeVolume(t, path, size, files); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := NewReader(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if r.Label() != "ESP" || r.VolumeID() != 0x1234abcd {
		t.Errorf("label %q id %08x", r.Label(), r.VolumeID())
	}
	var expect []string
	for _, tf := range files {
		if tf.dir {
			continue
		}
		expect = append(expect, tf.name)
		got, err := fs.ReadFile(r, tf.name)
		if err != nil {
			t.Errorf("ReadFile(%s): %v", tf.name, err)
			continue
		}
		if !bytes.Equal(got, tf.data) {
			t.Errorf("%s: content differs (%d vs %d bytes)", tf.name, len(got), len(tf.data))
		}
		fi, err := fs.Stat(r, tf.name)
		if err != nil || !fi.ModTime().Equal(epoch) {
			t.Errorf("%s: stat %v, mtime %v", tf.name, err, fi.ModTime())
		}
	}
	if err := fstest.TestFS(r, expect...); err != nil {
		t.Error(err)
	}
	// Case-insensitive lookup, as on FAT.
	if _, err := fs.ReadFile(r, "efi/boot/bootx64.efi"); err != nil {
		t.Errorf("case-insensitive open: %v", err)
	}
}

func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	var sums [2][32]byte
	for i := range sums {
		p := filepath.Join(dir, fmt.Sprint(i))
		if err := writeVolume(t, p, 40<<20, sampleFiles()); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = sha256.Sum256(b)
	}
	if sums[0] != sums[1] {
		t.Fatal("two writes of the same content differ")
	}
}

// TestDosfstools checks the volume with fsck.vfat and reads it back with
// mtools, the independent implementations the disk images are judged by.
func TestDosfstools(t *testing.T) {
	for _, tool := range []string{"fsck.vfat", "mdir", "mtype"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (dosfstools, mtools): cannot cross-check the volume", tool)
		}
	}
	for _, size := range []int64{34 << 20, 300 << 20} {
		t.Run(fmt.Sprint(size>>20, "MiB"), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "esp.img")
			files := sampleFiles()
			if err := writeVolume(t, path, size, files); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("fsck.vfat", "-n", "-v", path).CombinedOutput()
			if err != nil {
				t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
			}
			for _, bad := range []string{"Invalid", "uninitialized", "differ", "Free cluster summary wrong", "Dirty bit"} {
				if strings.Contains(string(out), bad) {
					t.Errorf("fsck.vfat output mentions %q:\n%s", bad, out)
				}
			}
			out, err = exec.Command("mdir", "-i", path, "-/", "::").CombinedOutput()
			if err != nil {
				t.Fatalf("mdir: %v\n%s", err, out)
			}
			for _, want := range []string{"fedora-41-rescue.efi", "Über größe ünicode.txt", "BOOTX64  EFI", "Volume in drive : is ESP"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("mdir lacks %q:\n%s", want, out)
				}
			}
			for _, tf := range files {
				if tf.dir {
					continue
				}
				got, err := exec.Command("mtype", "-i", path, "::/"+tf.name).Output()
				if err != nil {
					t.Errorf("mtype %s: %v", tf.name, err)
					continue
				}
				if !bytes.Equal(got, tf.data) {
					t.Errorf("mtype %s: content differs (%d vs %d bytes)", tf.name, len(got), len(tf.data))
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name  string
		size  int64
		files []testFile
		check func(error) bool
	}{
		{"too small for FAT32", 16 << 20, nil, func(err error) bool { return errors.Is(err, ErrTooSmall) }},
		{"case collision", 40 << 20, []testFile{{name: "EFI/BOOT/A.EFI"}, {name: "efi/boot/a.efi"}}, func(err error) bool { return errors.Is(err, ErrName) }},
		{"file used as directory", 40 << 20, []testFile{{name: "EFI"}, {name: "EFI/BOOT/A.EFI"}}, func(err error) bool { return errors.Is(err, ErrName) }},
		{"invalid character", 40 << 20, []testFile{{name: "EFI/a:b"}}, func(err error) bool { return errors.Is(err, ErrName) }},
		{"trailing dot", 40 << 20, []testFile{{name: "EFI/ab."}}, func(err error) bool { return errors.Is(err, ErrName) }},
		{"dot-dot", 40 << 20, []testFile{{name: "EFI/../x"}}, func(err error) bool { return errors.Is(err, ErrName) }},
		{"does not fit", 40 << 20, []testFile{{name: "big1", data: make([]byte, 20<<20)}, {name: "big2", data: make([]byte, 20<<20)}}, func(err error) bool {
			var se *SpaceError
			return errors.As(err, &se) && se.Needed > se.Available && se.Needed >= 40<<20
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := writeVolume(t, filepath.Join(t.TempDir(), "v"), tt.size, tt.files)
			if err == nil || !tt.check(err) {
				t.Fatalf("got error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "fat: ") && !strings.Contains(err.Error(), ": fat: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestWriteLengthChecks(t *testing.T) {
	var buf memVol = make([]byte, 40<<20)
	w, err := NewWriter(buf, int64(len(buf)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(&Header{Name: "a", Size: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("abcd")); !errors.Is(err, ErrWriteTooLong) {
		t.Fatalf("overlong write: %v", err)
	}
	// The error is sticky.
	if err := w.WriteHeader(&Header{Name: "b"}); !errors.Is(err, ErrWriteTooLong) {
		t.Fatalf("after failure: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrWriteTooLong) {
		t.Fatalf("Close after failure: %v", err)
	}

	w, _ = NewWriter(buf, int64(len(buf)), Options{})
	_ = w.WriteHeader(&Header{Name: "a", Size: 3})
	_, _ = w.Write([]byte("ab"))
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "1 of 3 bytes missing") {
		t.Fatalf("short file: %v", err)
	}

	w, _ = NewWriter(buf, int64(len(buf)), Options{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteHeader(&Header{Name: "x"}); !errors.Is(err, ErrWriteAfterClose) {
		t.Fatalf("after close: %v", err)
	}
}

func TestShortNames(t *testing.T) {
	tests := []struct {
		name  string
		exact bool
		want  string
	}{
		{"BOOTX64.EFI", true, "BOOTX64 EFI"},
		{"EFI", true, "EFI        "},
		{"bootx64.efi", false, "BOOTX6~1EFI"},
		{"fedora-41.efi", false, "FEDORA~1EFI"},
		{"a.b.c.d", false, "ABC~1   D  "},
		{".hidden", false, "HIDDEN~1   "},
		{"Über.txt", false, "_BER~1  TXT"},
	}
	for _, tt := range tests {
		s, ok := exactShort(tt.name)
		if !ok {
			b, e := shortBasis(tt.name)
			s = numericTail(b, e, 1)
		}
		if ok != tt.exact || string(s[:]) != tt.want {
			t.Errorf("%s: got %q exact=%v, want %q exact=%v", tt.name, s, ok, tt.want, tt.exact)
		}
	}
}

// memVol is an in-memory volume.
type memVol []byte

func (m memVol) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, io.ErrShortWrite
	}
	return copy(m[off:], p), nil
}

func (m memVol) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func FuzzReader(f *testing.F) {
	var vol memVol = make([]byte, 34<<20)
	w, err := NewWriter(vol, int64(len(vol)), Options{Label: "FUZZ"})
	if err != nil {
		f.Fatal(err)
	}
	for _, tf := range sampleFiles()[:6] {
		_ = w.WriteHeader(&Header{Name: tf.name, Size: int64(len(tf.data)), Dir: tf.dir})
		_, _ = w.Write(tf.data)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	// The fuzzer mutates the boot sector, the start of the FAT and the root
	// directory; the rest of the volume stays as written.
	g, _ := newGeometry(int64(len(vol)))
	rootOff := g.clusterOffset(rootCluster)
	f.Add(append(append([]byte{}, vol[:4096]...), vol[rootOff:rootOff+512]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 4096+512 {
			return
		}
		img := make(memVol, len(vol))
		copy(img, vol)
		copy(img, b[:4096])
		copy(img[rootOff:], b[4096:4096+512])
		r, err := NewReader(img, int64(len(img)))
		if err != nil {
			return
		}
		_ = fs.WalkDir(r, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if fl, err := r.Open(p); err == nil {
				_, _ = io.Copy(io.Discard, fl)
				fl.Close()
			}
			return nil
		})
	})
}

// TestCheckSize pins the smallest volume NewWriter accepts, which the
// manifest checks use for ESP sizes (issue 13 item 24).
func TestCheckSize(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		size int64
		ok   bool
	}{
		{0, false},
		{1 * mib, false},
		{32 * mib, false},
		{33 * mib, true},
		{64 * mib, true},
		{2 << 40, false}, // over the FAT32 limit
	}
	for _, tc := range tests {
		err := CheckSize(tc.size)
		if (err == nil) != tc.ok {
			t.Errorf("CheckSize(%d) = %v, want ok %v", tc.size, err, tc.ok)
		}
		if tc.ok {
			if _, err := NewWriter(discardAt{}, tc.size, Options{}); err != nil {
				t.Errorf("NewWriter(%d): %v", tc.size, err)
			}
		} else if tc.size < 2<<40 && !errors.Is(err, ErrTooSmall) {
			t.Errorf("CheckSize(%d) = %v, want ErrTooSmall", tc.size, err)
		}
	}
}

type discardAt struct{}

func (discardAt) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
