package kmod

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/cfs-compose/cfs-compose/internal/testdeb"
)

// fakeModule returns a minimal ELF64 relocatable object whose .modinfo
// section holds name= and depends= entries, like a kernel module.
func fakeModule(name, depends string) []byte {
	modinfo := []byte("license=GPL\x00depends=" + depends + "\x00name=" + name + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	le := binary.LittleEndian
	hdr := make([]byte, 64)
	copy(hdr, "\x7fELF")
	hdr[4], hdr[5], hdr[6] = 2, 1, 1 // 64-bit, little endian, version 1
	le.PutUint16(hdr[16:], 1)        // ET_REL
	le.PutUint16(hdr[18:], 62)       // x86_64
	le.PutUint32(hdr[20:], 1)
	body := append(append([]byte{}, modinfo...), shstr...)
	shoff := 64 + len(body)
	le.PutUint64(hdr[40:], uint64(shoff))
	le.PutUint16(hdr[52:], 64)
	le.PutUint16(hdr[58:], 64)
	le.PutUint16(hdr[60:], 3)
	le.PutUint16(hdr[62:], 2)
	sh := make([]byte, 3*64)
	// .modinfo
	le.PutUint32(sh[64:], 1)
	le.PutUint32(sh[68:], 1) // PROGBITS
	le.PutUint64(sh[64+24:], 64)
	le.PutUint64(sh[64+32:], uint64(len(modinfo)))
	le.PutUint64(sh[64+48:], 1)
	// .shstrtab
	le.PutUint32(sh[128:], 10)
	le.PutUint32(sh[128+4:], 3) // STRTAB
	le.PutUint64(sh[128+24:], uint64(64+len(modinfo)))
	le.PutUint64(sh[128+32:], uint64(len(shstr)))
	le.PutUint64(sh[128+48:], 1)
	return append(append(hdr, body...), sh...)
}

func compress(t testing.TB, name string, data []byte) []byte {
	var b bytes.Buffer
	switch {
	case strings.HasSuffix(name, ".xz"):
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
	case strings.HasSuffix(name, ".zst"):
		w, _ := zstd.NewWriter(&b)
		w.Write(data)
		w.Close()
	case strings.HasSuffix(name, ".gz"):
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
	default:
		return data
	}
	return b.Bytes()
}

const kver = "6.12.0-test"

// tree returns an image tree with modules a (needs b, c), b (needs c), c,
// d-dash; files in several compressions; with or without modules.dep.
func tree(t testing.TB, withDep bool) fstest.MapFS {
	dir := "usr/lib/modules/" + kver + "/"
	mods := []struct{ path, name, deps string }{
		{"kernel/fs/a.ko.xz", "a", "b,c"},
		{"kernel/lib/b.ko.zst", "b", "c"},
		{"kernel/lib/c.ko", "c", ""},
		{"kernel/drivers/d-dash.ko.gz", "d_dash", "c"},
	}
	fsys := fstest.MapFS{}
	for _, m := range mods {
		fsys[dir+m.path] = &fstest.MapFile{Data: compress(t, m.path, fakeModule(m.name, m.deps)), Mode: 0o644}
	}
	if withDep {
		fsys[dir+"modules.dep"] = &fstest.MapFile{Data: []byte(
			"kernel/fs/a.ko.xz: kernel/lib/b.ko.zst kernel/lib/c.ko\n" +
				"kernel/lib/b.ko.zst: kernel/lib/c.ko\n" +
				"kernel/lib/c.ko:\n" +
				"/lib/modules/" + kver + "/kernel/drivers/d-dash.ko.gz: kernel/lib/c.ko\n")}
	}
	fsys[dir+"modules.builtin"] = &fstest.MapFile{Data: []byte("kernel/fs/ext4/ext4.ko\nkernel/fs/verity/fs-verity.ko\n")}
	fsys[dir+"modules.alias"] = &fstest.MapFile{Data: []byte("# Aliases\nalias fs-a a\nalias pci:v00001AF4d* d_dash\n")}
	return fsys
}

func names(ms []Module) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return strings.Join(s, " ")
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		req     []string
		want    string
		wantErr string
	}{
		{"deps first", []string{"a"}, "c b a", ""},
		{"each once", []string{"c", "a", "b"}, "c b a", ""},
		{"dash and underscore", []string{"d-dash"}, "c d_dash", ""},
		{"file name form", []string{"d_dash.ko"}, "c d_dash", ""},
		{"builtin skipped", []string{"ext4", "fs-verity", "c"}, "c", ""},
		{"alias", []string{"fs-a"}, "c b a", ""},
		{"missing", []string{"c", "nosuch"}, "", "kmod: module not found: nosuch for kernel " + kver},
		{"wildcard alias not used", []string{"pci:v00001AF4d*"}, "", "module not found"},
	}
	for _, withDep := range []bool{true, false} {
		ix, err := Load(tree(t, withDep), kver)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(tt.name+map[bool]string{true: "/modules.dep", false: "/modinfo"}[withDep], func(t *testing.T) {
				got, err := ix.Resolve(tt.req...)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrNotFound) {
						t.Fatalf("err = %v, want %q", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if names(got) != tt.want {
					t.Errorf("Resolve(%v) = %s, want %s", tt.req, names(got), tt.want)
				}
				for _, m := range got {
					data, err := ix.Read(m)
					if err != nil {
						t.Fatal(err)
					}
					info, err := ModInfo(data)
					if err != nil || Name(info["name"]) != m.Name {
						t.Errorf("%s: modinfo %v, %v", m.Path, info, err)
					}
				}
			})
		}
	}
}

