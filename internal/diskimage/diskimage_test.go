package diskimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/fat"
	"github.com/cfs-compose/cfs-compose/internal/gpt"
)

var testEpoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// requireTools skips when a host tool the check depends on is missing.
func requireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (make deps installs e2fsprogs, dosfstools, mtools, gdisk, qemu-utils): cannot check the image", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot create device nodes and owned files for the root tree")
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var (
	ukiX86 = bytes.Repeat([]byte("MZ-x86-uki-"), 150000) // 1.6 MB
	ukiArm = bytes.Repeat([]byte("MZ-arm-uki-"), 1000)
)

func espFiles() []File {
	return []File{
		BytesFile("EFI/BOOT/BOOTX64.EFI", ukiX86),
		BytesFile("EFI/BOOT/BOOTAA64.EFI", ukiArm),
		BytesFile("EFI/Linux/fedora-testbed.efi", ukiX86),
	}
}

// testSpec is a three-partition disk: ESP, verity root from dir, and an
// empty data partition taking the rest.
func testSpec(seed, rootDir string) *Spec {
	return &Spec{
		Size:  256 << 20,
		Arch:  ArchX86_64,
		Seed:  seed,
		Epoch: testEpoch,
		Partitions: []Partition{
			{Name: "esp", Type: TypeESP, Size: 64 << 20, FS: FSVfat, Label: "esp", Files: espFiles()},
			{Name: "root", Type: TypeRoot, Size: 128 << 20, FS: FSExt4, Label: "root", Verity: true, Dir: rootDir},
			{Name: "var", Type: TypeLinux, Size: 0, FS: FSExt4, Label: "var"},
		},
	}
}

