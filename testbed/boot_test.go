package testbed_test

// Real boot tests: the fixture kernels boot under QEMU (TCG) with a small
// initramfs that carries busybox, the kernel modules and the test agent.
// Without composefs= on the command line the agent is /init itself (plain
// mode). With composefs=<digest>, /init is a busybox script standing in for
// the builtin initramfs: it loop-mounts an EROFS image of a small root
// (made with mkfs.erofs), mounts an overlay over it as the new root, gives
// it a writable /etc overlay and /var, records the contract files under
// /run/cfs, and switches root to the agent, which then checks the composefs
// root for real. UEFI boots load the same kernel through OVMF/AAVMF; the
// Secure Boot boots enroll test keys plus Debian's kernel signing
// certificate (taken from the kernel's own Authenticode signature) so that
// the Debian-signed kernel is accepted, and a db without it must be refused.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/pe"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	archpkg "github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/internal/debfetch"
	"github.com/cfs-compose/cfs-compose/testbed"
	_ "github.com/cfs-compose/cfs-compose/testbed/checks"
	"github.com/cfs-compose/cfs-compose/testbed/fixtures"
	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

const bootTimeout = 3 * time.Minute // TCG under CI contention is 2-3x slower

// bootEnv is what the boot tests share: fixture content per arch, built
// once per test binary.
type bootEnv struct {
	cache string
	lock  *fixtures.Lock
	tools *fixtures.Tools
	arch  map[string]*archBoot
}

// archBoot holds the files to boot one arch.
type archBoot struct {
	content *fixtures.Content
	kernel  string // vmlinuz path
	initrd  string // initramfs path
	digest  string // fs-verity digest of the EROFS image in the initramfs
}

var (
	envOnce sync.Once
	env     *bootEnv
	envErr  error
	tmpDirs []string // per-arch boot files, removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range tmpDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// requireBootEnv skips under -short and when QEMU is absent (loudly), and
// otherwise prepares the fixture content (fetching the .debs if needed).
func requireBootEnv(t *testing.T, arch string) (*bootEnv, *archBoot) {
	t.Helper()
	if testing.Short() {
		t.Skip("real QEMU boot test; skipped with -short")
	}
	for _, tool := range []string{"qemu-system-" + arch, "qemu-img", "mkfs.erofs", "fsverity"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING REAL BOOT TEST: %s is not installed (make deps installs qemu-system-x86, qemu-system-arm, qemu-utils, erofs-utils, fsverity)", tool)
		}
	}
	envOnce.Do(func() { env, envErr = newBootEnv() })
	if envErr != nil {
		t.Fatalf("preparing the boot fixtures: %v", envErr)
	}
	if os.Getenv("CFS_VIRT_FW_VARS") == "" {
		t.Setenv("CFS_VIRT_FW_VARS", env.tools.VirtFwVarsWrapper)
	}
	ab, err := env.prepare(arch)
	if err != nil {
		t.Fatalf("preparing %s boot files: %v", arch, err)
	}
	return env, ab
}

var prepMu sync.Mutex

func newBootEnv() (*bootEnv, error) {
	ctx := context.Background()
	cache, err := debfetch.CacheDir()
	if err != nil {
		return nil, err
	}
	lock, err := fixtures.Fetch(ctx, fixtures.FetchOptions{CacheDir: cache})
	if err != nil {
		return nil, err
	}
	tools, err := fixtures.ExtractTools(ctx, cache, lock)
	if err != nil {
		return nil, err
	}
	return &bootEnv{cache: cache, lock: lock, tools: tools, arch: map[string]*archBoot{}}, nil
}

