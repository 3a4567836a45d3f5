package uki

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/testdeb"
)

const testDigest = "9c76eecc7b76fcb46199cb27b90cf59a660e10575bb0412128905129d5b1c2aa"

// realInputs are a trixie systemd stub and cloud kernel for one arch.
type realInputs struct {
	arch, stub, kernel, uname string
	machine                   uint16
}

func fetchInputs(t testing.TB, arch string) realInputs {
	t.Helper()
	boot := testdeb.Package(t, "systemd-boot-efi", arch)
	kdir, kver := testdeb.Kernel(t, arch)
	in := realInputs{arch: arch, kernel: filepath.Join(kdir, "boot", "vmlinuz-"+kver), uname: kver}
	switch arch {
	case "amd64":
		in.stub, in.machine = filepath.Join(boot, "usr/lib/systemd/boot/efi/linuxx64.efi.stub"), pe.IMAGE_FILE_MACHINE_AMD64
	case "arm64":
		in.stub, in.machine = filepath.Join(boot, "usr/lib/systemd/boot/efi/linuxaa64.efi.stub"), pe.IMAGE_FILE_MACHINE_ARM64
	}
	return in
}

func openPayload(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func sectionReader(t *testing.T, name string) *bytesOrFile {
	f := openPayload(t, name)
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return &bytesOrFile{f, fi.Size()}
}

type bytesOrFile struct {
	*os.File
	n int64
}

func (b *bytesOrFile) Size() int64 { return b.n }

const testOSRel = "ID=testbed\nNAME=\"cfs testbed\"\nVERSION_ID=1\n"

// buildFile builds a UKI into dir/uki.efi.
func buildFile(t *testing.T, dir string, in realInputs, initrd []byte, cmdline string) string {
	t.Helper()
	stub := openPayload(t, in.stub)
	fi, _ := stub.Stat()
	out := filepath.Join(dir, "uki.efi")
	var buf bytes.Buffer
	err := Build(&buf, stub, fi.Size(), Sections{
		Linux:   sectionReader(t, in.kernel),
		Initrd:  bytes.NewReader(initrd),
		Cmdline: cmdline,
		OSRel:   testOSRel,
		Uname:   in.uname,
	})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBuildRealStubs builds UKIs from the trixie x86_64 and aarch64 systemd
// stubs and kernels and checks the layout rules, the reader, objdump and
// sbverify's view, and that sbsign can sign the result.
func TestBuildRealStubs(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			in := fetchInputs(t, arch)
			dir := t.TempDir()
			initrd := bytes.Repeat([]byte("initrd"), 1000)
			cmd := "console=ttyS0 panic=-1 quiet composefs=" + testDigest
			out := buildFile(t, dir, in, initrd, cmd)

			stubF, err := Open(in.stub)
			if err != nil {
				t.Fatal(err)
			}
			defer stubF.Close()
			f, err := Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			checkLayout(t, stubF, f)
			if f.Machine != in.machine {
				t.Errorf("machine %#x, want %#x", f.Machine, in.machine)
			}
			wantNames := []string{SectionOSRel, SectionCmdline, SectionUname, SectionLinux, SectionInitrd}
			var got []string
			for _, s := range f.Sections[len(stubF.Sections):] {
				got = append(got, s.Name)
			}
			if strings.Join(got, " ") != strings.Join(wantNames, " ") {
				t.Errorf("appended sections %v, want %v", got, wantNames)
			}
			if c, _ := f.Cmdline(); c != cmd {
				t.Errorf("Cmdline = %q, want %q", c, cmd)
			}
			if o, _ := f.OSRelease(); o+"\n" != testOSRel {
				t.Errorf("OSRelease = %q", o)
			}
			if u, _ := f.Uname(); u != in.uname {
				t.Errorf("Uname = %q, want %q", u, in.uname)
			}
			d, err := f.ComposefsDigest()
			if err != nil || d.Hex != testDigest {
				t.Errorf("ComposefsDigest = %v, %v", d, err)
			}
			kernel, _ := os.ReadFile(in.kernel)
			if b, _ := f.Section(SectionLinux).Data(); !bytes.Equal(b, kernel) {
				t.Error(".linux differs from the kernel")
			}
			if b, _ := f.Section(SectionInitrd).Data(); !bytes.Equal(b, initrd) {
				t.Error(".initrd differs from the initrd")
			}
			sbat, _ := f.Section(SectionSBAT).Data()
			if !strings.HasSuffix(string(sbat), "\n"+DefaultSBAT+"\n\x00") || strings.Count("\n"+string(sbat), "\nsbat,") != 1 {
				t.Errorf(".sbat = %q", sbat)
			}
			if s := f.Section(SectionSBAT); s.VirtualAddress != stubF.Section(SectionSBAT).VirtualAddress {
				t.Error(".sbat moved: it must be rewritten in place")
			}

			// Deterministic.
			out2 := buildFile(t, t.TempDir(), in, initrd, cmd)
			a, _ := os.ReadFile(out)
			b, _ := os.ReadFile(out2)
			if !bytes.Equal(a, b) {
				t.Error("two builds differ")
			}

			if arch == "amd64" {
				checkObjdump(t, out, f)
			}
			checkSbsign(t, dir, out)
		})
	}
}

