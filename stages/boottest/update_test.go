package boottest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/ostree/ostreetest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/agentbin"
)

// secondMarker is a directory the second commit adds; the booted system
// must have it (the agent's root-immutable check looks for it).
const secondMarker = "/usr/lib/cfs-second-deployment"

// TestOstreeUpdate: the real ostree CLI (Debian trixie's, in a chroot on
// the host) updates the testbed-ostree disk as an installed system would
// be updated: `ostree commit` of a second commit (the first plus one file)
// into the disk's repository, `ostree admin deploy` of it. ostree writes a
// new BLS entry for it; the system boots that entry as a BLS boot loader
// would (its kernel, initramfs and options, here through OVMF's direct
// kernel boot, since the disk's own boot loader is the first deployment's
// UKI) and comes up in the new deployment: the image's own `ostree admin
// status` shows it booted, the image's initramfs ran, and the new file is
// there.
func TestOstreeUpdate(t *testing.T) {
	requireBoot(t, "x86_64")
	ch := ostreetest.Get(t)
	b := buildOS(t)
	ctx := context.Background()
	const arch = "x86_64"
	mc := *osConfigs[vOstree][arch]
	c, err := resolve(&mc, osConfigs.Compose())
	if err != nil {
		t.Fatal(err)
	}
	c.Reboot = false // one boot of the updated disk
	var dep artifacts.OstreeDeployment
	raw, err := os.ReadFile(b.output(t, vOstree, arch, contract.Ostree, "deployment"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dep); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	disk := copyDisk(t, b.disk(t, vOstree, arch), dir)
	var root *artifacts.DiskPartition
	layout := b.layout(t, vOstree, arch)
	for i := range layout.Partitions {
		if layout.Partitions[i].Type == "root" {
			root = &layout.Partitions[i]
		}
	}
	if root == nil {
		t.Fatal("the disk layout has no root partition")
	}

	// The update, on the disk copy's root partition.
	mnt := filepath.Join(dir, "sysroot")
	extra := filepath.Join(dir, "extra")
	for _, d := range []string{mnt, filepath.Join(extra, "usr/lib/ostree"), filepath.Join(extra, secondMarker)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(extra, secondMarker, "marker"), []byte("second\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Debian's ostree refuses to deploy a tree whose prepare-root.conf
	// enables composefs (it has no composefs support); this deployment
	// boots with composefs off anyway.
	if err := os.WriteFile(filepath.Join(extra, "usr/lib/ostree/prepare-root.conf"), []byte("[composefs]\nenabled = no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := "loop,offset=" + strconv.FormatInt(root.Offset, 10) + ",sizelimit=" + strconv.FormatInt(root.Size, 10)
	if out, err := exec.Command("mount", "-t", "ext4", "-o", opts, disk, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mounting the root partition: %v: %s", err, out)
	}
	mounted := true
	umount := func() {
		if mounted {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("unmounting %s: %v: %s", mnt, err, out)
			}
			mounted = false
		}
	}
	defer umount()
	binds := []ostreetest.Bind{{Host: mnt, Guest: "/mnt/sysroot"}, {Host: extra, Guest: "/mnt/extra"}}
	run := func(args ...string) string {
		t.Helper()
		out, err := ch.Ostree(binds, args...)
		if err != nil {
			t.Fatalf("ostree %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	second := run("--repo=/mnt/sysroot/ostree/repo", "commit", "--branch="+dep.Ref, "--tree=ref="+dep.Commit,
		"--tree=dir=/mnt/extra", "-s", "second", "--timestamp=2025-01-01T00:00:00Z")
	t.Logf("ostree admin deploy: %s", run("admin", "deploy", "--sysroot=/mnt/sysroot", "--os="+dep.Stateroot, dep.Ref))
	status := run("admin", "status", "--sysroot=/mnt/sysroot")
	t.Logf("ostree admin status:\n%s", status)
	if !strings.Contains(status, dep.Stateroot+" "+second+".0") {
		t.Fatalf("status does not list the second deployment %s.0", second)
	}

	// The default BLS entry (the highest version) is the new deployment's.
	entry := defaultEntry(t, filepath.Join(mnt, "boot", "loader", "entries"))
	if !strings.Contains(entry["options"], "ostree=") {
		t.Fatalf("BLS entry without ostree=: %v", entry)
	}
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs.img")
	for src, dst := range map[string]string{entry["linux"]: kernel, entry["initrd"]: initrd} {
		if out, err := exec.Command("cp", filepath.Join(mnt, filepath.FromSlash(src)), dst).CombinedOutput(); err != nil {
			t.Fatalf("copying %s from the BLS entry: %v: %s", src, err, out)
		}
	}
	umount()
	t.Logf("booting BLS entry %q: linux %s, initrd %s, options %s", entry["title"], entry["linux"], entry["initrd"], entry["options"])

	fw, err := PrepareFirmware(ctx, c, dir)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := agentbin.Binary(arch)
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Target(disk, "", fw)
	tg.Machine.Kernel, tg.Machine.Initrd, tg.Machine.Append = kernel, initrd, entry["options"]
	tg.Features = append(tg.Features, testbed.FeatureSystemd)
	tg.OstreeDeployment = dep.Stateroot + " " + second + ".0"
	tg.Machine.ExtraArgs, err = testbed.AgentDelivery(ctx, bin, testbed.AgentOptions{Ostree: true, ImageInitramfs: true,
		ExtraDirs: []string{secondMarker}}, filepath.Join(dir, "agent"))
	if err != nil {
		t.Fatal(err)
	}
	boot, err := testbed.Boot(ctx, tg.Machine, filepath.Join(dir, "boot"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("REAL-OS BOOT TIME updated deployment: verdict %.1fs", boot.VerdictAt.Seconds())
	rep, err := (&testbed.Suite{}).CheckBoot(ctx, tg, boot)
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
	for _, n := range []string{"agent-report", "systemd-running", "ostree-booted", "image-initramfs", "sysroot", "etc-writable", "var-writable", "usr-readonly", "root-immutable"} {
		if got[n] != testbed.Pass {
			t.Errorf("check %s = %s, want PASS", n, got[n])
		}
	}
	if t.Failed() {
		t.Logf("console tail:\n%s", strings.Join(boot.Tail(60), "\n"))
	}
}

// defaultEntry parses the BLS Type #1 entries in dir and returns the keys
// of the one a boot loader starts by default: the highest version.
func defaultEntry(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no BLS entries in %s: %v", dir, err)
	}
	var best map[string]string
	bestVersion := -1
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		e := map[string]string{}
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(l), " "); ok {
				e[k] = strings.TrimSpace(v)
			}
		}
		v, err := strconv.Atoi(e["version"])
		if err != nil {
			t.Fatalf("%s: version %q: %v", f, e["version"], err)
		}
		if v > bestVersion {
			best, bestVersion = e, v
		}
	}
	if slices.Contains([]string{best["linux"], best["initrd"]}, "") {
		t.Fatalf("default BLS entry lacks linux or initrd: %v", best)
	}
	return best
}