func TestMissingDependency(t *testing.T) {
	fsys := tree(t, false)
	delete(fsys, "usr/lib/modules/"+kver+"/kernel/lib/c.ko")
	ix, err := Load(fsys, kver)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ix.Resolve("a")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "c (needed by b) for kernel "+kver) {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := "usr/lib/modules/" + kver + "/"
	tests := []struct {
		name string
		fsys fstest.MapFS
		want string
	}{
		{"no modules dir", fstest.MapFS{"etc/x": {}}, "no modules directory for kernel " + kver},
		{"dep without colon", fstest.MapFS{dir + "modules.dep": {Data: []byte("kernel/a.ko\n")}}, "modules.dep line 1: no ':'"},
		{"dep escaping", fstest.MapFS{dir + "modules.dep": {Data: []byte("../../x.ko:\n")}}, `bad module path "../../x.ko"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Load(tt.fsys, kver); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCycle(t *testing.T) {
	dir := "usr/lib/modules/" + kver + "/"
	ix, err := Load(fstest.MapFS{dir + "modules.dep": {Data: []byte("x.ko: y.ko\ny.ko: x.ko\n")}}, kver)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Resolve("x"); err == nil || !strings.Contains(err.Error(), "dependency cycle") {
		t.Fatalf("err = %v", err)
	}
}

func TestDecompressErrors(t *testing.T) {
	for _, tt := range []struct{ name, data, want string }{
		{"x.ko.xz", "garbage", "xz:"},
		{"x.ko.zst", "garbage", "decompressing"},
		{"x.ko.gz", "garbage", "gzip:"},
		{"x.ko", "garbage", "not an ELF module"},
	} {
		if _, err := Decompress(tt.name, strings.NewReader(tt.data)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestDebianKernel resolves the composefs boot modules of the real trixie
// cloud kernel, which ships .ko.xz files and no modules.dep.
func TestDebianKernel(t *testing.T) {
	dir, release := testdeb.Kernel(t, "amd64")
	ix, err := Load(os.DirFS(dir), release)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ix.Resolve("virtio_blk", "loop", "erofs", "overlay", "ext4")
	if err != nil {
		t.Fatal(err)
	}
	if want := "virtio_blk loop libcrc32c erofs overlay"; names(got) != want {
		t.Errorf("Resolve = %s, want %s", names(got), want)
	}
	if !ix.Builtin("ext4") {
		t.Error("ext4 should be built in")
	}
	for _, m := range got {
		if !strings.HasSuffix(m.Path, ".ko.xz") {
			t.Errorf("%s: expected an .xz module", m.Path)
		}
		data, err := ix.Read(m)
		if err != nil {
			t.Fatal(err)
		}
		info, err := ModInfo(data)
		if err != nil || info["name"] != m.Name || !strings.HasPrefix(info["vermagic"], release+" ") {
			t.Errorf("%s: name=%q vermagic=%q err=%v", m.Path, info["name"], info["vermagic"], err)
		}
	}
	_, err = ix.Resolve("no_such_module")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), release) {
		t.Errorf("err = %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n"), "a")
	f.Add([]byte("a.ko: a.ko\n"), "a")
	f.Fuzz(func(t *testing.T, dep []byte, name string) {
		fsys := fstest.MapFS{"lib/modules/k/modules.dep": {Data: dep}}
		ix, err := Load(fsys, "k")
		if err != nil {
			return
		}
		ix.Resolve(name)
	})
}

func FuzzModInfo(f *testing.F) {
	f.Add(fakeModule("a", "b,c"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ModInfo(data)
	})
}
