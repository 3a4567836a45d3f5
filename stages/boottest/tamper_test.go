package boottest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/agentbin"
	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

// The files whose objects TestObjectTamper tampers with, none read while
// the system starts, each with an object of its own: one byte of
// tamperedFile's object is changed, removedFile's object is deleted, and
// unverifiedFile's object is replaced by an identical copy without
// fs-verity.
const (
	tamperedFile   = "/usr/share/common-licenses/GPL-3"
	removedFile    = "/usr/share/common-licenses/Apache-2.0"
	unverifiedFile = "/usr/share/common-licenses/MPL-2.0"
)

// extVerityFlag is EXT4_VERITY_FL in an inode's flags.
const extVerityFlag = 0x100000

// TestObjectTamper: the real OS with verity = "require" boots once from a
// copy of its disk (cfs-init enables fs-verity on every object; the boot's
// qcow2 overlay is then committed into the copy, never into the artifact).
// The host then tampers with three objects in the copy's root partition
// (its journal replayed first, so that the inodes the first boot changed
// are in place): one byte of tamperedFile's object is changed, the object
// of removedFile is deleted, and the object of unverifiedFile is replaced
// by an identical copy without fs-verity. The second boot still reaches
// multi-user.target, every file is still listed, and reading each gives
// the documented refusal (docs/testbed.md, object-tamper): EIO from
// fs-verity ("FILE CORRUPTED!"), ENOENT from overlayfs' lookup of the
// data-only layer, EIO from overlayfs' verity=require.
func TestObjectTamper(t *testing.T) {
	requireBoot(t, "x86_64")
	for _, tool := range []string{"debugfs", "e2fsck", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (make deps installs e2fsprogs, qemu-utils)", tool)
		}
	}
	b := buildOS(t)
	ctx := context.Background()
	const arch = "x86_64"
	mc := *osConfigs[vOSReq][arch]
	mc.Test.Boot = true
	c, err := resolve(&mc, osConfigs.Compose())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	disk := copyDisk(t, b.disk(t, vOSReq, arch), dir)
	digest := b.digest(t, vOSReq, arch)
	fw, err := PrepareFirmware(ctx, c, dir)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := agentbin.Binary(arch)
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Target(disk, digest, fw)
	tg.Features = append(tg.Features, testbed.FeatureSystemd)

	// The objects, each used by its file only.
	dump := b.output(t, vOSReq, arch, contract.Source, "tree")
	objects := map[string]string{}
	for _, f := range []string{tamperedFile, removedFile, unverifiedFile} {
		o := objectOf(t, dump, f)
		if n := objectUsers(t, dump, o); n != 1 {
			t.Fatalf("object %s of %s is used by %d files, want 1", o, f, n)
		}
		objects[f] = o
	}

	// First boot: fs-verity enabled on the objects, written to the overlay.
	m := tg.Machine
	m.Overlay = filepath.Join(dir, "first.qcow2")
	m.ExtraArgs, err = testbed.AgentDelivery(ctx, bin, testbed.AgentOptions{ExtraDirs: c.ExtraDirs}, filepath.Join(dir, "agent1"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := testbed.Boot(ctx, m, filepath.Join(dir, "boot1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Outcome != testbed.OutcomePoweredOff || !first.Report.Ended {
		t.Fatalf("first boot: %s (%s)\n%s", first.Outcome, first.Reason, strings.Join(first.Tail(40), "\n"))
	}
	t.Logf("REAL-OS BOOT TIME %s first boot (fs-verity enabled): verdict %.1fs", c.Name, first.VerdictAt.Seconds())
	if out, err := exec.Command("qemu-img", "commit", "-q", m.Overlay).CombinedOutput(); err != nil {
		t.Fatalf("committing the first boot's overlay into the disk copy: %v: %s", err, out)
	}

	// The root partition, out of the disk copy: the agent powers off
	// without unmounting, so the first boot's inode changes (the fs-verity
	// flags) may be in the journal only; e2fsck replays it.
	var root *artifacts.DiskPartition
	for _, p := range b.layout(t, vOSReq, arch).Partitions {
		if p.Type == "root" {
			root = &p
		}
	}
	if root == nil {
		t.Fatal("the disk layout has no root partition")
	}
	part := filepath.Join(dir, "root.ext4")
	copyRange(t, disk, root.Offset, part, 0, root.Size)
	if out, err := exec.Command("e2fsck", "-y", "-E", "journal_only", part).CombinedOutput(); err != nil {
		// Exit status 1: the journal was replayed (errors corrected).
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("e2fsck -E journal_only: %v: %s", err, out)
		}
	}
	inode := func(f string) string { return "/composefs/objects/" + objects[f] }
	for _, f := range []string{tamperedFile, removedFile, unverifiedFile} {
		if fl := debugfsFlags(t, part, inode(f)); fl&extVerityFlag == 0 {
			t.Fatalf("%s (%s): inode flags %#x lack fs-verity (%#x) after the first boot", inode(f), f, fl, extVerityFlag)
		}
	}

	// Changed: one byte of the object's first block.
	blk := debugfs(t, part, "bmap "+inode(tamperedFile)+" 0")
	block, err := strconv.ParseInt(strings.TrimSpace(blk), 10, 64)
	if err != nil || block <= 0 {
		t.Fatalf("debugfs bmap %s 0: %q", inode(tamperedFile), blk)
	}
	flipByte(t, part, block*4096+100)
	// Unverified: the same bytes in a new inode, without fs-verity.
	content := filepath.Join(dir, "unverified.object")
	debugfs(t, part, "dump "+inode(unverifiedFile)+" "+content)
	odir, oname := path.Split(inode(unverifiedFile))
	debugfsWrite(t, part, "rm "+inode(removedFile), "rm "+inode(unverifiedFile), "cd "+odir, "write "+content+" "+oname)
	if fl := debugfsFlags(t, part, inode(unverifiedFile)); fl&extVerityFlag != 0 {
		t.Fatalf("%s: the rewritten object still has fs-verity (flags %#x)", inode(unverifiedFile), fl)
	}
	again := filepath.Join(dir, "unverified.again")
	debugfs(t, part, "dump "+inode(unverifiedFile)+" "+again)
	if x, y := readFile(t, content), readFile(t, again); len(x) == 0 || !bytes.Equal(x, y) {
		t.Fatalf("the rewritten object %s differs from the original (%d, %d bytes)", inode(unverifiedFile), len(x), len(y))
	}
	if ls := debugfs(t, part, "ls "+path.Dir(inode(removedFile))); strings.Contains(ls, path.Base(inode(removedFile))) {
		t.Fatalf("%s was not removed: %s", inode(removedFile), ls)
	}
	copyRange(t, part, 0, disk, root.Offset, root.Size)
	t.Logf("tampered: %s (object %s, block %d) changed; %s (object %s) removed; %s (object %s) without fs-verity",
		tamperedFile, objects[tamperedFile], block, removedFile, objects[removedFile], unverifiedFile, objects[unverifiedFile])

	// Second boot: the system starts, each file is refused.
	tg.Features = append(tg.Features, testbed.FeatureTamper)
	tg.Machine.ExtraArgs, err = testbed.AgentDelivery(ctx, bin, testbed.AgentOptions{ExtraDirs: c.ExtraDirs,
		Tampered: []string{tamperedFile}, Removed: []string{removedFile}, Unverified: []string{unverifiedFile}}, filepath.Join(dir, "agent2"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := testbed.Boot(ctx, tg.Machine, filepath.Join(dir, "boot2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("REAL-OS BOOT TIME %s tampered boot: verdict %.1fs", c.Name, second.VerdictAt.Seconds())
	rep, err := (&testbed.Suite{}).CheckBoot(ctx, tg, second)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]testbed.Result{}
	for _, ch := range rep.Checks {
		got[ch.Name] = ch.Result
		if ch.Result == testbed.Fail {
			t.Errorf("check %s: FAIL: %s", ch.Name, strings.Join(ch.Output, "; "))
		}
	}
	for _, n := range []string{"object-tamper", "systemd-running", "agent-report", "composefs-root", "composefs-digest", "composefs-verity"} {
		if got[n] != testbed.Pass {
			t.Errorf("check %s = %s, want PASS", n, got[n])
		}
	}
	// The documented refusals: the error of each read, and the kernel's
	// message naming the file (overlayfs prints the last two path
	// components) or its object.
	g, ok := second.Report.Check("object-tamper")
	if !ok || g.Status != protocol.Pass {
		t.Errorf("guest object-tamper: %+v, want PASS", g)
	}
	t.Logf("object-tamper: %s", g.Detail)
	for _, want := range []string{
		"reading " + tamperedFile + " (object changed): read " + tamperedFile + ": input/output error",
		"reading " + removedFile + " (object removed): open " + removedFile + ": no such file or directory",
		"overlayfs: lazy lowerdata lookup failed (common-licenses/Apache-2.0, err=-2)",
		"reading " + unverifiedFile + " (object unverified): open " + unverifiedFile + ": input/output error",
		"overlayfs: lower file '" + path.Base(objects[unverifiedFile]) + "' has no fs-verity digest",
	} {
		if !strings.Contains(g.Detail, want) {
			t.Errorf("object-tamper detail lacks %q", want)
		}
	}
	// fs-verity found the changed block (not, say, overlayfs refusing a
	// file without fs-verity, which is EIO too).
	if l, ok := second.Find("FILE CORRUPTED"); !ok {
		t.Errorf("the kernel did not report fs-verity's FILE CORRUPTED on the console")
	} else {
		t.Logf("console: %s", l.Text)
	}
	if t.Failed() {
		t.Logf("console:\n%s", strings.Join(second.Tail(60), "\n"))
	}
}

// objectOf returns the object path (xx/yyyy…) of file in a dumpfile.
func objectOf(t *testing.T, dumpfile, file string) string {
	t.Helper()
	f, err := os.Open(dumpfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		fs := strings.SplitN(sc.Text(), " ", 11)
		if len(fs) > 8 && fs[0] == file && fs[8] != "-" {
			return fs[8]
		}
	}
	t.Fatalf("%s has no object in %s (%v)", file, dumpfile, sc.Err())
	return ""
}

// objectUsers counts the files of a dumpfile whose object is object.
func objectUsers(t *testing.T, dumpfile, object string) int {
	t.Helper()
	f, err := os.Open(dumpfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	n := 0
	for sc.Scan() {
		if fs := strings.SplitN(sc.Text(), " ", 11); len(fs) > 8 && fs[8] == object {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", dumpfile, err)
	}
	return n
}

// debugfs runs one read-only debugfs request on fsys and returns stdout.
func debugfs(t *testing.T, fsys, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, fsys).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", req, err)
	}
	return string(out)
}

// debugfsWrite runs debugfs requests on fsys opened read-write; debugfs
// reports a failed request on stderr only, which fails the test.
func debugfsWrite(t *testing.T, fsys string, reqs ...string) {
	t.Helper()
	cmd := exec.Command("debugfs", "-w", "-f", "-", fsys)
	cmd.Stdin = strings.NewReader(strings.Join(reqs, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs -w %q: %v: %s", reqs, err, stderr.String())
	}
	// The banner ("debugfs 1.47.2 (1-Jan-2025)") is on stderr too.
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if l != "" && !strings.HasPrefix(l, "debugfs ") {
			t.Fatalf("debugfs -w %q: %s", reqs, stderr.String())
		}
	}
}

// copyRange copies n bytes at srcOff of src to dstOff of dst (created
// when missing), writing only the 1 MiB chunks that differ, so that an
// extracted partition stays sparse and writing it back touches only what
// changed.
func copyRange(t *testing.T, src string, srcOff int64, dst string, dstOff, n int64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if fi, err := out.Stat(); err == nil && fi.Size() < dstOff+n {
		if err := out.Truncate(dstOff + n); err != nil {
			t.Fatal(err)
		}
	}
	const chunk = 1 << 20
	a, b := make([]byte, chunk), make([]byte, chunk)
	for pos := int64(0); pos < n; pos += chunk {
		l := min(chunk, n-pos)
		if _, err := in.ReadAt(a[:l], srcOff+pos); err != nil {
			t.Fatalf("reading %s at %d: %v", src, srcOff+pos, err)
		}
		if _, err := out.ReadAt(b[:l], dstOff+pos); err != nil {
			t.Fatalf("reading %s at %d: %v", dst, dstOff+pos, err)
		}
		if !bytes.Equal(a[:l], b[:l]) {
			if _, err := out.WriteAt(a[:l], dstOff+pos); err != nil {
				t.Fatalf("writing %s at %d: %v", dst, dstOff+pos, err)
			}
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// debugfsFlags returns an inode's flags from debugfs stat.
func debugfsFlags(t *testing.T, fsys, inode string) int64 {
	t.Helper()
	out := debugfs(t, fsys, "stat "+inode)
	i := strings.Index(out, "Flags: ")
	if i < 0 {
		t.Fatalf("debugfs stat %s: no flags in %q", inode, out)
	}
	f := strings.Fields(out[i+len("Flags: "):])
	v, err := strconv.ParseInt(f[0], 0, 64)
	if err != nil {
		t.Fatalf("debugfs stat %s: flags %q", inode, f[0])
	}
	return v
}

// flipByte inverts the byte at off in file.
func flipByte(t *testing.T, file string, off int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}
