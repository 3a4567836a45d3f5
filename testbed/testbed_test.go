package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

// transcript is a console as a composefs boot prints it, with firmware
// escapes, carriage returns and kernel noise.
const transcript = "\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r\n" +
	"[    0.000000] Linux version 6.12.117+deb13-cloud-amd64\r\n" +
	"INIT-START uptime=2.01\r\n" +
	"CFS-TEST-BEGIN v1\r\n" +
	"CFS-FACT arch=x86_64\r\n" +
	"CFS-FACT mode=composefs\r\n" +
	"CFS-FACT composefs=abcd\r\n" +
	"CFS-FACT secureboot=disabled\r\n" +
	"CFS-CHECK composefs-root PASS overlay with erofs lower\r\n" +
	"CFS-CHECK usr-readonly PASS EROFS\r\n" +
	"CFS-CHECK etc-writable PASS ok\r\n" +
	"CFS-CHECK var-writable FAIL read-only file system\r\n" +
	"CFS-TEST-END pass=3 fail=1 skip=0\r\n" +
	"[    3.100000] reboot: Power down\r\n"

func feed(t *testing.T, chunks ...string) (*console, *bytes.Buffer) {
	t.Helper()
	var log bytes.Buffer
	start := time.Unix(1000, 0)
	c := newConsole(&log, start)
	tick := start
	c.now = func() time.Time { tick = tick.Add(100 * time.Millisecond); return tick }
	for _, ch := range chunks {
		c.Write([]byte(ch))
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	return c, &log
}

func events(c *console) []eventKind {
	var ks []eventKind
	for {
		select {
		case ev := <-c.events:
			ks = append(ks, ev.kind)
		default:
			return ks
		}
	}
}

func TestConsoleParsesTranscript(t *testing.T) {
	// split at awkward places: inside a marker and inside \r\n
	i, j := strings.Index(transcript, "CFS-CH")+4, strings.Index(transcript, "END")+20
	c, log := feed(t, transcript[:i], transcript[i:j], transcript[j:])
	lines, rep := c.snapshot()
	if len(lines) != 14 {
		t.Fatalf("%d lines: %+v", len(lines), lines)
	}
	if lines[0].Text != "BdsDxe: loading Boot0001" {
		t.Errorf("escapes not stripped: %q", lines[0].Text)
	}
	if !rep.Ended || len(rep.Checks) != 4 || rep.Facts["mode"] != "composefs" || len(rep.Errors) != 0 {
		t.Errorf("report = %+v", rep)
	}
	if got := events(c); len(got) != 1 || got[0] != eventReportEnd {
		t.Errorf("events = %v", got)
	}
	if !strings.Contains(log.String(), "] CFS-TEST-BEGIN v1\n") || strings.Contains(log.String(), "\r") {
		t.Errorf("log:\n%s", log.String())
	}
	if l := strings.Split(log.String(), "\n")[0]; !strings.HasPrefix(l, "[   ") || !strings.Contains(l, ".") {
		t.Errorf("no timestamp prefix: %q", l)
	}
}

func TestConsoleEvents(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   []eventKind
	}{
		{"refusal on a partial line", []string{"BdsDxe: failed to load Boot0001 \"UEFI Misc Device\": Access Den", "ied"}, []eventKind{eventRefused}},
		{"no bootable device", []string{"No bootable option or device was found.\r\n", "Press any key"}, []eventKind{eventRefused}},
		{"sb -kernel fallback is no refusal", []string{"OVMF: Secure boot image verification failed. Consider using the '-shim'\r\n"}, nil},
		{"csi with = parameter", []string{"\x1b[=3h\x1b[=3hBdsDxe: failed to load Boot0001: Access Denied\r\n"}, []eventKind{eventRefused}},
		{"init fatal", []string{"cfs-init: FATAL: composefs digest mismatch\n"}, []eventKind{eventInitFatal}},
		{"panic", []string{"[ 2.1] Kernel panic - not syncing: Attempted to kill init!\n"}, []eventKind{eventPanic}},
		{"same refusal once", []string{"Access Denied", " Access Denied\n"}, []eventKind{eventRefused}},
		{"quiet", []string{"hello\nworld"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := feed(t, tt.chunks...)
			got := events(c)
			if len(got) != len(tt.want) {
				t.Fatalf("events %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("events %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestDetectAccel(t *testing.T) {
	mk := func(t *testing.T, modules []string, flags string, devkvm bool) string {
		root := t.TempDir()
		for _, m := range modules {
			os.MkdirAll(filepath.Join(root, "sys/module", m), 0o755)
		}
		os.MkdirAll(filepath.Join(root, "proc"), 0o755)
		os.WriteFile(filepath.Join(root, "proc/cpuinfo"), []byte("processor\t: 0\nflags\t\t: fpu "+flags+" sse2\n"), 0o644)
		if devkvm {
			os.MkdirAll(filepath.Join(root, "dev"), 0o755)
			os.WriteFile(filepath.Join(root, "dev/kvm"), nil, 0o644)
		}
		return root
	}
	tests := []struct {
		name         string
		modules      []string
		flags        string
		devkvm       bool
		host, guest  string
		want, reason string
	}{
		{"kvm-pvm only (this CI)", []string{"kvm", "kvm_pvm"}, "avx512f", true, "amd64", "x86_64", AccelTCG, "neither kvm_intel nor kvm_amd"},
		{"real amd", []string{"kvm", "kvm_amd"}, "svm", true, "amd64", "x86_64", AccelKVM, "kvm_amd"},
		{"real intel", []string{"kvm", "kvm_intel"}, "vmx", true, "amd64", "x86_64", AccelKVM, "kvm_intel"},
		{"module but no flag", []string{"kvm_intel"}, "sse", true, "amd64", "x86_64", AccelTCG, "no vmx/svm"},
		{"no /dev/kvm", []string{"kvm_amd"}, "svm", false, "amd64", "x86_64", AccelTCG, "no /dev/kvm"},
		{"foreign guest", []string{"kvm_amd"}, "svm", true, "amd64", "aarch64", AccelTCG, "differs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := detectAccel(mk(t, tt.modules, tt.flags, tt.devkvm), tt.host, tt.guest)
			if got != tt.want || !strings.Contains(reason, tt.reason) {
				t.Errorf("got %s (%s), want %s (%s)", got, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestFindFirmware(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, f := range []string{"OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"} {
		os.WriteFile(filepath.Join(a, f), []byte("x"), 0o644)
	}
	for _, f := range []string{"OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.fd", "AAVMF_CODE.fd", "AAVMF_VARS.fd"} {
		os.WriteFile(filepath.Join(b, f), []byte("x"), 0o644)
	}
	fw, err := FindFirmware("x86_64", false, []string{a, b})
	if err != nil || fw.Code != filepath.Join(a, "OVMF_CODE_4M.fd") || fw.SMM {
		t.Errorf("x86 plain: %+v %v", fw, err)
	}
	fw, err = FindFirmware("x86_64", true, []string{a, b})
	if err != nil || fw.Code != filepath.Join(b, "OVMF_CODE_4M.secboot.fd") || !fw.SMM {
		t.Errorf("x86 secure boot: %+v %v", fw, err)
	}
	fw, err = FindFirmware("aarch64", true, []string{a, b})
	if err != nil || fw.VarsTemplate != filepath.Join(b, "AAVMF_VARS.fd") || fw.SMM {
		t.Errorf("aarch64 secure boot: %+v %v", fw, err)
	}
	if _, err := FindFirmware("aarch64", false, []string{a}); !errors.Is(err, ErrNoFirmware) {
		t.Errorf("missing firmware: %v", err)
	}
	if _, err := FindFirmware("riscv64", false, []string{a}); err == nil {
		t.Error("riscv64 accepted")
	}
}

func TestRegistry(t *testing.T) {
	var r Registry
	noop := func(*H) {}
	r.Register(Check{Name: "b", Run: noop, Tags: []string{"fast"}})
	r.Register(Check{Name: "a", Run: noop, Requires: []Feature{FeatureComposefs}})
	r.Register(Check{Name: "c", Run: noop, Conflicts: []Feature{FeatureRefusal}})
	for _, bad := range []Check{
		{Name: "a", Run: noop},
		{Name: "Bad Name", Run: noop},
		{Name: "norun"},
		{Name: "both", Run: noop, Requires: []Feature{FeatureUEFI}, Conflicts: []Feature{FeatureUEFI}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%+v) did not panic", bad.Name)
				}
			}()
			r.Register(bad)
		}()
	}
	tests := []struct {
		patterns []string
		features []Feature
		want     string // name:skip? list
		err      bool
	}{
		{nil, nil, "a:skip b c", false},
		{nil, []Feature{FeatureComposefs, FeatureRefusal}, "a b c:skip", false},
		{[]string{"tag:fast"}, nil, "b", false},
		{[]string{"[ab]"}, []Feature{FeatureComposefs}, "a b", false},
		{[]string{"nosuch"}, nil, "", true},
		{[]string{"["}, nil, "", true},
	}
	for _, tt := range tests {
		sel, err := Select(&r, tt.patterns, tt.features)
		if (err != nil) != tt.err {
			t.Errorf("Select(%v): err %v", tt.patterns, err)
			continue
		}
		var got []string
		for _, s := range sel {
			n := s.Check.Name
			if s.SkipReason != "" {
				n += ":skip"
			}
			got = append(got, n)
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("Select(%v, %v) = %v, want %s", tt.patterns, tt.features, got, tt.want)
		}
	}
}

// fakeBoot makes a BootResult from a console transcript, as Boot would.
func fakeBoot(t *testing.T, outcome Outcome, text string) *BootResult {
	c, _ := feed(t, text)
	lines, rep := c.snapshot()
	return &BootResult{Arch: "x86_64", Lines: lines, Report: rep, Outcome: outcome, Reason: "fake",
		ConsoleLog: "/fake/console.log", Duration: 3 * time.Second, VerdictAt: 2500 * time.Millisecond}
}

func TestSuiteAndReporters(t *testing.T) {
	var r Registry
	r.Register(Check{Name: "guest-pass", Run: func(h *H) { h.RequireBooted(); h.RequireGuestPass("etc-writable") }})
	r.Register(Check{Name: "guest-fail", Run: func(h *H) { h.RequireGuestPass("var-writable") }})
	r.Register(Check{Name: "fatal-stops", Run: func(h *H) {
		h.Fatalf("stop here")
		h.Errorf("not reached")
	}})
	r.Register(Check{Name: "skips", Run: func(h *H) { h.Skipf("nothing to do") }})
	r.Register(Check{Name: "warns", Run: func(h *H) { h.Warnf("suspicious") }})
	r.Register(Check{Name: "panics", Run: func(h *H) { panic("boom") }})
	r.Register(Check{Name: "missing-fact", Run: func(h *H) { h.Fact("nosuch") }})
	r.Register(Check{Name: "slow", Timeout: 50 * time.Millisecond, Run: func(h *H) { <-h.Context().Done(); time.Sleep(10 * time.Millisecond) }})
	r.Register(Check{Name: "needs-sb", Requires: []Feature{FeatureSecureBoot}, Run: func(h *H) { h.Errorf("must not run") }})

	dir := t.TempDir()
	var out bytes.Buffer
	jsonPath, junitPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "junit.xml")
	s := Suite{Registry: &r, Reporters: Reporters{NewConsoleReporter(&out, 5), NewJSONReporter(jsonPath), NewJUnitReporter(junitPath)}}
	rep, err := s.CheckBoot(context.Background(), Target{Name: "fake-x86_64"}, fakeBoot(t, OutcomePoweredOff, transcript))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reporters.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]Result{"guest-pass": Pass, "guest-fail": Fail, "fatal-stops": Fail, "skips": Skip, "warns": Warn,
		"panics": Fail, "missing-fact": Fail, "slow": Fail, "needs-sb": Skip}
	for _, c := range rep.Checks {
		if c.Result != want[c.Name] {
			t.Errorf("%s = %s, want %s (%q)", c.Name, c.Result, want[c.Name], c.Output)
		}
		if c.Name == "fatal-stops" && strings.Contains(strings.Join(c.Output, ""), "not reached") {
			t.Error("Fatalf did not stop the check")
		}
	}
	if rep.Result != Fail {
		t.Errorf("suite result %s", rep.Result)
	}
	// console: result lines and the console tail of the failed target
	for _, s := range []string{"--- FAIL: fake-x86_64/guest-fail", "var-writable: FAIL: read-only file system", "--- SKIP: fake-x86_64/needs-sb",
		"FAIL fake-x86_64: 1 passed, 5 failed, 2 skipped, 1 warned", "| [", "reboot: Power down"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("console output lacks %q:\n%s", s, out.String())
		}
	}
	// JSON round trip
	var js struct {
		Version int
		Targets []TargetReport
	}
	b, _ := os.ReadFile(jsonPath)
	if err := json.Unmarshal(b, &js); err != nil || len(js.Targets) != 1 || len(js.Targets[0].Checks) != 9 || js.Targets[0].Result != Fail {
		t.Errorf("JSON report: %v\n%s", err, b)
	}
	// JUnit parses and counts
	var ju struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Suites   []struct {
			Name      string `xml:"name,attr"`
			Skipped   int    `xml:"skipped,attr"`
			SystemOut string `xml:"system-out"`
			Cases     []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	b, _ = os.ReadFile(junitPath)
	if err := xml.Unmarshal(b, &ju); err != nil {
		t.Fatalf("JUnit XML: %v\n%s", err, b)
	}
	if ju.Tests != 9 || ju.Failures != 5 || len(ju.Suites) != 1 || ju.Suites[0].Skipped != 2 || !strings.Contains(ju.Suites[0].SystemOut, "Power down") {
		t.Errorf("JUnit counts: %+v", ju)
	}
}

func TestJUnitEscapesConsoleGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.xml")
	j := NewJUnitReporter(path)
	b := fakeBoot(t, OutcomeTimeout, "bad \x00\x07 bytes <&> \xff\xfe\n")
	j.ReportTarget(&TargetReport{Target: "t", Result: Fail, Boot: b, Checks: []CheckResult{{Name: "x", Result: Fail, Output: []string{"<oops> \x01"}}}})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var v any
	if err := xml.Unmarshal(data, &v); err != nil {
		t.Errorf("invalid XML: %v\n%s", err, data)
	}
}

func TestReportersFanOutCloseErrors(t *testing.T) {
	rs := Reporters{NewJSONReporter("/nonexistent-dir/\x00/r.json"), NewConsoleReporter(&bytes.Buffer{}, 0)}
	rs.ReportTarget(&TargetReport{Target: "t", Boot: &BootResult{}})
	if err := rs.Close(); err == nil {
		t.Error("close error swallowed")
	}
}

// fakeQEMU writes a shell script that stands in for qemu-system-*.
func fakeQEMU(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu-system-fake")
	script := "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\n" + body + "\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBootWithFakeQEMU(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	report := `printf 'CFS-TEST-BEGIN v1\r\nCFS-CHECK etc-writable PASS ok\r\nCFS-TEST-END pass=1 fail=0 skip=0\r\n'`
	tests := []struct {
		name    string
		body    string
		timeout time.Duration
		outcome Outcome
		maxDur  time.Duration
		ended   bool
		// Machine options and the exit code expected (-1: killed).
		stopAt     string
		fatalGrace time.Duration
		exitCode   int
	}{
		{"powers off", report + "; exit 0", time.Minute, OutcomePoweredOff, 5 * time.Second, true, "", 0, 0},
		{"refused then hangs", `printf 'BdsDxe: failed to load Boot0001: Access Denied\r\nPress any key'; exec sleep 60`, time.Minute, OutcomeRefused, 5 * time.Second, false, "", 0, 0},
		{"child keeps running", `sleep 60 & printf 'cfs-init: FATAL: digest mismatch\n'; wait`, time.Minute, OutcomeInitFatal, 5 * time.Second, false, "", 0, 0},
		{"hangs", `exec sleep 60`, time.Second, OutcomeTimeout, 5 * time.Second, false, "", 0, 0},
		{"qemu error", `echo "qemu: could not load kernel" >&2; exit 1`, time.Minute, OutcomeQEMUError, 5 * time.Second, false, "", 0, 0},
		{"panic", `printf 'Kernel panic - not syncing: VFS\n'; exec sleep 60`, time.Minute, OutcomePanic, 5 * time.Second, false, "", 0, 0},
		{"no power-off after report", report + "; exec sleep 60", time.Minute, OutcomeTimeout, 5 * time.Second, true, "", 0, -1},
		{"stop at a prompt", `printf 'UEFI Interactive Shell v2.2\r\nShell> '; exec sleep 60`, time.Minute, OutcomeStopped, 5 * time.Second, false, "Shell> ", 0, -1},
		{"fatal, then powers off within the grace", `printf 'cfs-init: FATAL: digest mismatch\ncfs-init: refusing to boot; powering off\n'; sleep 0.5; exit 0`,
			time.Minute, OutcomeInitFatal, 5 * time.Second, false, "", 10 * time.Second, 0},
		{"fatal, the grace expires", `printf 'cfs-init: FATAL: digest mismatch\n'; exec sleep 60`, time.Minute, OutcomeInitFatal, 5 * time.Second, false, "", time.Second, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := fakeQEMU(t, tt.body)
			out := filepath.Join(t.TempDir(), "out")
			start := time.Now()
			res, err := Boot(context.Background(), Machine{Arch: "x86_64", QEMU: q, Kernel: kernel, Append: "console=ttyS0", Timeout: tt.timeout,
				PowerOffGrace: time.Second, Accel: AccelTCG, StopAt: tt.stopAt, FatalGrace: tt.fatalGrace}, out)
			if err != nil {
				t.Fatal(err)
			}
			if tt.stopAt != "" || tt.fatalGrace != 0 {
				if res.ExitCode != tt.exitCode {
					t.Errorf("exit code %d, want %d", res.ExitCode, tt.exitCode)
				}
				if res.Outcome == OutcomeInitFatal && res.Reason != "cfs-init: FATAL: digest mismatch" {
					t.Errorf("reason %q", res.Reason)
				}
			}
			if res.Outcome != tt.outcome || res.Report.Ended != tt.ended {
				t.Errorf("outcome %s (%s), report ended %v; want %s %v", res.Outcome, res.Reason, res.Report.Ended, tt.outcome, tt.ended)
			}
			// BegunAt is the agent's CFS-TEST-BEGIN line, before the verdict.
			if tt.ended && (res.BegunAt <= 0 || res.BegunAt > res.VerdictAt) {
				t.Errorf("report begun at %s, verdict at %s: want 0 < begun <= verdict", res.BegunAt, res.VerdictAt)
			} else if !tt.ended && res.BegunAt != 0 {
				t.Errorf("begun at %s without a report", res.BegunAt)
			}
			if d := time.Since(start); d > tt.maxDur {
				t.Errorf("took %s: QEMU was not stopped promptly", d)
			}
			if tt.outcome == OutcomeQEMUError && !strings.Contains(res.Reason, "could not load kernel") {
				t.Errorf("reason lacks stderr: %s", res.Reason)
			}
			for _, f := range []string{"console.log", "qemu-cmdline.txt", "boot.json"} {
				if _, err := os.Stat(filepath.Join(out, f)); err != nil {
					t.Errorf("%s not written: %v", f, err)
				}
			}
		})
	}
}

func TestBootArgsFirmwareAndOverlay(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img (qemu-utils) not installed: cannot test the disk overlay")
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	os.WriteFile(disk, bytes.Repeat([]byte{0xaa}, 1<<20), 0o644)
	code, vars := filepath.Join(dir, "CODE.fd"), filepath.Join(dir, "VARS.fd")
	os.WriteFile(code, []byte("code"), 0o644)
	os.WriteFile(vars, []byte("vars-template"), 0o644)
	q := fakeQEMU(t, `for a in "$@"; do case "$a" in file=*qcow2*) f=${a#file=}; f=${f%%,*}; qemu-img info "$f" > "$(dirname "$0")/overlay-info";; esac; done; exit 0`)
	out := filepath.Join(dir, "out")
	res, err := Boot(context.Background(), Machine{Arch: "x86_64", QEMU: q, Disk: disk, Accel: AccelTCG,
		Firmware: &Firmware{Code: code, VarsTemplate: vars, SMM: true}}, out)
	if err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(filepath.Join(filepath.Dir(q), "args"))
	for _, want := range []string{"-nodefaults", "-no-reboot", "-machine q35,smm=on", "property=secure,value=on",
		"if=pflash,format=raw,unit=0,readonly=on,file=" + code, "unit=1,file=" + filepath.Join(out, "vars.fd"), "format=qcow2,if=virtio", "-accel tcg"} {
		if !strings.Contains(string(args), want) {
			t.Errorf("args lack %q: %s", want, args)
		}
	}
	info, _ := os.ReadFile(filepath.Join(filepath.Dir(q), "overlay-info"))
	if !strings.Contains(string(info), "backing file: "+disk) || !strings.Contains(string(info), "backing file format: raw") {
		t.Errorf("overlay info:\n%s", info)
	}
	if _, err := os.Stat(filepath.Join(out, "disk-overlay.qcow2")); !os.IsNotExist(err) {
		t.Errorf("overlay not removed after the boot: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "vars.fd")); string(b) != "vars-template" {
		t.Errorf("vars copy = %q", b)
	}
	if res.Outcome != OutcomePoweredOff || res.Report.Begun {
		t.Errorf("result %+v", res)
	}
}

// TestBootKeptOverlay boots twice through a named overlay: it is created
// on the first boot, kept, and reused by the second (the fake QEMU writes
// through it with qemu-io when present, else only records the image), and
// the disk itself is never written.
func TestBootKeptOverlay(t *testing.T) {
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s (qemu-utils) not installed: cannot test the disk overlay", tool)
		}
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	os.WriteFile(disk, bytes.Repeat([]byte{0xaa}, 1<<20), 0o644)
	code, vars := filepath.Join(dir, "CODE.fd"), filepath.Join(dir, "VARS.fd")
	os.WriteFile(code, []byte("code"), 0o644)
	os.WriteFile(vars, []byte("vars"), 0o644)
	// The guest writes one byte at offset 0 on its first boot and prints
	// the byte it finds there on each boot.
	q := fakeQEMU(t, `for a in "$@"; do case "$a" in file=*qcow2*) f=${a#file=}; f=${f%%,*};; esac; done
b=$(qemu-io -f qcow2 -c 'read -v 0 1' "$f" | awk 'NR==1{print $2}')
printf 'first byte %s\r\n' "$b"
qemu-io -f qcow2 -c 'write -P 0x55 0 1' "$f" >/dev/null; exit 0`)
	overlay := filepath.Join(dir, "kept.qcow2")
	m := Machine{Arch: "x86_64", QEMU: q, Disk: disk, Overlay: overlay, Accel: AccelTCG, Firmware: &Firmware{Code: code, VarsTemplate: vars}}
	for i, want := range []string{"first byte aa", "first byte 55"} {
		res, err := Boot(context.Background(), m, filepath.Join(dir, fmt.Sprintf("out%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := res.Find(want); !ok {
			t.Errorf("boot %d: console lacks %q: %v", i+1, want, res.Tail(5))
		}
		if _, err := os.Stat(overlay); err != nil {
			t.Errorf("boot %d: overlay not kept: %v", i+1, err)
		}
	}
	if b, _ := os.ReadFile(disk); !bytes.Equal(b, bytes.Repeat([]byte{0xaa}, 1<<20)) {
		t.Error("the disk was written")
	}
	if _, err := Boot(context.Background(), Machine{Arch: "x86_64", QEMU: q, Kernel: disk, Overlay: overlay}, t.TempDir()); err == nil {
		t.Error("an overlay without a disk was accepted")
	}
}

func TestMachineValidate(t *testing.T) {
	k := filepath.Join(t.TempDir(), "k")
	os.WriteFile(k, nil, 0o644)
	for _, m := range []Machine{
		{Arch: "riscv64", Kernel: k},
		{Arch: "x86_64"},
		{Arch: "x86_64", Disk: k},
		{Arch: "x86_64", Initrd: k, Disk: k, Firmware: &Firmware{}},
		{Arch: "x86_64", Kernel: "/nonexistent"},
		{Arch: "x86_64", Kernel: k, Disk: k, DiskFormat: "vmdk"},
	} {
		if _, err := Boot(context.Background(), m, t.TempDir()); err == nil {
			t.Errorf("Boot(%+v) accepted", m)
		}
	}
	if _, err := Boot(context.Background(), Machine{Arch: "x86_64", Kernel: k, QEMU: "no-such-qemu"}, t.TempDir()); !errors.Is(err, ErrNoQEMU) {
		t.Errorf("missing qemu: %v", err)
	}
}

func TestResultJSON(t *testing.T) {
	for _, r := range []Result{Pass, Fail, Skip, Warn} {
		b, _ := json.Marshal(r)
		var back Result
		if err := json.Unmarshal(b, &back); err != nil || back != r {
			t.Errorf("%s: %s %v", r, b, err)
		}
	}
	var r Result
	if err := json.Unmarshal([]byte(`"MAYBE"`), &r); err == nil {
		t.Error("unknown result accepted")
	}
	if worse(Skip, Pass) != Pass || worse(Warn, Fail) != Fail || worse(Pass, Warn) != Warn {
		t.Error("worse ordering")
	}
	_ = protocol.Pass
}
