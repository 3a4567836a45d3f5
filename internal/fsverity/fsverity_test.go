package fsverity

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// referenceDigest is a direct, non-streaming transcription of the fs-verity
// algorithm (whole levels at a time), used to cross-check the streaming code.
func referenceDigest(data []byte) [Size]byte {
	var root [Size]byte
	if len(data) > 0 {
		level := data
		for {
			var next []byte
			for off := 0; off < len(level); off += BlockSize {
				var block [BlockSize]byte
				copy(block[:], level[off:min(off+BlockSize, len(level))])
				h := sha256.Sum256(block[:])
				next = append(next, h[:]...)
			}
			if len(next) == Size {
				copy(root[:], next)
				break
			}
			level = next
		}
	}
	var desc [256]byte
	desc[0], desc[1], desc[2] = 1, 1, 12
	binary.LittleEndian.PutUint64(desc[8:], uint64(len(data)))
	copy(desc[16:], root[:])
	return sha256.Sum256(desc[:])
}

// The vectors of golden/digests.txt and FORMAT.md section 8.2, checked with
// fsverity-utils 1.5 (`fsverity digest`).
var vectors = []struct {
	name   string
	data   func() []byte
	digest string
}{
	{"empty", func() []byte { return nil }, "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"},
	{"hello", func() []byte { return []byte("hello\n") }, "9c76eecc7b76fcb46199cb27b90cf59a660e10575bb0412128905129d5b1c2aa"},
	{"4096a", func() []byte { return bytes.Repeat([]byte("a"), 4096) }, "a2a808ddaced77f0b6b3068f47b14b5a1fb3fc43674993ab11b8e7e6f2d089e2"},
	{"4097a", func() []byte { return bytes.Repeat([]byte("a"), 4097) }, "18b155c0b6e054f3f7d22488ed15340e74dc161ce2d123e13eb685c3ce565f70"},
	{"524289b", func() []byte { return bytes.Repeat([]byte("b"), 524289) }, "729cca2d983053af4604c587c5e85d3d9c06b16dea2b4762f3f844a855a640eb"},
	{"1MiB-nul", func() []byte { return make([]byte, 1<<20) }, "feb19a23e72cb1b8f935d668a09ecaad0bf7c5b9cdfa6dbba7c88a9998ed2b87"},
	{"composefs-10MB", func() []byte { return bytes.Repeat([]byte("composefs\n"), 1000000) }, "7825147ec467b0cc9289db9b0c024ecccebd274f798fcede64a5869921431c7b"},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			data := v.data()
			if got := Hex(Sum(data)); got != v.digest {
				t.Errorf("Sum = %s, want %s", got, v.digest)
			}
			if got := Hex(referenceDigest(data)); got != v.digest {
				t.Errorf("reference = %s, want %s", got, v.digest)
			}
			got, n, err := SumReader(bytes.NewReader(data))
			if err != nil || n != int64(len(data)) || Hex(got) != v.digest {
				t.Errorf("SumReader = %s, %d, %v; want %s, %d", Hex(got), n, err, v.digest, len(data))
			}
		})
	}
}

// TestStreaming writes random data in random pieces and compares with the
// reference at every size around the tree-shape boundaries.
func TestStreaming(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{1, 4095, 4096, 4097, 128 * 4096, 128*4096 + 1, 129 * 4096, 64 * 4096, 65*4096 - 7,
		128*128*4096 - 1, 128 * 128 * 4096, 128*128*4096 + 4096}
	for i := 0; i < 20; i++ {
		sizes = append(sizes, rng.IntN(3<<20))
	}
	for _, size := range sizes {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		// Sprinkle zero blocks to exercise the sparse-block shortcut.
		for off := 0; off+BlockSize <= size; off += 7 * BlockSize {
			clear(data[off : off+BlockSize])
		}
		want := referenceDigest(data)
		d := New()
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(600000))
			d.Write(rest[:n])
			rest = rest[n:]
			if rng.IntN(4) == 0 {
				d.Sum() // Sum must not disturb the state
			}
		}
		if got := d.Sum(); got != want {
			t.Fatalf("size %d: streaming %x, reference %x", size, got, want)
		}
		if d.Len() != int64(size) {
			t.Fatalf("Len = %d, want %d", d.Len(), size)
		}
		d.Reset()
		d.Write(data)
		if got := d.Sum(); got != want {
			t.Fatalf("size %d after Reset: %x, want %x", size, got, want)
		}
	}
}

// TestFsverityTool compares with fsverity-utils on a few files when the tool
// is installed (it is in the Makefile's DEB_PACKAGES).
func TestFsverityTool(t *testing.T) {
	tool, err := exec.LookPath("fsverity")
	if err != nil {
		t.Skip("fsverity (fsverity-utils) not installed: run make deps")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{0, 1, 4096, 70000, 600000} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tool, "digest", "--compact", p).Output()
		if err != nil {
			t.Fatalf("fsverity digest: %v", err)
		}
		want := strings.TrimPrefix(strings.TrimSpace(string(out)), "sha256:")
		if got := Hex(Sum(data)); got != want {
			t.Errorf("size %d: %s, fsverity tool says %s", size, got, want)
		}
	}
}

func FuzzDigest(f *testing.F) {
	f.Add([]byte("hello\n"), uint16(3))
	f.Add(bytes.Repeat([]byte{0}, 9000), uint16(4096))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		d := New()
		s := int(split) % (len(data) + 1)
		d.Write(data[:s])
		d.Write(data[s:])
		if got, want := d.Sum(), referenceDigest(data); got != want {
			t.Fatalf("streaming %x != reference %x", got, want)
		}
	})
}

func BenchmarkDigest(b *testing.B) {
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		Sum(data)
	}
}

func BenchmarkSHA256Reference(b *testing.B) {
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sha256.Sum256(data)
	}
}

func ExampleDigest() {
	d := New()
	d.Write([]byte("hello\n"))
	sum := d.Sum()
	os.Stdout.WriteString(hex.EncodeToString(sum[:]) + "\n")
	// Output: 9c76eecc7b76fcb46199cb27b90cf59a660e10575bb0412128905129d5b1c2aa
}