func TestWriteVerifiesWithHostTools(t *testing.T) {
	requireTools(t, "mkfs.ext4", "sgdisk", "fsck.vfat", "mtype", "mdir", "e2fsck", "debugfs", "dumpe2fs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	materialise(t, tree, rootTree(), false)
	img := filepath.Join(dir, "disk.raw")
	spec := testSpec("compose-1/testbed/x86_64", tree)
	spec.Partitions[1].Immutable = []string{"usr/lib", "usr/bin/ping"}
	l, err := Write(context.Background(), spec, img)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("gpt", func(t *testing.T) {
		if out := run(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found") || strings.Contains(out, "Caution") {
			t.Errorf("sgdisk -v (partitions must start and end on 1 MiB boundaries):\n%s", out)
		}
		for _, p := range l.Partitions {
			if p.Offset%(1<<20) != 0 || p.Size%(1<<20) != 0 {
				t.Errorf("partition %s at %d, %d bytes: not on 1 MiB boundaries", p.Name, p.Offset, p.Size)
			}
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tab, err := gpt.Read(f, l.Size, 512)
		if err != nil {
			t.Fatal(err)
		}
		want := []struct{ typ, label string }{
			{"c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "esp"},
			{"4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "root"},
			{"0fc63daf-8483-4772-8e79-3d69d8477de4", "var"},
		}
		if len(tab.Partitions) != len(want) || tab.DiskGUID.String() != l.DiskGUID {
			t.Fatalf("table %+v, layout %+v", tab, l)
		}
		for i, w := range want {
			p, pl := tab.Partitions[i], l.Partitions[i]
			if p.Type.String() != w.typ || p.Name != w.label || p.GUID.String() != pl.GUID ||
				int64(p.FirstLBA)*512 != pl.Offset || p.Size(512) != pl.Size || pl.Offset%(1<<20) != 0 {
				t.Errorf("partition %d: table %+v, layout %+v", i+1, p, pl)
			}
		}
		if l.Partitions[2].Size < 60<<20 {
			t.Errorf("rest partition got only %d bytes", l.Partitions[2].Size)
		}
	})

	esp := l.Partitions[0]
	t.Run("esp", func(t *testing.T) {
		// fsck.vfat has no offset option: check an extracted copy.
		part := extract(t, img, esp.Offset, esp.Size)
		out := run(t, "fsck.vfat", "-n", "-v", part)
		for _, bad := range []string{"Invalid", "uninitialized", "differ", "wrong"} {
			if strings.Contains(out, bad) {
				t.Errorf("fsck.vfat -n mentions %q:\n%s", bad, out)
			}
		}
		at := fmt.Sprintf("%s@@%d", img, esp.Offset)
		if out := run(t, "mdir", "-i", at, "::"); !strings.Contains(out, "Volume in drive : is ESP") ||
			!strings.Contains(out, "Volume Serial Number is "+esp.FSID) {
			t.Errorf("mdir:\n%s", out)
		}
		for _, f := range []struct {
			path string
			data []byte
		}{{"EFI/BOOT/BOOTX64.EFI", ukiX86}, {"EFI/BOOT/BOOTAA64.EFI", ukiArm}, {"EFI/Linux/fedora-testbed.efi", ukiX86}} {
			got, err := exec.Command("mtype", "-i", at, "::/"+f.path).Output()
			if err != nil || !bytes.Equal(got, f.data) {
				t.Errorf("mtype %s: err %v, %d bytes (want %d, identical)", f.path, err, len(got), len(f.data))
			}
		}
		// Our own reader agrees.
		fr, err := fat.NewReader(io.NewSectionReader(mustOpen(t, img), esp.Offset, esp.Size), esp.Size)
		if err != nil {
			t.Fatal(err)
		}
		if fr.Label() != "ESP" {
			t.Errorf("FAT label %q", fr.Label())
		}
	})

	root := l.Partitions[1]
	dev := fmt.Sprintf("%s?offset=%d", img, root.Offset)
	t.Run("root", func(t *testing.T) {
		run(t, "e2fsck", "-fn", dev)
		hdr := run(t, "dumpe2fs", "-h", dev)
		for _, want := range []string{"verity", "metadata_csum", "Filesystem UUID:          " + root.FSID,
			"Filesystem volume name:   root", "Inode size:	          256", "Block size:               4096"} {
			if !strings.Contains(hdr, want) {
				t.Errorf("dumpe2fs -h lacks %q", want)
			}
		}
		debugfs := func(req string) string { return run(t, "debugfs", "-R", req, dev) }
		ping, ping6 := debugfs("stat /usr/bin/ping"), debugfs("stat /usr/bin/ping6")
		inode := regexp.MustCompile(`Inode: (\d+)`)
		if m, m6 := inode.FindStringSubmatch(ping), inode.FindStringSubmatch(ping6); m == nil || m6 == nil || m[1] != m6[1] {
			t.Errorf("hardlink: ping and ping6 are different inodes:\n%s\n%s", ping, ping6)
		}
		if !strings.Contains(ping, "Links: 2") || !strings.Contains(ping, "Mode:  0755") {
			t.Errorf("ping:\n%s", ping)
		}
		xattrs := debugfs("ea_list /usr/bin/ping")
		if !strings.Contains(xattrs, "user.x (5) = \"hello\"") || !strings.Contains(xattrs, "security.capability (20)") {
			t.Errorf("ea_list /usr/bin/ping:\n%s", xattrs)
		}
		many := debugfs("ea_list /usr/lib/many-xattrs")
		for _, want := range []string{"user.a (40)", "user.bb (100)", `user.c (1) = "c"`, "trusted.zz (30)", `security.label (26) = "system_u:object_r:bin_t:s0"`} {
			if !strings.Contains(many, want) {
				t.Errorf("ea_list /usr/lib/many-xattrs lacks %q:\n%s", want, many)
			}
		}
		if s := debugfs("stat /usr/lib/many-xattrs"); strings.Contains(s, "File ACL: 0\n") {
			t.Errorf("many-xattrs should use an xattr block:\n%s", s)
		}
		if big := debugfs("ea_list /usr/lib/big-xattr"); !strings.Contains(big, "user.big (500)") {
			t.Errorf("ea_list /usr/lib/big-xattr:\n%s", big)
		}
		// Immutable: the flag on the listed inodes only (0x80000 is
		// EXT4_EXTENTS_FL, 0x10 EXT4_IMMUTABLE_FL), checksums still right
		// (e2fsck above).
		for p, want := range map[string]string{"/usr/lib": "Flags: 0x80010", "/usr/bin/ping": "Flags: 0x80010", "/usr/bin": "Flags: 0x80000\n", "/usr": "Flags: 0x80000\n"} {
			if s := debugfs("stat " + p); !strings.Contains(s, want) {
				t.Errorf("%s: want %q:\n%s", p, want, s)
			}
		}
		if got := debugfs("cat /usr/bin/ping"); !strings.Contains(got, strings.Repeat("ping!", 3000)) {
			t.Error("ping content differs")
		}
		null := debugfs("stat /dev/null")
		if !strings.Contains(null, "Type: character special") || !strings.Contains(null, "Device major/minor number: 01:03") {
			t.Errorf("/dev/null:\n%s", null)
		}
		if fifo := debugfs("stat /dev/initctl"); !strings.Contains(fifo, "Type: FIFO") {
			t.Errorf("/dev/initctl:\n%s", fifo)
		}
		sh := debugfs("stat /usr/bin/sh")
		if !strings.Contains(sh, "Type: symlink") || !strings.Contains(sh, `Fast link dest: "bash"`) {
			t.Errorf("/usr/bin/sh:\n%s", sh)
		}
		if long := debugfs("stat /usr/lib/long-symlink"); !strings.Contains(long, "Type: symlink") {
			t.Errorf("long symlink:\n%s", long)
		}
		owned := debugfs("stat /usr/lib/owned")
		if !strings.Contains(owned, "User:  1000   Group:   100") || !strings.Contains(owned, "Mode:  0640") {
			t.Errorf("/usr/lib/owned:\n%s", owned)
		}
		if s := debugfs("stat /usr/lib/setuid"); !strings.Contains(s, "Mode:  04755") {
			t.Errorf("/usr/lib/setuid:\n%s", s)
		}
		// Times: mtime from the tree, atime/ctime/crtime the epoch.
		wantM := fmt.Sprintf("mtime: 0x%08x:00000000", treeMtime.Unix())
		wantE := fmt.Sprintf("0x%08x:00000000", testEpoch.Unix())
		for _, p := range []string{"/usr/bin/ping", "/usr/bin", "/dev/null", "/usr/bin/sh"} {
			s := debugfs("stat " + p)
			if !strings.Contains(s, wantM) || !strings.Contains(s, "ctime: "+wantE) || !strings.Contains(s, "atime: "+wantE) ||
				!strings.Contains(s, "crtime: "+wantE) {
				t.Errorf("%s times:\n%s", p, s)
			}
		}
	})

	t.Run("var", func(t *testing.T) {
		v := l.Partitions[2]
		d := fmt.Sprintf("%s?offset=%d", img, v.Offset)
		run(t, "e2fsck", "-fn", d)
		if hdr := run(t, "dumpe2fs", "-h", d); strings.Contains(hdr, "verity") ||
			!strings.Contains(hdr, fmt.Sprintf("Block count:              %d", v.Size/4096)) {
			t.Errorf("var partition header:\n%s", hdr)
		}
	})

	t.Run("sparse", func(t *testing.T) {
		fi, err := os.Stat(img)
		if err != nil {
			t.Fatal(err)
		}
		allocated := fi.Sys().(*syscall.Stat_t).Blocks * 512
		if fi.Size() != 256<<20 || allocated > 24<<20 {
			t.Errorf("image size %d, %d bytes allocated (want sparse, under 24 MiB)", fi.Size(), allocated)
		}
	})

	t.Run("no temporary files", func(t *testing.T) {
		assertOnly(t, dir, "disk.raw", "tree")
	})
}

func TestReproducible(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	treeA, treeB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	materialise(t, treeA, rootTree(), false)
	time.Sleep(1100 * time.Millisecond) // different ctimes and atimes for the second tree
	materialise(t, treeB, rootTree(), true)
	sum := func(seed, tree, name string) [32]byte {
		p := filepath.Join(dir, name)
		if _, err := Write(context.Background(), testSpec(seed, tree), p); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	a := sum("seed-1", treeA, "a.raw")
	b := sum("seed-1", treeB, "b.raw")
	if a != b {
		t.Errorf("same spec, two materialisations of the same tree: images differ (%x vs %x)", a, b)
	}
	if again := sum("seed-1", treeA, "a2.raw"); again != a {
		t.Errorf("same spec written twice: images differ")
	}
	if c := sum("seed-2", treeA, "c.raw"); c == a {
		t.Errorf("different seeds gave identical images")
	}
}

func TestLayoutDerivedIDs(t *testing.T) {
	l1, err := testSpec("s", "").Layout()
	if err != nil {
		t.Fatal(err)
	}
	l2, _ := testSpec("s", "").Layout()
	l3, _ := testSpec("t", "").Layout()
	if fmt.Sprint(l1) != fmt.Sprint(l2) {
		t.Error("Layout is not deterministic")
	}
	if l1.DiskGUID == l3.DiskGUID || l1.Partitions[1].GUID == l3.Partitions[1].GUID {
		t.Error("different seeds give the same GUIDs")
	}
	seen := map[string]bool{}
	for _, p := range l1.Partitions {
		for _, id := range []string{p.GUID, p.FSID} {
			if seen[id] {
				t.Errorf("identifier %s used twice", id)
			}
			seen[id] = true
		}
		if _, err := gpt.ParseGUID(p.GUID); err != nil || p.GUID[14] != '4' {
			t.Errorf("partition GUID %s is not a v4-shaped UUID", p.GUID)
		}
	}
	arm := testSpec("s", "")
	arm.Arch = ArchAarch64
	la, _ := arm.Layout()
	if la.Partitions[1].TypeGUID != "b921b045-1df0-41c3-af44-4c6f280d3fae" {
		t.Errorf("aarch64 root type %s", la.Partitions[1].TypeGUID)
	}
}

func TestSpecErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *Spec)
		substr string
	}{
		{"unknown arch", func(s *Spec) { s.Arch = "riscv64" }, `arch "riscv64"`},
		{"unaligned disk", func(s *Spec) { s.Size += 512 }, "multiple of 1 MiB"},
		{"two rest partitions", func(s *Spec) { s.Partitions[0].Size = 0 }, "only one partition may take the rest"},
		{"esp as ext4", func(s *Spec) { s.Partitions[0].FS = FSExt4; s.Partitions[0].Files = nil }, "type esp needs fs"},
		{"root as vfat", func(s *Spec) { s.Partitions[1].FS = FSVfat; s.Partitions[1].Dir = "" }, "type root needs fs"},
		{"verity on vfat", func(s *Spec) { s.Partitions[0].Verity = true }, "verity needs ext4"},
		{"unknown type", func(s *Spec) { s.Partitions[2].Type = "swap" }, `type "swap"`},
		{"unknown fs", func(s *Spec) { s.Partitions[2].FS = "xfs" }, `fs "xfs"`},
		{"unaligned size", func(s *Spec) { s.Partitions[1].Size = 100 }, "multiple of 4096"},
		{"duplicate name", func(s *Spec) { s.Partitions[2].Name = "root"; s.Partitions[2].Label = "x" }, "duplicate name"},
		{"duplicate label", func(s *Spec) { s.Partitions[2].Label = "root" }, `label "root" is also used`},
		{"long ext4 label", func(s *Spec) { s.Partitions[2].Label = strings.Repeat("v", 17) }, "longer than 16 bytes"},
		{"long FAT label", func(s *Spec) { s.Partitions[0].Label = "EFI-SYSTEM-P" }, "longer than 11"},
		{"files on ext4", func(s *Spec) { s.Partitions[1].Files = espFiles() }, "takes Dir, not Files"},
		{"partitions exceed disk", func(s *Spec) { s.Partitions[1].Size = 512 << 20 }, `partitions need`},
		{"no room for the rest", func(s *Spec) { s.Partitions[1].Size = 190<<20 + 512<<10 }, `gets no space`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec("s", "")
			tt.mutate(s)
			_, err := s.Layout()
			if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tt.substr) {
				t.Fatalf("Layout error = %v, want ErrSpec containing %q", err, tt.substr)
			}
		})
	}
}