// checkLayout checks the ukify layout rules for the sections appended to
// stub, the header fields and the checksum.
func checkLayout(t *testing.T, stub, f *File) {
	t.Helper()
	if f.Signed || f.PointerToSymbolTable != 0 || f.NumberOfSymbols != 0 {
		t.Errorf("signed=%v symtab=%#x/%d, want none", f.Signed, f.PointerToSymbolTable, f.NumberOfSymbols)
	}
	if f.SectionAlignment != stub.SectionAlignment || f.FileAlignment != stub.FileAlignment || f.ImageBase != stub.ImageBase || f.EntryPoint != stub.EntryPoint {
		t.Error("alignment, image base or entry point changed")
	}
	n := len(stub.Sections)
	var code, data uint32 = stub.SizeOfCode, stub.SizeOfInitData
	data += f.Sections[n-1-indexFromEnd(stub, SectionSBAT)].VirtualSize - stub.Section(SectionSBAT).VirtualSize
	for i := n; i < len(f.Sections); i++ {
		prev, s := f.Sections[i-1], f.Sections[i]
		if want := alignUp32(prev.VirtualAddress+prev.VirtualSize, f.SectionAlignment); s.VirtualAddress != want {
			t.Errorf("%s RVA %#x, want %#x", s.Name, s.VirtualAddress, want)
		}
		if want := prev.Offset + prev.Size; s.Offset != want {
			t.Errorf("%s raw pointer %#x, want %#x (contiguous)", s.Name, s.Offset, want)
		}
		if want := alignUp32(s.VirtualSize, f.FileAlignment); s.Size != want {
			t.Errorf("%s raw size %#x, want %#x", s.Name, s.Size, want)
		}
		want := uint32(CharData)
		if s.Name == SectionLinux {
			want = CharCode
			code += s.VirtualSize
		} else {
			data += s.VirtualSize
		}
		if s.Characteristics != want {
			t.Errorf("%s characteristics %#x, want %#x", s.Name, s.Characteristics, want)
		}
	}
	last := f.Sections[len(f.Sections)-1]
	if want := alignUp32(last.VirtualAddress+last.VirtualSize, f.SectionAlignment); f.SizeOfImage != want {
		t.Errorf("SizeOfImage %#x, want %#x", f.SizeOfImage, want)
	}
	if f.SizeOfCode != code || f.SizeOfInitData != data {
		t.Errorf("SizeOfCode %#x SizeOfInitializedData %#x, want %#x %#x", f.SizeOfCode, f.SizeOfInitData, code, data)
	}
	if int64(last.Offset+last.Size) != f.size {
		t.Errorf("file size %#x, last section ends at %#x", f.size, last.Offset+last.Size)
	}
	sum, err := f.ComputeChecksum()
	if err != nil || sum != f.CheckSum || sum == 0 {
		t.Errorf("CheckSum %#x, computed %#x (%v)", f.CheckSum, sum, err)
	}
}

