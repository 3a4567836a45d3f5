package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

const sampleMountinfo = `1 1 0:2 / / rw - rootfs rootfs rw
25 1 0:24 / / ro,relatime - overlay composefs ro,lowerdir=/run/cfs/erofs::/sysroot/composefs/objects,redirect_dir=on,metacopy=on,verity=require
26 25 7:0 / /run/cfs/erofs ro,relatime - erofs /dev/loop0 ro,user_xattr,acl,cache_strategy=readaround
27 25 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,size=4k,mode=755
28 25 253:3 /state/deploy/abc/etc /etc rw,relatime - overlay overlay rw,lowerdir=/etc,upperdir=/sysroot/state/etc/upper,workdir=/sysroot/state/etc/work
29 25 253:3 /state/var /var rw,relatime - ext4 /dev/vda3 rw
30 25 0:30 / /mnt/with\040space rw - tmpfs my\134src rw
`

func TestParseMountinfo(t *testing.T) {
	ms, err := parseMountinfo(strings.NewReader(sampleMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 7 {
		t.Fatalf("got %d mounts", len(ms))
	}
	root, ok := mountAt(ms, "/")
	if !ok || root.ID != 25 || root.FSType != "overlay" || root.Source != "composefs" {
		t.Fatalf("root = %+v", root)
	}
	if ms[6].MountPoint != "/mnt/with space" || ms[6].Source != `my\src` {
		t.Errorf("escapes not decoded: %+v", ms[6])
	}
	if ms[4].Root != "/state/deploy/abc/etc" || ms[4].Parent != 25 || ms[4].MajMin != "253:3" {
		t.Errorf("etc mount = %+v", ms[4])
	}

	for _, bad := range []string{"1 2 3\n", "x 1 0:1 / / rw - tmpfs t rw\n", "1 1 0:1 / / rw - tmpfs\n"} {
		if _, err := parseMountinfo(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMountinfo(%q) succeeded", bad)
		}
	}
}

func TestOverlayLowers(t *testing.T) {
	tests := []struct {
		name        string
		opts        string
		lower, data []string
	}{
		{"classic with data", "ro,lowerdir=/a:/b::/objs,metacopy=on", []string{"/a", "/b"}, []string{"/objs"}},
		{"classic", "rw,lowerdir=/l,upperdir=/u,workdir=/w", []string{"/l"}, nil},
		{"plus syntax", "ro,lowerdir+=/run/e,datadir+=/o1,datadir+=/o2", []string{"/run/e"}, []string{"/o1", "/o2"}},
		{"escaped colon and comma", `ro,lowerdir=/a\:b:/c\054d`, []string{"/a:b", "/c,d"}, nil},
		{"none", "rw,relatime", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, d := overlayLowers(tt.opts)
			if !reflect.DeepEqual(l, tt.lower) || !reflect.DeepEqual(d, tt.data) {
				t.Errorf("got %q %q, want %q %q", l, d, tt.lower, tt.data)
			}
		})
	}
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		in   string
		key  string
		val  string
		ok   bool
		npar int
	}{
		{"console=ttyS0 composefs=abc quiet\n", "composefs", "abc", true, 3},
		{"a=1 a=2", "a", "2", true, 2},
		{`x="hello world" y`, "x", "hello world", true, 2},
		{`"quoted=a b" c`, "quoted", "a b", true, 2},
		{"quiet", "quiet", "", true, 1},
		{"quiet", "composefs", "", false, 1},
		{"a=1 -- composefs=zzz", "composefs", "", false, 1},
		{"  ", "a", "", false, 0},
		{"k= ", "k", "", true, 1},
	}
	for _, tt := range tests {
		c := parseCmdline(tt.in)
		v, ok := c.get(tt.key)
		if v != tt.val || ok != tt.ok || len(c.params) != tt.npar {
			t.Errorf("parseCmdline(%q).get(%q) = %q %v (%d params), want %q %v (%d)", tt.in, tt.key, v, ok, len(c.params), tt.val, tt.ok, tt.npar)
		}
	}
}

func TestEFIVariable(t *testing.T) {
	tests := []struct {
		name    string
		b       []byte
		want    bool
		wantErr bool
	}{
		{"enabled", []byte{6, 0, 0, 0, 1}, true, false},
		{"disabled", []byte{6, 0, 0, 0, 0}, false, false},
		{"short", []byte{6, 0}, false, true},
		{"two data bytes", []byte{6, 0, 0, 0, 1, 0}, false, true},
		{"bad bool", []byte{6, 0, 0, 0, 7}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parseEFIVariable(tt.b)
			var got bool
			if err == nil {
				got, err = v.boolValue()
			}
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %v, %v", got, err)
			}
			if err == nil && v.Attributes != 6 {
				t.Errorf("attributes = %d", v.Attributes)
			}
		})
	}
}

