package boottest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/agentbin"
	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

// tamperedFile is the file whose object TestObjectTamper changes: not read
// while the system starts.
const tamperedFile = "/usr/share/common-licenses/GPL-3"

// extVerityFlag is EXT4_VERITY_FL in an inode's flags.
const extVerityFlag = 0x100000

// TestObjectTamper: the real OS with verity = "require" boots once from a
// copy of its disk (cfs-init enables fs-verity on every object; the boot's
// qcow2 overlay is then committed into the copy, never into the artifact),
// one byte of the object behind tamperedFile is changed in the copy's root
// partition, and the second boot still reaches multi-user.target while
// reading that file fails with EIO (object-tamper).
func TestObjectTamper(t *testing.T) {
	requireBoot(t, "x86_64")
	for _, tool := range []string{"debugfs", "qemu-img"} {
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

	// One byte of the object, in the copy's root partition.
	object := objectOf(t, b.output(t, vOSReq, arch, contract.Source, "tree"), tamperedFile)
	var rootOff int64 = -1
	for _, p := range b.layout(t, vOSReq, arch).Partitions {
		if p.Type == "root" {
			rootOff = p.Offset
		}
	}
	if rootOff < 0 {
		t.Fatal("the disk layout has no root partition")
	}
	fsys := fmt.Sprintf("%s?offset=%d", disk, rootOff)
	inode := "/composefs/objects/" + object
	// The agent powers off without unmounting: the inode with its
	// fs-verity flag may still be in the journal only (debugfs cannot
	// replay it at an offset), so this is information; the proof is the
	// kernel's "FILE CORRUPTED" on the second boot.
	t.Logf("%s (%s): inode flags on disk %#x (fs-verity %#x)", inode, tamperedFile, debugfsFlags(t, fsys, inode), extVerityFlag)
	blk := debugfs(t, fsys, "bmap "+inode+" 0")
	block, err := strconv.ParseInt(strings.TrimSpace(blk), 10, 64)
	if err != nil || block <= 0 {
		t.Fatalf("debugfs bmap %s 0: %q", inode, blk)
	}
	flipByte(t, disk, rootOff+block*4096+100)
	t.Logf("changed one byte of %s (object %s, block %d)", tamperedFile, object, block)

	// Second boot: the system starts, the file reads EIO.
	tg.Features = append(tg.Features, testbed.FeatureTamper)
	tg.Machine.ExtraArgs, err = testbed.AgentDelivery(ctx, bin, testbed.AgentOptions{ExtraDirs: c.ExtraDirs, Tampered: []string{tamperedFile}}, filepath.Join(dir, "agent2"))
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
	if g, ok := second.Report.Check("object-tamper"); !ok || g.Status != protocol.Pass || !strings.Contains(g.Detail, tamperedFile) {
		t.Errorf("guest object-tamper: %+v, want PASS naming %s", g, tamperedFile)
	} else {
		t.Logf("object-tamper: %s", g.Detail)
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

// debugfs runs one read-only debugfs request on fsys and returns stdout.
func debugfs(t *testing.T, fsys, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, fsys).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", req, err)
	}
	return string(out)
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
