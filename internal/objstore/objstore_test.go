package objstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/fsverity"
)

func TestPutOpen(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "objects"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello\n")},
		{"block", bytes.Repeat([]byte("a"), 4096)},
		{"two levels", bytes.Repeat([]byte("b"), 524289)},
		{"multi-chunk", bytes.Repeat([]byte("composefs\n"), 300000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, n, err := s.Put(bytes.NewReader(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(tc.data)) || d != fsverity.Sum(tc.data) {
				t.Fatalf("Put = %x, %d", d, n)
			}
			if ok, err := s.Has(d); !ok || err != nil {
				t.Fatalf("Has = %v, %v", ok, err)
			}
			f, err := s.Open(d)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(f)
			f.Close()
			if !bytes.Equal(got, tc.data) {
				t.Fatal("content differs")
			}
			fi, err := os.Stat(s.Path(d))
			if err != nil || fi.Mode().Perm() != 0o644 {
				t.Fatalf("object mode: %v %v", fi.Mode(), err)
			}
			if rel, _ := filepath.Rel(s.Root(), s.Path(d)); rel != Name(d) || len(rel) != 65 {
				t.Fatalf("object path %s", rel)
			}
			if back, err := ParseName("/" + Name(d)); err != nil || back != d {
				t.Fatalf("ParseName: %v", err)
			}
			// Storing the same content again keeps the first copy.
			ino1 := inode(t, s.Path(d))
			if d2, _, err := s.Put(bytes.NewReader(tc.data)); err != nil || d2 != d {
				t.Fatalf("second Put: %v", err)
			}
			if inode(t, s.Path(d)) != ino1 {
				t.Fatal("existing object was replaced")
			}
		})
	}
	if ok, err := s.Has([32]byte{1}); ok || err != nil {
		t.Errorf("Has(missing) = %v, %v", ok, err)
	}
	if _, err := s.Open([32]byte{1}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v", err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	noTemps(t, s.Root())
	if fi, err := fs.Stat(s.FS(), Name(fsverity.Sum([]byte("hello\n")))); err != nil || fi.Size() != 6 {
		t.Errorf("FS stat: %v", err)
	}
}

func TestParseNameErrors(t *testing.T) {
	for _, bad := range []string{"", "ab", "ab/cd", strings.Repeat("a", 65), "zz/" + strings.Repeat("0", 62), "00-" + strings.Repeat("0", 62)} {
		if _, err := ParseName(bad); err == nil {
			t.Errorf("ParseName(%q) accepted", bad)
		}
	}
}

func inode(t *testing.T, p string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func noTemps(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSparse checks that zero blocks become holes and content survives.
func TestSparse(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 8<<20+100)
	copy(data[5<<20:], "data in the middle")
	d, n, err := s.Put(bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatal(err)
	}
	got, err := os.ReadFile(s.Path(d))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatal("sparse content differs")
	}
	var st unix.Stat_t
	if err := unix.Stat(s.Path(d), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 >= int64(len(data)) {
		t.Errorf("object not sparse: %d bytes allocated for %d", st.Blocks*512, len(data))
	}
}

// errReader fails after some data.
type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("boom")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestPutReadError(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range []int{10000, 3 << 20} { // within the first buffer, and while streaming
		if _, _, err := s.Put(&errReader{n: n}); err == nil || !strings.Contains(err.Error(), "boom") {
			t.Fatalf("Put error = %v", err)
		}
	}
	noTemps(t, s.Root())
	ents, _ := os.ReadDir(s.Root())
	if len(ents) != 0 {
		t.Errorf("store not empty after a failed Put: %v", ents)
	}
}

// contents returns n deterministic blobs, some shared between writers.
func contents(n int) [][]byte {
	rng := rand.New(rand.NewPCG(7, 8))
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, "object %d\n%s", i%(n/2), bytes.Repeat([]byte{byte(i % (n / 2))}, rng.IntN(20000)))
		if i >= n/2 {
			out[i] = out[i-n/2]
		}
	}
	return out
}

// TestConcurrent stores overlapping content from many goroutines, each
// with its own Store (as separate processes would have).
func TestConcurrent(t *testing.T) {
	root := t.TempDir()
	blobs := contents(200)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(root)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			for _, b := range blobs {
				d, _, err := s.Put(bytes.NewReader(b))
				if err != nil {
					errs <- err
					return
				}
				if d != fsverity.Sum(b) {
					errs <- fmt.Errorf("digest mismatch")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkStore(t, root, blobs)
}

// checkStore verifies that the store holds exactly the distinct blobs.
func checkStore(t *testing.T, root string, blobs [][]byte) {
	t.Helper()
	want := map[string][]byte{}
	for _, b := range blobs {
		want[Name(fsverity.Sum(b))] = b
	}
	got := 0
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b, ok := want[rel]
		if !ok {
			return fmt.Errorf("unexpected file %s", rel)
		}
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(data, b) {
			return fmt.Errorf("object %s: wrong content (%v)", rel, err)
		}
		got++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != len(want) {
		t.Fatalf("%d objects, want %d", got, len(want))
	}
}

// TestConcurrentProcesses runs writers in separate processes (this test
// binary re-executed) against one store.
func TestConcurrentProcesses(t *testing.T) {
	if root := os.Getenv("OBJSTORE_TEST_WRITER"); root != "" {
		s, err := Open(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range contents(200) {
			if _, _, err := s.Put(bytes.NewReader(b)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
		return
	}
	root := t.TempDir()
	var cmds []*exec.Cmd
	for i := 0; i < 4; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestConcurrentProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), "OBJSTORE_TEST_WRITER="+root)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer process: %v", err)
		}
	}
	checkStore(t, root, contents(200))
}

func BenchmarkPut(b *testing.B) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 10000)
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		i++
		copy(data, fmt.Sprint(i))
		if _, _, err := s.Put(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPutFixedTimes checks that objects carry mtime 0, so trees built from
// the store by hard links are reproducible.
func TestPutFixedTimes(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, size := range []int{100, 3 << 20} { // buffered and streamed paths
		d, _, err := s.Put(bytes.NewReader(bytes.Repeat([]byte{'t'}, size)))
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(s.Path(d))
		if err != nil {
			t.Fatal(err)
		}
		if !info.ModTime().Equal(time.Unix(0, 0)) {
			t.Errorf("size %d: mtime %v, want the epoch", size, info.ModTime())
		}
	}
}