func TestVerityDigestMatchesFsverityTool(t *testing.T) {
	tool, err := exec.LookPath("fsverity")
	if err != nil {
		t.Skip("fsverity (fsverity-utils) not installed: cannot cross-check the userspace digest")
	}
	dir := t.TempDir()
	sizes := []int{0, 1, 4095, 4096, 4097, 128 * 4096, 128*4096 + 1, 300000}
	if !testing.Short() {
		sizes = append(sizes, 129*128*4096) // three tree levels
	}
	for _, size := range sizes {
		b := make([]byte, size)
		rand.Read(b)
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tool, "digest", "--compact", p).Output()
		if err != nil {
			t.Fatalf("fsverity digest: %v", err)
		}
		got, how, err := fileVerityDigest(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(out)); got != want {
			t.Errorf("size %d: digest %s (%s), fsverity says %s", size, got, how, want)
		}
	}
}

func TestModuleDeps(t *testing.T) {
	dep := "kernel/fs/erofs/erofs.ko.xz: kernel/lib/libcrc32c.ko.xz\n" +
		"kernel/fs/fat/vfat.ko.xz: kernel/fs/fat/fat.ko.xz kernel/fs/nls/nls_base.ko.xz\n" +
		"kernel/fs/efivarfs/efivarfs.ko.xz:\n"
	tests := []struct {
		name string
		want []string
	}{
		{"efivarfs", []string{"kernel/fs/efivarfs/efivarfs.ko.xz"}},
		{"vfat", []string{"kernel/fs/nls/nls_base.ko.xz", "kernel/fs/fat/fat.ko.xz", "kernel/fs/fat/vfat.ko.xz"}},
		{"erofs", []string{"kernel/lib/libcrc32c.ko.xz", "kernel/fs/erofs/erofs.ko.xz"}},
	}
	for _, tt := range tests {
		got, err := moduleDeps(strings.NewReader(dep), tt.name)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %q %v, want %q", tt.name, got, err, tt.want)
		}
	}
	if _, err := moduleDeps(strings.NewReader(dep), "loop"); err == nil {
		t.Error("missing module found")
	}
}

// fakeRoot builds a fake system tree for the checks.
type fakeRoot struct {
	dir string
	t   *testing.T
}

func newFakeRoot(t *testing.T, cmdline, mountinfo string) fakeRoot {
	r := fakeRoot{t.TempDir(), t}
	r.write("/proc/cmdline", cmdline)
	r.write("/proc/self/mountinfo", mountinfo)
	for _, d := range []string{"/usr", "/etc", "/var"} {
		os.MkdirAll(filepath.Join(r.dir, d), 0o755)
	}
	return r
}