// TestNoSpace checks that content too large for its partition fails with
// the numbers, and leaves neither the image nor a temporary file.
func TestNoSpace(t *testing.T) {
	requireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	materialise(t, small, rootTree(), false)
	big := filepath.Join(dir, "big")
	if err := os.MkdirAll(big, 0o755); err != nil {
		t.Fatal(err)
	}
	// Random data so no block is all zeros (mkfs.ext4 skips those).
	data := make([]byte, 27<<20)
	for i := range data {
		data[i] = byte(i*2654435761>>13) | 1
	}
	if err := os.WriteFile(filepath.Join(big, "blob"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(s *Spec)
		want   []string
	}{
		{"esp content", func(s *Spec) {
			s.Partitions[0].Files = append(s.Partitions[0].Files, File{Path: "big.bin", Size: int64(len(data)) * 3, Content: io.MultiReader(bytes.NewReader(data), bytes.NewReader(data), bytes.NewReader(data))})
		}, []string{`partition "esp" (vfat, 67108864 bytes)`, "need 88248320 bytes", "has 66043904 available"}},
		{"root tree larger than the partition", func(s *Spec) {
			s.Partitions[1].Size = 16 << 20
		}, []string{`partition "root" (ext4, 16777216 bytes)`, "needs at least 28", "the partition has 16777216"}},
		{"root tree larger than the free space", func(s *Spec) {
			s.Partitions[1].Size = 30 << 20
		}, []string{`partition "root" (ext4, 31457280 bytes)`, "needs more than the file system holds", "Could not allocate block"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out")
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(out)
			old := filepath.Join(out, "disk.raw")
			if err := os.WriteFile(old, []byte("previous image"), 0o644); err != nil {
				t.Fatal(err)
			}
			s := testSpec("s", small)
			if tt.name != "esp content" {
				s.Partitions[1].Dir = big
			}
			tt.mutate(s)
			_, err := Write(context.Background(), s, old)
			if !errors.Is(err, ErrNoSpace) {
				t.Fatalf("Write error = %v, want ErrNoSpace", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if b, _ := os.ReadFile(old); string(b) != "previous image" {
				t.Error("the existing image was modified")
			}
			assertOnly(t, out, "disk.raw")
		})
	}
}

// TestErrorLeavesNothing covers a failure in the middle of writing: a
// short ESP file after the partition table is written.
func TestErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := testSpec("s", "")
	s.Partitions[0].Files = []File{{Path: "EFI/BOOT/BOOTX64.EFI", Size: 100, Content: strings.NewReader("short")}}
	s.Partitions = s.Partitions[:1]
	s.Partitions[0].Size = 0
	_, err := Write(context.Background(), s, filepath.Join(dir, "disk.raw"))
	if err == nil || !strings.Contains(err.Error(), "content has 5 bytes, File.Size says 100") {
		t.Fatalf("Write error = %v", err)
	}
	assertOnly(t, dir)
}

func TestQcow2(t *testing.T) {
	requireTools(t, "mkfs.ext4", "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	if _, err := Write(context.Background(), testSpec("s", ""), raw); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q1, q2 := filepath.Join(dir, "1.qcow2"), filepath.Join(dir, "2.qcow2")
	for _, q := range []string{q1, q2} {
		if err := ConvertQcow2(ctx, raw, q); err != nil {
			t.Fatal(err)
		}
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal([]byte(run(t, "qemu-img", "info", "--output=json", q1)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.VirtualSize != 256<<20 {
		t.Errorf("qemu-img info: %+v", info)
	}
	if out := run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, q1); !strings.Contains(out, "Images are identical") {
		t.Errorf("qemu-img compare: %s", out)
	}
	b1, _ := os.ReadFile(q1)
	b2, _ := os.ReadFile(q2)
	if !bytes.Equal(b1, b2) {
		t.Error("two conversions of the same raw image differ")
	}
	// A failing conversion leaves nothing.
	if err := ConvertQcow2(ctx, filepath.Join(dir, "missing.raw"), filepath.Join(dir, "3.qcow2")); err == nil {
		t.Fatal("converting a missing file succeeded")
	}
	assertOnly(t, dir, "1.qcow2", "2.qcow2", "disk.raw")
}

func TestNormalizeExt4RejectsNonExt4(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "zero"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := normalizeExt4(f, 0, 0, nil); err == nil || !strings.Contains(err.Error(), "no ext4 superblock") {
		t.Fatalf("got %v", err)
	}
}

func TestSparseWriter(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	w := &sparseWriter{f: f}
	buf := make([]byte, 64<<10)
	copy(buf[5000:], "data") // second chunk (offset 1000+5000 lies in chunk 1)
	buf[len(buf)-1] = 7
	if n, err := w.WriteAt(buf, 1000); err != nil || n != len(buf) {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	got := make([]byte, len(buf))
	if _, err := f.ReadAt(got, 1000); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, buf) {
		t.Error("read back differs")
	}
	fi, _ := f.Stat()
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks * 512; blocks > 16<<10 {
		t.Errorf("%d bytes allocated for two non-zero chunks", blocks)
	}
}

func extract(t testing.TB, img string, off, size int64) string {
	t.Helper()
	src := mustOpen(t, img)
	p := filepath.Join(t.TempDir(), "part.img")
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, size)); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustOpen(t testing.TB, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// assertOnly fails unless dir holds exactly the named entries.
func assertOnly(t testing.TB, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

// TestNormalizeAcrossGroups fills more inodes than one block group holds,
// so the time normalisation must walk several groups' inode tables (and
// keep their checksums right for e2fsck).
func TestNormalizeAcrossGroups(t *testing.T) {
	requireTools(t, "mkfs.ext4", "e2fsck", "debugfs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	var entries []treeEntry
	for d := range 90 {
		entries = append(entries, treeEntry{path: fmt.Sprintf("d%02d", d), kind: 'd', mode: 0o755})
		for i := range 100 {
			entries = append(entries, treeEntry{path: fmt.Sprintf("d%02d/f%03d", d, i), kind: 'f', data: []byte("x"), mode: 0o644})
		}
	}
	materialise(t, tree, entries, false)
	s := &Spec{Size: 700 << 20, Arch: ArchX86_64, Seed: "groups", Epoch: testEpoch, Partitions: []Partition{
		{Name: "root", Type: TypeRoot, FS: FSExt4, Label: "root", Dir: tree},
	}}
	img := filepath.Join(dir, "disk.raw")
	l, err := Write(context.Background(), s, img)
	if err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%s?offset=%d", img, l.Partitions[0].Offset)
	run(t, "e2fsck", "-fn", dev)
	hdr := run(t, "dumpe2fs", "-h", dev)
	perGroup := regexp.MustCompile(`Inodes per group:\s+(\d+)`).FindStringSubmatch(hdr)
	if perGroup == nil {
		t.Fatalf("dumpe2fs -h:\n%s", hdr)
	}
	last := run(t, "debugfs", "-R", "stat /d89/f099", dev)
	m := regexp.MustCompile(`Inode: (\d+)`).FindStringSubmatch(last)
	var ino, ipg int
	fmt.Sscan(m[1], &ino)
	fmt.Sscan(perGroup[1], &ipg)
	if ino <= ipg {
		t.Fatalf("inode %d is still in the first group (%d inodes per group): the test does not reach a second group", ino, ipg)
	}
	want := fmt.Sprintf("ctime: 0x%08x:00000000", testEpoch.Unix())
	if !strings.Contains(last, want) {
		t.Errorf("inode %d in a later group was not normalised:\n%s", ino, last)
	}
}

// TestSymlinkedRootTree checks a root tree reached through a symlink: the
// size check and mkfs.ext4 must see the same directory, and the caller's
// Spec keeps its path.
func TestSymlinkedRootTree(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	materialise(t, tree, rootTree(), false)
	link := filepath.Join(dir, "link")
	if err := os.Symlink("tree", link); err != nil {
		t.Fatal(err)
	}
	s := testSpec("s", link)
	img := filepath.Join(dir, "disk.raw")
	l, err := Write(context.Background(), s, img)
	if err != nil {
		t.Fatal(err)
	}
	if s.Partitions[1].Dir != link {
		t.Errorf("Write changed the caller's Spec: Dir = %s", s.Partitions[1].Dir)
	}
	out := run(t, "debugfs", "-R", "cat /etc/os-release", fmt.Sprintf("%s?offset=%d", img, l.Partitions[1].Offset))
	if !strings.Contains(out, "ID=fedora") {
		t.Errorf("root content missing:\n%s", out)
	}
	s.Partitions[1].Dir = filepath.Join(tree, "etc", "os-release")
	if _, err := Write(context.Background(), s, img); !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("file as root tree: %v", err)
	}
}

// TestKernelReadsRoot mounts the root partition read-only with the host
// kernel's ext4 driver, the strictest reader of what the image holds:
// xattrs (in the inode and in a block), the hardlink, the device node and
// the symlink as the kernel sees them.
func TestKernelReadsRoot(t *testing.T) {
	requireTools(t, "mkfs.ext4", "mount", "umount")
	if testing.Short() {
		t.Skip("-short: skipping the loop mount")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	entries := rootTree()
	materialise(t, tree, entries, true)
	img := filepath.Join(dir, "disk.raw")
	l, err := Write(context.Background(), testSpec("kernel", tree), img)
	if err != nil {
		t.Fatal(err)
	}
	root := l.Partitions[1]
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("ro,loop,offset=%d,sizelimit=%d", root.Offset, root.Size)
	if out, err := exec.Command("mount", "-t", "ext4", "-o", opts, img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount ext4 here (%v: %s): the kernel check needs loop devices", err, out)
	}
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	}()
	for _, e := range entries {
		p := filepath.Join(mnt, e.path)
		for k, v := range e.xattrs {
			buf := make([]byte, 4096)
			n, err := unix.Lgetxattr(p, k, buf)
			if err != nil || !bytes.Equal(buf[:n], v) {
				t.Errorf("%s: xattr %s: %v, %q", e.path, k, err, buf[:max(n, 0)])
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Errorf("%s: %v", e.path, err)
			continue
		}
		switch e.kind {
		case 'f':
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, e.data) {
				t.Errorf("%s: content differs (%v)", e.path, err)
			}
			if st.Mode&0o7777 != e.mode || int(st.Uid) != e.uid || int(st.Gid) != e.gid {
				t.Errorf("%s: mode %o uid %d gid %d", e.path, st.Mode, st.Uid, st.Gid)
			}
		case 'l':
			if got, err := os.Readlink(p); err != nil || got != string(e.data) {
				t.Errorf("%s: readlink %q, %v", e.path, got, err)
			}
		case 'c':
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != e.dev {
				t.Errorf("%s: mode %o rdev %x", e.path, st.Mode, st.Rdev)
			}
		case 'h':
			var target unix.Stat_t
			if err := unix.Lstat(filepath.Join(mnt, string(e.data)), &target); err != nil || target.Ino != st.Ino || st.Nlink != 2 {
				t.Errorf("%s: inode %d (nlink %d), target inode %d", e.path, st.Ino, st.Nlink, target.Ino)
			}
		}
		if st.Mtim.Sec != treeMtime.Unix() || st.Ctim.Sec != testEpoch.Unix() || st.Atim.Sec != testEpoch.Unix() {
			t.Errorf("%s: mtime %d ctime %d atime %d", e.path, st.Mtim.Sec, st.Ctim.Sec, st.Atim.Sec)
		}
	}
}

// TestImmutableMissing: an immutable path that the tree lacks fails the
// write, naming the partition and the path, and leaves nothing behind.
func TestImmutableMissing(t *testing.T) {
	requireTools(t, "mkfs.ext4", "debugfs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	materialise(t, tree, rootTree(), false)
	s := testSpec("s", tree)
	s.Partitions[1].Immutable = []string{"usr/lib/nope"}
	_, err := Write(context.Background(), s, filepath.Join(dir, "disk.raw"))
	if err == nil || !strings.Contains(err.Error(), `partition "root": immutable paths: usr/lib/nope is not in the file system`) {
		t.Fatalf("Write error = %v", err)
	}
	assertOnly(t, dir, "tree")
}