func (e *bootEnv) prepare(arch string) (*archBoot, error) {
	prepMu.Lock()
	defer prepMu.Unlock()
	if ab, ok := e.arch[arch]; ok {
		return ab, nil
	}
	a, err := archpkg.Lookup(arch)
	if err != nil {
		return nil, err
	}
	c, err := fixtures.LoadContent(context.Background(), e.cache, e.lock, a.Debian)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cfs-boot-"+arch+"-*")
	if err != nil {
		return nil, err
	}
	tmpDirs = append(tmpDirs, dir)
	ab := &archBoot{content: c, kernel: filepath.Join(dir, "vmlinuz"), initrd: filepath.Join(dir, "initrd.cpio")}
	if err := os.WriteFile(ab.kernel, c.Kernel.Vmlinuz, 0o644); err != nil {
		return nil, err
	}
	if ab.digest, err = buildInitramfs(c, dir, ab.initrd); err != nil {
		return nil, err
	}
	e.arch[arch] = ab
	return ab, nil
}

// miniInit stands in for the builtin initramfs in composefs mode.
const miniInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /run /sysroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "INIT-START uptime=$(cut -d' ' -f1 /proc/uptime)"
D=$(sed -n 's/.*composefs=\([0-9a-fA-F]*\).*/\1/p' /proc/cmdline)
[ -n "$D" ] || exec /agent
fatal() { echo "cfs-init: FATAL: $*"; exec sleep 100000; }
M=/usr/lib/modules/$(uname -r)/kernel
for m in lib/libcrc32c fs/erofs/erofs drivers/block/loop fs/overlayfs/overlay; do
  insmod $M/$m.ko.xz || fatal "insmod $m"