func (r fakeRoot) write(p, content string) {
	full := filepath.Join(r.dir, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// erofsImage returns bytes that look like an EROFS image (magic at 1024).
func erofsImage() []byte {
	b := make([]byte, 8192)
	binary.LittleEndian.PutUint32(b[1024:], erofsMagic)
	rand.Read(b[2048:])
	return b
}

func runAgent(t *testing.T, root string) protocol.Report {
	t.Helper()
	var buf bytes.Buffer
	if err := report(&buf, loadEnv(root), nil); err != nil {
		t.Fatal(err)
	}
	r, err := protocol.Parse(&buf)
	if err != nil || !r.Ended || len(r.Errors) > 0 {
		t.Fatalf("report %+v, %v\n%s", r, err, buf.String())
	}
	return r
}

func status(t *testing.T, r protocol.Report, name string) protocol.CheckResult {
	t.Helper()
	c, ok := r.Check(name)
	if !ok {
		t.Fatalf("check %s not reported", name)
	}
	return c
}

func TestChecksComposefs(t *testing.T) {
	img := erofsImage()
	sum, err := verityDigest(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	digest := hex.EncodeToString(sum[:])
	detached := "1 1 0:2 / / rw - rootfs rootfs rw\n25 1 0:24 / / ro - overlay composefs ro,lowerdir+=/tmp/.cfs-erofs,datadir+=/sysroot/composefs/objects,metacopy=on\n"

	tests := []struct {
		name      string
		cmdline   string
		mountinfo string
		recorded  string // "" = no /run/cfs/composefs-digest
		image     []byte // nil = no image
		// loop0's backing file and its content ("" = none)
		loopBacking string
		loopImage   []byte
		want        map[string]protocol.Status
	}{
		{
			name: "composefs ok (erofs mounted)", cmdline: "composefs=" + digest, mountinfo: sampleMountinfo,
			recorded: digest, image: img,
			want: map[string]protocol.Status{"composefs-root": protocol.Pass, "composefs-digest": protocol.Pass, "plain-root": protocol.Skip, "etc-writable": protocol.Pass, "var-writable": protocol.Pass, "secureboot": protocol.Skip},
		},
		{
			name: "composefs ok (erofs detached, image recorded)", cmdline: "composefs=" + strings.ToUpper(digest), mountinfo: detached,
			recorded: digest, image: img,
			want: map[string]protocol.Status{"composefs-root": protocol.Pass, "composefs-digest": protocol.Pass},
		},
		{
			name: "digest mismatch", cmdline: "composefs=" + strings.Repeat("ab", 32), mountinfo: sampleMountinfo,
			recorded: strings.Repeat("ab", 32), image: img,
			want: map[string]protocol.Status{"composefs-root": protocol.Pass, "composefs-digest": protocol.Fail},
		},
		{
			name: "mounted image differs from the recorded one", cmdline: "composefs=" + digest, mountinfo: sampleMountinfo,
			recorded: digest, image: img, loopBacking: "/run/other.erofs", loopImage: erofsImage(),
			want: map[string]protocol.Status{"composefs-root": protocol.Pass, "composefs-digest": protocol.Fail},
		},
		{
			name: "mounted image is a good copy", cmdline: "composefs=" + digest, mountinfo: sampleMountinfo,
			recorded: digest, image: img, loopBacking: "/run/copy.erofs", loopImage: img,
			want: map[string]protocol.Status{"composefs-digest": protocol.Pass},
		},
		{
			name: "no initramfs record", cmdline: "composefs=" + digest, mountinfo: sampleMountinfo,
			want: map[string]protocol.Status{"composefs-digest": protocol.Fail},
		},
		{
			name: "root not overlay", cmdline: "composefs=" + digest, mountinfo: "1 1 0:2 / / rw - ext4 /dev/vda3 rw\n",
			recorded: digest, image: img,
			want: map[string]protocol.Status{"composefs-root": protocol.Fail, "composefs-digest": protocol.Pass},
		},
		{
			name: "overlay without erofs", cmdline: "composefs=" + digest, mountinfo: detached,
			want: map[string]protocol.Status{"composefs-root": protocol.Fail},
		},
		{
			name: "plain ok", cmdline: "console=ttyS0", mountinfo: "1 1 0:2 / / rw - ext4 /dev/vda3 rw\n",
			want: map[string]protocol.Status{"plain-root": protocol.Pass, "composefs-root": protocol.Skip, "composefs-digest": protocol.Skip, "usr-readonly": protocol.Skip},
		},
		{
			name: "plain but composefs mounted", cmdline: "quiet", mountinfo: sampleMountinfo,
			want: map[string]protocol.Status{"plain-root": protocol.Fail},
		},
		{
			name: "plain but digest recorded", cmdline: "quiet", mountinfo: "1 1 0:2 / / rw - ext4 /dev/vda3 rw\n", recorded: digest,
			want: map[string]protocol.Status{"plain-root": protocol.Fail},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFakeRoot(t, tt.cmdline, tt.mountinfo)
			if tt.recorded != "" {
				r.write(recordedDigestPath, tt.recorded+"\n")
			}
			if tt.image != nil {
				r.write("/sysroot/composefs/images/img", string(tt.image))
				r.write(recordedImagePath, "/sysroot/composefs/images/img\n")
			}
			if tt.loopBacking != "" {
				r.write("/sys/block/loop0/loop/backing_file", tt.loopBacking+"\n")
				r.write(tt.loopBacking, string(tt.loopImage))
			}
			rep := runAgent(t, r.dir)
			if len(rep.Checks) != len(checks) {
				t.Errorf("%d checks reported, want %d", len(rep.Checks), len(checks))
			}
			for name, want := range tt.want {
				if c := status(t, rep, name); c.Status != want {
					t.Errorf("%s = %s (%s), want %s", name, c.Status, c.Detail, want)
				}
			}
		})
	}
}

func TestUsrWritableFailsInComposefsMode(t *testing.T) {
	r := newFakeRoot(t, "composefs=00", sampleMountinfo)
	rep := runAgent(t, r.dir)
	if c := status(t, rep, "usr-readonly"); c.Status != protocol.Fail || !strings.Contains(c.Detail, "succeeded") {
		t.Errorf("usr-readonly = %+v", c)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "usr/.cfs-agent-probe")); !os.IsNotExist(err) {
		t.Errorf("probe file left behind: %v", err)
	}
}

func TestUnwritableEtc(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores directory permissions; use a path that is a file.
		r := newFakeRoot(t, "quiet", "1 1 0:2 / / rw - ext4 /dev/vda3 rw\n")
		os.RemoveAll(filepath.Join(r.dir, "etc"))
		r.write("/etc", "not a directory")
		if c := status(t, runAgent(t, r.dir), "etc-writable"); c.Status != protocol.Fail {
			t.Errorf("etc-writable = %+v", c)
		}
		return
	}
	r := newFakeRoot(t, "quiet", "1 1 0:2 / / rw - ext4 /dev/vda3 rw\n")
	os.Chmod(filepath.Join(r.dir, "etc"), 0o555)
	if c := status(t, runAgent(t, r.dir), "etc-writable"); c.Status != protocol.Fail {
		t.Errorf("etc-writable = %+v", c)
	}
}