func indexFromEnd(f *File, name string) int {
	for i := range f.Sections {
		if f.Sections[len(f.Sections)-1-i].Name == name {
			return i
		}
	}
	return -1
}

func alignUp32(v, a uint32) uint32 { return uint32(alignUp(uint64(v), uint64(a))) }

// checkObjdump compares binutils' section table with ours.
func checkObjdump(t *testing.T, path string, f *File) {
	t.Helper()
	if _, err := exec.LookPath("objdump"); err != nil {
		t.Skip("objdump (binutils) not installed")
	}
	out, err := exec.Command("objdump", "-h", path).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump -h: %v\n%s", err, out)
	}
	// "  6 .osrel  0000002a  000000014dfab000 ..." (VMA = ImageBase + RVA)
	re := regexp.MustCompile(`(?m)^\s*\d+\s+(\.\w+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)`)
	var rows []string
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		rows = append(rows, m[1]+" "+m[2]+" "+m[3]+" "+m[4])
	}
	var want []string
	for _, s := range f.Sections {
		want = append(want, s.Name+" "+hex8(s.VirtualSize)+" "+hex16(f.ImageBase+uint64(s.VirtualAddress))+" "+hex8(s.Offset))
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("objdump -h sections:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
}

func hex8(v uint32) string  { return fmt.Sprintf("%08x", v) }
func hex16(v uint64) string { return fmt.Sprintf("%016x", v) }

// checkSbsign signs the UKI with a throwaway key and verifies it.
func checkSbsign(t *testing.T, dir, path string) {
	t.Helper()
	for _, tool := range []string{"openssl", "sbsign", "sbverify"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Makefile DEB_PACKAGES has sbsigntool)", tool)
		}
	}
	key, crt := filepath.Join(dir, "db.key"), filepath.Join(dir, "db.crt")
	run(t, "openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "1", "-subj", "/CN=cfs test db/", "-keyout", key, "-out", crt)
	if out := run(t, "sbverify", "--list", path); !strings.Contains(out, "No signature table present") {
		t.Errorf("sbverify --list on the unsigned UKI: %s", out)
	}
	signed := path + ".signed"
	run(t, "sbsign", "--key", key, "--cert", crt, "--output", signed, path)
	if out := run(t, "sbverify", "--cert", crt, signed); !strings.Contains(out, "Signature verification OK") {
		t.Errorf("sbverify --cert: %s", out)
	}
	f, err := Open(signed)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.Signed {
		t.Error("signed UKI: Signed = false")
	}
	// A signed UKI is refused as a stub.
	var buf bytes.Buffer
	data, _ := os.ReadFile(signed)
	err = Build(&buf, bytes.NewReader(data), int64(len(data)), Sections{Linux: strings.NewReader("k")})
	if !errors.Is(err, ErrSigned) {
		t.Errorf("Build on a signed stub: %v, want ErrSigned", err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestMatchesUkify builds the same UKI with ukify 257 (trixie) and with
// Build: the bytes must be identical except the three header fields ukify
// leaves as they were (CheckSum, SizeOfCode, SizeOfInitializedData).
func TestMatchesUkify(t *testing.T) {
	if testing.Short() {
		t.Skip("ukify/pefile comparison (Python, ~15 s) skipped under -short")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("/usr/bin/python3 not installed: cannot run ukify")
	}
	for _, tc := range []struct{ name, arch, suite string }{
		{"amd64", "amd64", "trixie"}, {"arm64", "arm64", "trixie"},
		{"amd64-bookworm-252-stub", "amd64", "bookworm"}, // gnu-efi layout with a COFF symbol table
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := fetchInputs(t, tc.arch)
			if tc.suite == "bookworm" {
				in.stub = filepath.Join(testdeb.PackageFrom(t, "bookworm", "systemd-boot-efi", "amd64", "252"), "usr/lib/systemd/boot/efi/linuxx64.efi.stub")
			}
			ukify := filepath.Join(testdeb.Package(t, "systemd-ukify", "all"), "usr/lib/systemd/ukify")
			pefile := filepath.Join(testdeb.Package(t, "python3-pefile", "all"), "usr/lib/python3/dist-packages")
			dir := t.TempDir()
			initrd := bytes.Repeat([]byte{1, 2, 3}, 12345)
			cmd := "console=ttyS0 composefs=" + testDigest
			os.WriteFile(filepath.Join(dir, "initrd"), initrd, 0o644)
			os.WriteFile(filepath.Join(dir, "os-release"), []byte(testOSRel), 0o644)
			ref := filepath.Join(dir, "ukify.efi")
			c := exec.Command("/usr/bin/python3", ukify, "build", "--linux="+in.kernel, "--initrd="+filepath.Join(dir, "initrd"),
				"--cmdline="+cmd, "--os-release=@"+filepath.Join(dir, "os-release"), "--uname="+in.uname, "--stub="+in.stub, "--output="+ref)
			c.Env = append(os.Environ(), "PYTHONPATH="+pefile)
			if out, err := c.CombinedOutput(); err != nil {
				t.Fatalf("ukify: %v\n%s", err, out)
			}
			ours := buildFile(t, dir, in, initrd, cmd)
			a, _ := os.ReadFile(ref)
			b, _ := os.ReadFile(ours)
			if len(a) != len(b) {
				t.Fatalf("sizes differ: ukify %d, ours %d", len(a), len(b))
			}
			opt := int(binary.LittleEndian.Uint32(a[dosLfanewOff:])) + 4 + coffHeaderSize
			for _, off := range []int{optCheckSum, optSizeOfCode, optSizeOfInitializedData} {
				copy(b[opt+off:opt+off+4], a[opt+off:opt+off+4])
			}
			// pefile computes the checksum independently.
			pc := exec.Command("/usr/bin/python3", "-c", "import pefile,sys; pe=pefile.PE(sys.argv[1], fast_load=True); print(pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum(), hex(pe.generate_checksum()))", ours)
			pc.Env = append(os.Environ(), "PYTHONPATH="+pefile)
			if out, err := pc.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "True") {
				t.Errorf("pefile checksum check: %s %v", out, err)
			}
			if i := firstDiff(a, b); i >= 0 {
				t.Errorf("ours differs from ukify's at offset %#x: ukify % x, ours % x", i, a[i:min(i+8, len(a))], b[i:min(i+8, len(b))])
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestChecksumSplits checks that the checksum does not depend on how the
// bytes are split across writes (odd boundaries, 8-byte bulk, tails).
func TestChecksumSplits(t *testing.T) {
	data := make([]byte, 4099)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	var whole checksummer
	whole.Write(data)
	for _, step := range []int{1, 2, 3, 7, 8, 9, 1000} {
		var c checksummer
		for off := 0; off < len(data); off += step {
			c.Write(data[off:min(off+step, len(data))])
		}
		if c.Sum32() != whole.Sum32() {
			t.Errorf("split %d: %#x, want %#x", step, c.Sum32(), whole.Sum32())
		}
	}
	// Reference: the 16-bit loop with a fold per word.
	var s uint32
	for i := 0; i+1 < len(data); i += 2 {
		s += uint32(data[i]) | uint32(data[i+1])<<8
		s = (s & 0xffff) + (s >> 16)
	}
	s += uint32(data[len(data)-1])
	s = (s & 0xffff) + (s >> 16)
	if want := s + uint32(len(data)); whole.Sum32() != want {
		t.Errorf("checksum %#x, reference %#x", whole.Sum32(), want)
	}
}