done
mount -t tmpfs -o mode=0755 tmpfs /run || fatal "tmpfs /run"
mkdir -p /run/cfs/erofs /run/cfs/objects /run/cfs/state/etc/upper /run/cfs/state/etc/work /run/cfs/state/var
cp /cfs/image.erofs /run/cfs/image.erofs || fatal "copy image"
mount -t erofs -o ro,loop /run/cfs/image.erofs /run/cfs/erofs || fatal "mount erofs"
mount -t overlay overlay -o ro,lowerdir=/run/cfs/erofs::/run/cfs/objects,metacopy=on,redirect_dir=on /sysroot || fatal "mount composefs overlay"
mount -t overlay overlay -o lowerdir=/sysroot/etc,upperdir=/run/cfs/state/etc/upper,workdir=/run/cfs/state/etc/work /sysroot/etc || fatal "etc overlay"
mount --bind /run/cfs/state/var /sysroot/var || fatal "var bind"
echo "$D" > /run/cfs/composefs-digest
echo /run/cfs/image.erofs > /run/cfs/image-path
for d in run proc sys dev; do mount --move /$d /sysroot/$d || fatal "move /$d"; done
exec switch_root /sysroot /usr/sbin/init
`

// buildInitramfs writes the test initramfs and returns the fs-verity
// digest of the EROFS image it carries.
func buildInitramfs(c *fixtures.Content, dir, out string) (string, error) {
	kmods := "usr/lib/modules/" + c.Kernel.Version + "/"
	// The EROFS root: the agent as init, the module subset (the agent
	// loads efivarfs from it), FHS mount points.
	root := filepath.Join(dir, "erofs-root")
	files := map[string][]byte{
		"usr/sbin/init":           c.Agent,
		"etc/os-release":          []byte(fixtures.OSRelease(c.Kernel.Version)),
		"etc/hostname":            []byte("testbed\n"),
		kmods + "modules.dep":     c.Kernel.Dep,
		kmods + "modules.order":   c.Kernel.Order,
		"usr/share/testbed/hello": []byte("composefs\n"),
	}
	for _, m := range c.Kernel.Modules {
		files[kmods+m.Path] = m.Data
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "var", "sysroot"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	for p, b := range files {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		mode := os.FileMode(0o644)
		if p == "usr/sbin/init" {
			mode = 0o755
		}
		if err := os.WriteFile(full, b, mode); err != nil {
			return "", err
		}
	}
	img := filepath.Join(dir, "image.erofs")
	if out, err := exec.Command("mkfs.erofs", "-T0", "--all-root", img, root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mkfs.erofs: %v: %s", err, out)
	}
	dout, err := exec.Command("fsverity", "digest", "--compact", img).Output()
	if err != nil {
		return "", fmt.Errorf("fsverity digest: %v", err)
	}
	image, err := os.ReadFile(img)
	if err != nil {
		return "", err
	}
	// The initramfs: busybox, the mini init, the agent (plain mode /init),
	// the modules and the EROFS image.
	var w cpioWriter
	w.dir("bin", 0o755)
	w.dir("dev", 0o755)
	w.node("dev/console", 0o020600, 5, 1)
	for _, d := range []string{"etc", "proc", "sys", "run", "tmp", "usr", "var", "sysroot", "cfs"} {
		w.dir(d, 0o755)
	}
	w.file("bin/busybox", 0o755, c.Busybox)
	w.file("init", 0o755, []byte(miniInit))
	w.file("agent", 0o755, c.Agent)
	w.file("cfs/image.erofs", 0o644, image)
	w.file("etc/hostname", 0o644, []byte("initramfs\n"))
	w.file(kmods+"modules.dep", 0o644, c.Kernel.Dep)
	for _, m := range c.Kernel.Modules {
		w.file(kmods+m.Path, 0o644, m.Data)
	}
	if err := os.WriteFile(out, w.bytes(), 0o644); err != nil {
		return "", err
	}
	return strings.TrimSpace(string(dout)), nil
}

// cpioWriter writes a newc ("070701") archive with parents created before
// children, fixed mtimes and root ownership.
type cpioWriter struct {
	buf  bytes.Buffer
	ino  int
	have map[string]bool
}

func (w *cpioWriter) entry(name string, mode uint32, rmaj, rmin int, data []byte) {
	if w.have == nil {
		w.have = map[string]bool{}
	}
	if d := filepath.Dir(name); d != "." && !w.have[d] {
		w.dir(d, 0o755)
	}
	w.have[name] = true
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	w.buf.WriteString(name + "\x00")
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string, perm uint32)               { w.entry(name, 0o040000|perm, 0, 0, nil) }
func (w *cpioWriter) file(name string, perm uint32, b []byte)    { w.entry(name, 0o100000|perm, 0, 0, b) }
func (w *cpioWriter) node(name string, mode uint32, maj, mn int) { w.entry(name, mode, maj, mn, nil) }
func (w *cpioWriter) bytes() []byte {
	w.entry("TRAILER!!!", 0, 0, 0, nil)
	return w.buf.Bytes()
}

// runTarget boots a target with every registered check and requires that
// none fails or warns and that the wanted checks really passed. It writes
// JUnit and JSON reports next to the console log and logs the timings.
func runTarget(t *testing.T, tg testbed.Target, mustPass ...string) *testbed.TargetReport {
	t.Helper()
	out := os.Getenv("CFS_TESTBED_OUT")
	if out == "" {
		out = t.TempDir()
	}
	var console bytes.Buffer
	junit := filepath.Join(out, tg.Name, "junit.xml")
	s := testbed.Suite{OutputDir: out, Reporters: testbed.Reporters{
		testbed.NewConsoleReporter(&console, 40),
		testbed.NewJUnitReporter(junit),
		testbed.NewJSONReporter(filepath.Join(out, tg.Name, "report.json")),
	}}
	rep, err := s.Run(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reporters.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", console.String())
	b := rep.Boot
	t.Logf("BOOT TIME %s: %s at %.2fs (accel %s), qemu exited at %.2fs; JUnit %s", tg.Name, b.Outcome, b.VerdictAt.Seconds(), b.Accel, b.Duration.Seconds(), junit)
	results := map[string]testbed.Result{}
	for _, c := range rep.Checks {
		results[c.Name] = c.Result
		if c.Result == testbed.Fail || c.Result == testbed.Warn {
			t.Errorf("check %s: %s: %s", c.Name, c.Result, strings.Join(c.Output, "; "))
		}
	}
	for _, n := range mustPass {
		if results[n] != testbed.Pass {
			t.Errorf("check %s: %s, want PASS", n, results[n])
		}
	}
	if _, err := os.Stat(junit); err != nil {
		t.Errorf("no JUnit file: %v", err)
	}
	return rep
}

func directTarget(arch string, ab *archBoot, composefs bool) testbed.Target {
	app := testbed.DefaultConsole(arch) + " panic=-1 quiet"
	name, feats := arch+"-direct-plain", []testbed.Feature{testbed.FeaturePlain}
	if composefs {
		app += " composefs=" + ab.digest
		name, feats = arch+"-direct-composefs", []testbed.Feature{testbed.FeatureComposefs}
	}
	return testbed.Target{Name: name, Features: feats, ComposefsDigest: map[bool]string{true: ab.digest}[composefs],
		Machine: testbed.Machine{Arch: arch, Kernel: ab.kernel, Initrd: ab.initrd, Append: app, Timeout: bootTimeout}}
}

func TestBootDirect(t *testing.T) {
	for _, arch := range []string{"x86_64", "aarch64"} {
		t.Run(arch, func(t *testing.T) {
			_, ab := requireBootEnv(t, arch)
			t.Run("composefs", func(t *testing.T) {
				rep := runTarget(t, directTarget(arch, ab, true),
					"agent-report", "composefs-root", "composefs-digest", "usr-readonly", "etc-writable", "var-writable")
				if d, _ := rep.Boot.Report.Fact("composefs"); d != ab.digest {
					t.Errorf("guest booted composefs=%s, want %s", d, ab.digest)
				}
				if c, _ := rep.Boot.Report.Check("composefs-digest"); !strings.Contains(c.Detail, "computed in userspace") {
					t.Errorf("digest was not measured by the agent: %q", c.Detail)
				}
			})
			t.Run("plain", func(t *testing.T) {
				rep := runTarget(t, directTarget(arch, ab, false), "agent-report", "plain-root", "etc-writable", "var-writable")
				if c, _ := rep.Boot.Report.Check("composefs-root"); c.Status != protocol.Skip {
					t.Errorf("guest composefs-root in plain mode: %+v", c)
				}
			})
		})
	}
}

// TestBootDigestMismatch boots composefs mode with a wrong digest: the
// agent must measure the image and report the mismatch.
func TestBootDigestMismatch(t *testing.T) {
	_, ab := requireBootEnv(t, "x86_64")
	tg := directTarget("x86_64", ab, true)
	wrong := strings.Repeat("0", 64)
	tg.Name = "x86_64-direct-wrong-digest"
	tg.Machine.Append = strings.Replace(tg.Machine.Append, ab.digest, wrong, 1)
	s := testbed.Suite{OutputDir: t.TempDir(), Checks: []string{"composefs-digest", "composefs-root"}}
	rep, err := s.Run(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]testbed.Result{}
	for _, c := range rep.Checks {
		got[c.Name] = c.Result
	}
	if got["composefs-digest"] != testbed.Fail || got["composefs-root"] != testbed.Pass {
		t.Errorf("results %v, want composefs-digest FAIL and composefs-root PASS", got)
	}
	if c, _ := rep.Boot.Report.Check("composefs-digest"); !strings.Contains(c.Detail, ab.digest) {
		t.Errorf("the agent did not report the measured digest: %q", c.Detail)
	}
}

func uefiTarget(t *testing.T, e *bootEnv, arch string, ab *archBoot, secure bool) testbed.Target {
	fw, err := testbed.FindFirmware(arch, secure, testbed.FirmwareDirs(e.tools.OVMFDir, e.tools.AAVMFDir))
	if err != nil {
		t.Skipf("SKIPPING UEFI BOOT: %v", err)
	}
	tg := directTarget(arch, ab, true)
	tg.Name = arch + "-uefi-composefs"
	tg.Features = append(tg.Features, testbed.FeatureUEFI)
	tg.Machine.Firmware = &fw
	return tg
}

func TestBootUEFI(t *testing.T) {
	for _, arch := range []string{"x86_64", "aarch64"} {
		t.Run(arch, func(t *testing.T) {
			e, ab := requireBootEnv(t, arch)
			tg := uefiTarget(t, e, arch, ab, false)
			t.Logf("firmware %s", tg.Machine.Firmware.Code)
			runTarget(t, tg, "agent-report", "uefi-boot", "secureboot-disabled", "composefs-root", "composefs-digest")
		})
	}
}

// TestBootSecureBoot enrolls a test PK and KEK and, in db, the certificate
// of the Debian kernel's own Authenticode signature, and boots the
// Debian-signed kernel with the Secure Boot firmware: the guest must see
// Secure Boot enabled (user mode) and the kernel locked down.
//
// On aarch64, AAVMF verifies the -kernel image against db, so a db holding
// only an unrelated test certificate must make the firmware refuse the
// kernel (it reports the image Not Found and then No bootable option or
// device), and the harness must stop QEMU at once. On
// x86_64 that case cannot be tested through -kernel: QEMU patches the
// bzImage setup header before handing it to OVMF, so its signature never
// verifies and trixie's OVMF falls back to its legacy loader ("Secure boot
// image verification failed ... Using legacy linux kernel loader"); x86_64
// refusals need a signed UKI on an ESP (the signing stage's boot tests).
func TestBootSecureBoot(t *testing.T) {
	for _, arch := range []string{"x86_64", "aarch64"} {
		t.Run(arch, func(t *testing.T) {
			e, ab := requireBootEnv(t, arch)
			base := uefiTarget(t, e, arch, ab, true)
			dir := t.TempDir()
			pk, kek, other := writeTestCert(t, dir, "PK"), writeTestCert(t, dir, "KEK"), writeTestCert(t, dir, "db")
			debian := debianSigningCerts(t, ab.content.Kernel.Vmlinuz, dir)
			ctx := context.Background()

			t.Run("debian-db", func(t *testing.T) {
				vars, err := testbed.EnrollSecureBoot(ctx, base.Machine.Firmware.VarsTemplate, pk, []string{kek}, debian)
				if err != nil {
					t.Fatal(err)
				}
				defer os.Remove(vars)
				tg := base
				fw := *base.Machine.Firmware
				fw.VarsTemplate = vars
				tg.Machine.Firmware = &fw
				tg.Name = arch + "-secureboot"
				tg.Features = append(append([]testbed.Feature(nil), base.Features...), testbed.FeatureSecureBoot)
				runTarget(t, tg, "agent-report", "uefi-boot", "secureboot-enabled", "composefs-root", "composefs-digest")
			})
			if arch != "aarch64" {
				return
			}
			t.Run("wrong-db", func(t *testing.T) {
				vars, err := testbed.EnrollSecureBoot(ctx, base.Machine.Firmware.VarsTemplate, pk, []string{kek}, []string{other})
				if err != nil {
					t.Fatal(err)
				}
				defer os.Remove(vars)
				tg := base
				fw := *base.Machine.Firmware
				fw.VarsTemplate = vars
				tg.Machine.Firmware = &fw
				tg.Name = arch + "-secureboot-refused"
				tg.Features = []testbed.Feature{testbed.FeatureUEFI, testbed.FeatureSecureBoot, testbed.FeatureRefusal}
				rep := runTarget(t, tg, "firmware-refusal")
				if rep.Boot.Duration > 60*time.Second {
					t.Errorf("refusal took %s to stop QEMU", rep.Boot.Duration)
				}
				// AAVMF reports the refused -kernel image as "Not Found" and
				// then finds nothing else to boot; the debian-db case, which
				// differs only in db, proves that the signature decided.
				if !strings.Contains(rep.Boot.Reason, "No bootable option") {
					t.Errorf("refusal reason %q, want the firmware's No bootable option", rep.Boot.Reason)
				}
			})
		})
	}
}

// TestEnrollSecureBootPrint checks the enrolled variable store with
// virt-fw-vars --print, independently of a boot.
func TestEnrollSecureBootPrint(t *testing.T) {
	e, _ := requireBootEnv(t, "x86_64")
	fw, err := testbed.FindFirmware("x86_64", true, testbed.FirmwareDirs(e.tools.OVMFDir))
	if err != nil {
		t.Skipf("SKIPPING: %v", err)
	}
	dir := t.TempDir()
	pk, kek, db := writeTestCert(t, dir, "PK"), writeTestCert(t, dir, "KEK"), writeTestCert(t, dir, "db")
	ctx := context.Background()
	vars, err := testbed.EnrollSecureBoot(ctx, fw.VarsTemplate, pk, []string{kek}, []string{db})
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(vars)
	v, err := testbed.FindVirtFwVars()
	if err != nil {
		t.Fatal(err)
	}
	out, err := v.Print(ctx, vars)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cfs-compose test PK", "cfs-compose test KEK", "cfs-compose test db", "SecureBootEnable"} {
		if !strings.Contains(out, want) {
			t.Errorf("virt-fw-vars --print lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Microsoft") {
		t.Errorf("Microsoft keys enrolled:\n%s", out)
	}
	// An all-zero template (bookworm AAVMF_VARS.fd) is refused clearly.
	zero := filepath.Join(dir, "zero.fd")
	os.WriteFile(zero, make([]byte, 1<<20), 0o644)
	if _, err := testbed.EnrollSecureBoot(ctx, zero, pk, []string{kek}, []string{db}); err == nil || !strings.Contains(err.Error(), "unformatted") {
		t.Errorf("all-zero template: %v", err)
	}
}

// writeTestCert writes a self-signed RSA certificate (PEM) with the
// subject "cfs-compose test NAME" and its key (NAME.key) and returns the
// certificate's path.
func writeTestCert(t *testing.T, dir, name string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "cfs-compose test " + name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// debianSigningCerts extracts the certificates of the Authenticode
// signature embedded in a PE image (the Debian-signed vmlinuz) and writes
// them as PEM files.
func debianSigningCerts(t *testing.T, image []byte, dir string) []string {
	t.Helper()
	f, err := pe.NewFile(bytes.NewReader(image))
	if err != nil {
		t.Fatalf("kernel is not a PE image: %v", err)
	}
	var sec pe.DataDirectory
	switch oh := f.OptionalHeader.(type) {
	case *pe.OptionalHeader64:
		sec = oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
	case *pe.OptionalHeader32:
		sec = oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
	}
	if sec.Size < 8 || int(sec.VirtualAddress)+int(sec.Size) > len(image) {
		t.Fatalf("kernel has no Authenticode signature (security directory %+v)", sec)
	}
	wc := image[sec.VirtualAddress : sec.VirtualAddress+sec.Size]
	length, typ := binary.LittleEndian.Uint32(wc), binary.LittleEndian.Uint16(wc[6:])
	if typ != 2 || int(length) > len(wc) {
		t.Fatalf("WIN_CERTIFICATE type %d length %d", typ, length)
	}
	var ci struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(wc[8:length], &ci); err != nil {
		t.Fatalf("PKCS#7 ContentInfo: %v", err)
	}
	var sd struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		ContentInfo      asn1.RawValue
		Certificates     asn1.RawValue `asn1:"optional,tag:0"`
		CRLs             asn1.RawValue `asn1:"optional,tag:1"`
		SignerInfos      asn1.RawValue
	}
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil {
		t.Fatalf("PKCS#7 SignedData: %v", err)
	}
	certs, err := x509.ParseCertificates(sd.Certificates.Bytes)
	if err != nil || len(certs) == 0 {
		t.Fatalf("signature certificates: %v (%d)", err, len(certs))
	}
	var paths []string
	for i, c := range certs {
		t.Logf("kernel signature certificate %d: %s (issuer %s)", i, c.Subject, c.Issuer)
		p := filepath.Join(dir, fmt.Sprintf("debian-%d.crt", i))
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	return paths
}