func TestSecureBootState(t *testing.T) {
	tests := []struct {
		name   string
		vars   map[string][]byte
		efi    bool
		state  string
		setup  string
		status protocol.Status
		detail string
	}{
		{"no efi", nil, false, "unsupported", "", protocol.Skip, "not booted through UEFI"},
		{"enabled", map[string][]byte{"SecureBoot": {6, 0, 0, 0, 1}, "SetupMode": {6, 0, 0, 0, 0}}, true, "enabled", "0", protocol.Pass, "Secure Boot enabled (SetupMode=0)"},
		{"disabled setup mode", map[string][]byte{"SecureBoot": {6, 0, 0, 0, 0}, "SetupMode": {6, 0, 0, 0, 1}}, true, "disabled", "1", protocol.Pass, "Secure Boot disabled (SetupMode=1)"},
		// issue 13 item 4: trixie's OVMF_CODE_4M.fd has no Secure Boot
		// code and defines neither variable; the detail said "SetupMode=".
		{"firmware without Secure Boot", map[string][]byte{"BootOrder": {7, 0, 0, 0, 1, 0}}, true, "disabled", "", protocol.Pass,
			"Secure Boot disabled (the firmware has no SetupMode variable: built without Secure Boot support)"},
		{"efivarfs not mounted", map[string][]byte{}, true, "", "", protocol.Fail, "efivarfs not mounted"},
		{"corrupt", map[string][]byte{"SecureBoot": {6}}, true, "", "", protocol.Fail, "shorter than the 4-byte attribute header"},
		{"corrupt SetupMode", map[string][]byte{"SecureBoot": {6, 0, 0, 0, 0}, "SetupMode": {6, 0, 0, 0, 7}}, true, "", "", protocol.Fail, "SetupMode: efivar: boolean value 0x7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFakeRoot(t, "quiet", "1 1 0:2 / / rw - ext4 /dev/vda3 rw\n")
			if tt.efi {
				os.MkdirAll(filepath.Join(r.dir, "sys/firmware/efi/efivars"), 0o755)
			}
			for k, v := range tt.vars {
				r.write("/sys/firmware/efi/efivars/"+k+"-"+efiGlobalVariable, string(v))
			}
			e := loadEnv(r.dir)
			state, setup, err := secureBootState(e)
			if tt.status != protocol.Fail && (err != nil || state != tt.state || setup != tt.setup) {
				t.Errorf("state %q setup %q err %v", state, setup, err)
			}
			if o := checkSecureBoot(e, modePlain); o.status != tt.status || !strings.Contains(o.detail, tt.detail) || strings.HasSuffix(o.detail, "SetupMode=)") {
				t.Errorf("check = %+v, want %s with %q", o, tt.status, tt.detail)
			}
		})
	}
}

func TestChecksFilterAndFacts(t *testing.T) {
	r := newFakeRoot(t, "quiet cfs.agent.checks=etc-writable,var-writable", "1 1 0:2 / / rw - ext4 /dev/vda3 rw\n")
	r.write("/proc/uptime", "2.31 1.00\n")
	r.write("/sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
	rep := runAgent(t, r.dir)
	if len(rep.Checks) != 2 {
		t.Errorf("checks = %+v", rep.Checks)
	}
	for k, want := range map[string]string{"uptime": "2.31", "mode": "plain", "composefs": "none", "root-fstype": "ext4", "lockdown": "integrity", "secureboot": "unsupported"} {
		if got, _ := rep.Fact(k); got != want {
			t.Errorf("fact %s = %q, want %q", k, got, want)
		}
	}
}

func TestCheckTable(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range checks {
		if err := protocol.ValidName(c.name); err != nil || seen[c.name] || c.run == nil || c.desc == "" || c.modes == 0 {
			t.Errorf("bad check row %+v (%v)", c.name, err)
		}
		seen[c.name] = true
	}
}

func TestSafeRun(t *testing.T) {
	o := safeRun(check{name: "boom", run: func(*env, mode) outcome { panic("kaput") }}, &env{}, modePlain)
	if o.status != protocol.Fail || !strings.Contains(o.detail, "kaput") {
		t.Errorf("outcome = %+v", o)
	}
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add(sampleMountinfo)
	f.Add("1 1 0:1 / /\\04 rw - overlay o lowerdir=a::b\n")
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := parseMountinfo(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, m := range ms {
			overlayLowers(m.SuperOptions)
		}
	})
}

func FuzzParseCmdline(f *testing.F) {
	f.Add(`a=1 "b=c d" -- e`)
	f.Fuzz(func(t *testing.T, s string) {
		c := parseCmdline(s)
		for _, p := range c.params {
			if strings.ContainsAny(p.key, " \t\n\"") && !strings.Contains(s, `"`) {
				t.Fatalf("unquoted key with separator: %q", p.key)
			}
		}
	})
}

// TestObjectTamper: without tampered files the check skips; a file that
// reads fine, is missing from the tree, or fails otherwise than with its
// kind's errno fails it, naming the file (the refusals themselves need a
// real fs-verity file system and overlayfs: stages/boottest
// TestObjectTamper).
func TestObjectTamper(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "intact"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := &env{root: root}
	if o := checkObjectTamper(e, modeComposefs); o.status != protocol.Skip {
		t.Errorf("no tampered files: %v %s", o.status, o.detail)
	}
	tests := []struct {
		name   string
		tp     tamper
		detail string
	}{
		{"changed but readable", tamper{"/intact", tamperChanged}, "reading /intact (object changed) succeeded, want input/output error"},
		{"unverified but readable", tamper{"/intact", tamperUnverified}, "reading /intact (object unverified) succeeded, want input/output error"},
		{"removed but readable", tamper{"/intact", tamperRemoved}, "reading /intact (object removed) succeeded, want no such file or directory"},
		{"gone from the tree", tamper{"/missing", tamperRemoved}, "stat /missing (object removed): "},
	}
	for _, tt := range tests {
		e.tampered = []tamper{tt.tp}
		if o := checkObjectTamper(e, modeComposefs); o.status != protocol.Fail || !strings.Contains(o.detail, tt.detail) {
			t.Errorf("%s: %v %q, want FAIL with %q", tt.name, o.status, o.detail, tt.detail)
		}
	}
}

// TestKmsgText: /dev/kmsg records are reduced to their text when they come
// from overlayfs or fs-verity.
func TestKmsgText(t *testing.T) {
	tests := []struct {
		rec, want string
		ok        bool
	}{
		{"4,812,3456789,-;overlayfs: lazy lowerdata lookup failed (common-licenses/Apache-2.0, err=-2)\n", "overlayfs: lazy lowerdata lookup failed (common-licenses/Apache-2.0, err=-2)", true},
		{"3,900,1,-;fs-verity (vda3, inode 1234): FILE CORRUPTED! pos=0\n SUBSYSTEM=block\n", "fs-verity (vda3, inode 1234): FILE CORRUPTED! pos=0", true},
		{"6,901,2,-;EXT4-fs (vda3): mounted filesystem\n", "", false},
		{"no separator", "", false},
	}
	for _, tt := range tests {
		if got, ok := kmsgText(tt.rec); got != tt.want || ok != tt.ok {
			t.Errorf("kmsgText(%q) = %q, %v; want %q, %v", tt.rec, got, ok, tt.want, tt.ok)
		}
	}
}
