package checks

import (
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

// boot builds a BootResult from agent protocol lines, as the runner would
// after parsing a console.
func boot(outcome testbed.Outcome, reason string, lines ...string) *testbed.BootResult {
	var p protocol.Parser
	var cl []testbed.ConsoleLine
	for i, l := range lines {
		p.Feed(l)
		cl = append(cl, testbed.ConsoleLine{At: time.Duration(i) * time.Second, Text: l})
	}
	return &testbed.BootResult{Arch: "x86_64", Outcome: outcome, Reason: reason, Report: p.Report(), Lines: cl, VerdictAt: 3 * time.Second}
}

func agent(facts map[string]string, checks map[string]protocol.Status) []string {
	lines := []string{"CFS-TEST-BEGIN v1"}
	for k, v := range facts {
		lines = append(lines, "CFS-FACT "+k+"="+v)
	}
	n := map[protocol.Status]int{}
	for name, st := range checks {
		lines = append(lines, "CFS-CHECK "+name+" "+string(st)+" detail of "+name)
		n[st]++
	}
	return append(lines, "CFS-TEST-END pass="+itoa(n[protocol.Pass])+" fail="+itoa(n[protocol.Fail])+" skip="+itoa(n[protocol.Skip]))
}

func itoa(i int) string { return strconv.Itoa(i) }

const digest = "7f02ccd456f04094079193ec929dfdffac840e7e269a7eb824f10286b48d1aea"

func composefsFacts() map[string]string {
	return map[string]string{"mode": "composefs", "composefs": digest, "secureboot": "enabled", "setupmode": "0", "lockdown": "integrity", "arch": "x86_64",
		"root-options": "ro,lowerdir=/run/cfs/erofs::/run/cfs/sysroot/composefs/objects,redirect_dir=on,metacopy=on,verity=require"}
}

func allPass() map[string]protocol.Status {
	return map[string]protocol.Status{"composefs-root": protocol.Pass, "plain-root": protocol.Skip, "usr-readonly": protocol.Pass,
		"etc-writable": protocol.Pass, "var-writable": protocol.Pass, "composefs-digest": protocol.Pass, "secureboot": protocol.Pass}
}

func run(t *testing.T, tg testbed.Target, b *testbed.BootResult) map[string]testbed.Result {
	t.Helper()
	s := testbed.Suite{}
	rep, err := s.CheckBoot(context.Background(), tg, b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]testbed.Result{}
	for _, c := range rep.Checks {
		out[c.Name] = c.Result
	}
	return out
}

func TestChecks(t *testing.T) {
	composefs := []testbed.Feature{testbed.FeatureComposefs, testbed.FeatureUEFI, testbed.FeatureSecureBoot}
	mod := func(f func(map[string]string, map[string]protocol.Status)) []string {
		facts, checks := composefsFacts(), allPass()
		f(facts, checks)
		return agent(facts, checks)
	}
	tests := []struct {
		name     string
		features []testbed.Feature
		digest   string
		boot     *testbed.BootResult
		want     map[string]testbed.Result
	}{
		{
			name: "secure composefs boot", features: composefs, digest: digest,
			boot: boot(testbed.OutcomePoweredOff, "", mod(func(map[string]string, map[string]protocol.Status) {})...),
			want: map[string]testbed.Result{"agent-report": testbed.Pass, "composefs-root": testbed.Pass, "composefs-digest": testbed.Pass,
				"usr-readonly": testbed.Pass, "etc-writable": testbed.Pass, "var-writable": testbed.Pass, "uefi-boot": testbed.Pass,
				"secureboot-enabled": testbed.Pass, "secureboot-disabled": testbed.Skip, "plain-root": testbed.Skip, "firmware-refusal": testbed.Skip},
		},
		{
			name: "compose digest differs from the booted one", features: composefs, digest: strings.Repeat("1", 64),
			boot: boot(testbed.OutcomePoweredOff, "", mod(func(map[string]string, map[string]protocol.Status) {})...),
			want: map[string]testbed.Result{"composefs-digest": testbed.Fail, "composefs-root": testbed.Pass},
		},
		{
			name: "guest failures propagate", features: composefs,
			boot: boot(testbed.OutcomePoweredOff, "", mod(func(_ map[string]string, c map[string]protocol.Status) {
				c["usr-readonly"], c["var-writable"] = protocol.Fail, protocol.Skip
			})...),
			want: map[string]testbed.Result{"usr-readonly": testbed.Fail, "var-writable": testbed.Fail, "etc-writable": testbed.Pass},
		},
		{
			name: "agent in plain mode on a composefs target", features: composefs,
			boot: boot(testbed.OutcomePoweredOff, "", mod(func(f map[string]string, _ map[string]protocol.Status) { f["mode"] = "plain" })...),
			want: map[string]testbed.Result{"composefs-root": testbed.Fail},
		},
		{
			name: "secure boot off although expected", features: composefs,
			boot: boot(testbed.OutcomePoweredOff, "", mod(func(f map[string]string, _ map[string]protocol.Status) {
				f["secureboot"], f["setupmode"] = "disabled", "1"
			})...),
			want: map[string]testbed.Result{"secureboot-enabled": testbed.Fail, "uefi-boot": testbed.Pass},
		},
		{
			name: "no lockdown warns", features: composefs,
			boot: boot(testbed.OutcomePoweredOff, "", mod(func(f map[string]string, _ map[string]protocol.Status) { f["lockdown"] = "none" })...),
			want: map[string]testbed.Result{"secureboot-enabled": testbed.Warn},
		},
		{
			name: "uefi without secure boot", features: []testbed.Feature{testbed.FeaturePlain, testbed.FeatureUEFI},
			boot: boot(testbed.OutcomePoweredOff, "", agent(map[string]string{"mode": "plain", "secureboot": "disabled"},
				map[string]protocol.Status{"plain-root": protocol.Pass, "secureboot": protocol.Pass, "etc-writable": protocol.Pass, "var-writable": protocol.Pass})...),
			want: map[string]testbed.Result{"plain-root": testbed.Pass, "secureboot-disabled": testbed.Pass, "uefi-boot": testbed.Pass, "secureboot-enabled": testbed.Skip, "composefs-root": testbed.Skip},
		},
		{
			name: "not booted through uefi", features: []testbed.Feature{testbed.FeaturePlain, testbed.FeatureUEFI},
			boot: boot(testbed.OutcomePoweredOff, "", agent(map[string]string{"mode": "plain", "secureboot": "unsupported"},
				map[string]protocol.Status{"plain-root": protocol.Pass, "secureboot": protocol.Skip})...),
			want: map[string]testbed.Result{"uefi-boot": testbed.Fail},
		},
		{
			name: "init fatal", features: composefs,
			boot: boot(testbed.OutcomeInitFatal, "cfs-init: FATAL: digest mismatch", "cfs-init: FATAL: digest mismatch"),
			want: map[string]testbed.Result{"agent-report": testbed.Fail, "composefs-root": testbed.Fail, "firmware-refusal": testbed.Skip},
		},
		{
			name: "expected refusal", features: []testbed.Feature{testbed.FeatureUEFI, testbed.FeatureSecureBoot, testbed.FeatureRefusal},
			boot: boot(testbed.OutcomeRefused, "BdsDxe: failed to load Boot0001: Access Denied", "BdsDxe: failed to load Boot0001: Access Denied"),
			want: map[string]testbed.Result{"firmware-refusal": testbed.Pass, "agent-report": testbed.Skip, "secureboot-enabled": testbed.Skip},
		},
		{
			name: "refusal expected but booted", features: []testbed.Feature{testbed.FeatureUEFI, testbed.FeatureSecureBoot, testbed.FeatureRefusal},
			boot: boot(testbed.OutcomePoweredOff, "", mod(func(map[string]string, map[string]protocol.Status) {})...),
			want: map[string]testbed.Result{"firmware-refusal": testbed.Fail},
		},
		{
			name: "truncated report", features: composefs,
			boot: boot(testbed.OutcomeTimeout, "no verdict", "CFS-TEST-BEGIN v1", "CFS-CHECK composefs-root PASS x"),
			want: map[string]testbed.Result{"agent-report": testbed.Fail, "composefs-root": testbed.Fail},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, testbed.Target{Name: "t", Features: tt.features, ComposefsDigest: tt.digest}, tt.boot)
			for name, want := range tt.want {
				if got[name] != want {
					t.Errorf("%s = %s, want %s (all: %v)", name, got[name], want, got)
				}
			}
		})
	}
}

// TestComposefsVerityAndSignature covers the checks that compare the boot
// with the manifest's verity mode and digest signing.
func TestComposefsVerityAndSignature(t *testing.T) {
	withOptions := func(opts string, extra ...string) *testbed.BootResult {
		f := composefsFacts()
		f["root-options"] = opts
		return boot(testbed.OutcomePoweredOff, "", append(extra, agent(f, allPass())...)...)
	}
	const signed = "cfs-init: composefs digest signature verified"
	cfs := []testbed.Feature{testbed.FeatureComposefs}
	signedCfs := []testbed.Feature{testbed.FeatureComposefs, testbed.FeatureSignedComposefs}
	tests := []struct {
		name     string
		features []testbed.Feature
		verity   string
		boot     *testbed.BootResult
		want     map[string]testbed.Result
	}{
		{"require matches", cfs, "require", withOptions("ro,metacopy=on,verity=require"),
			map[string]testbed.Result{"composefs-verity": testbed.Pass, "composefs-signature": testbed.Skip}},
		{"enable is verity=on", cfs, "enable", withOptions("ro,metacopy=on,verity=on"),
			map[string]testbed.Result{"composefs-verity": testbed.Pass}},
		{"none has no option", cfs, "none", withOptions("ro,metacopy=on,redirect_dir=on"),
			map[string]testbed.Result{"composefs-verity": testbed.Pass}},
		{"require but mounted with on", cfs, "require", withOptions("ro,metacopy=on,verity=on"),
			map[string]testbed.Result{"composefs-verity": testbed.Fail}},
		{"none but mounted with require", cfs, "none", withOptions("ro,verity=require"),
			map[string]testbed.Result{"composefs-verity": testbed.Fail}},
		{"no expectation", cfs, "", withOptions("ro"),
			map[string]testbed.Result{"composefs-verity": testbed.Skip}},
		{"signature verified", signedCfs, "require", withOptions("ro,verity=require", signed),
			map[string]testbed.Result{"composefs-signature": testbed.Pass, "composefs-verity": testbed.Pass}},
		{"signature not verified", signedCfs, "require", withOptions("ro,verity=require"),
			map[string]testbed.Result{"composefs-signature": testbed.Fail}},
		{"refused before the initramfs", []testbed.Feature{testbed.FeatureComposefs, testbed.FeatureSignedComposefs, testbed.FeatureRefusal}, "require",
			boot(testbed.OutcomeRefused, "Access Denied", "Access Denied"),
			map[string]testbed.Result{"composefs-signature": testbed.Skip, "composefs-verity": testbed.Skip}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, testbed.Target{Name: "t", Features: tt.features, ComposefsVerity: tt.verity}, tt.boot)
			for name, want := range tt.want {
				if got[name] != want {
					t.Errorf("%s = %s, want %s (all: %v)", name, got[name], want, got)
				}
			}
		})
	}
}

func TestProtocolErrorsFailAgentReport(t *testing.T) {
	lines := append(agent(composefsFacts(), allPass()), "CFS-CHECK late PASS after end")
	got := run(t, testbed.Target{Name: "t", Features: []testbed.Feature{testbed.FeatureComposefs}}, boot(testbed.OutcomePoweredOff, "", lines...))
	if got["agent-report"] != testbed.Fail {
		t.Errorf("agent-report = %s", got["agent-report"])
	}
}

func TestRegistered(t *testing.T) {
	want := []string{"agent-report", "composefs-digest", "composefs-root", "composefs-signature", "composefs-verity", "etc-writable", "firmware-refusal", "image-initramfs", "object-tamper", "ostree-booted", "persist-reboot", "plain-root",
		"root-full", "root-immutable", "secureboot-disabled", "secureboot-enabled", "sysroot", "systemd-running", "uefi-boot", "usr-readonly", "var-writable"}
	var got []string
	for _, c := range testbed.DefaultRegistry.Checks() {
		got = append(got, c.Name)
		if c.Description == "" || len(c.Tags) == 0 {
			t.Errorf("check %s lacks description or tags", c.Name)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("registered %v", got)
	}
}

// TestJUnitCaseOutput: each check's output sits in its own JUnit test
// case: uefi-boot carries the guest Secure Boot check's text,
// secureboot-disabled (which logs nothing when it passes) has none
// (issue 13 item 4).
func TestJUnitCaseOutput(t *testing.T) {
	facts := map[string]string{"mode": "plain", "secureboot": "disabled", "setupmode": "1", "arch": "x86_64"}
	lines := agent(facts, nil)
	lines = append(lines[:len(lines)-1], "CFS-CHECK secureboot PASS Secure Boot disabled (SetupMode=1)", "CFS-TEST-END pass=1 fail=0 skip=0")
	b := boot(testbed.OutcomePoweredOff, "", lines...)
	p := filepath.Join(t.TempDir(), "junit.xml")
	s := testbed.Suite{Checks: []string{"uefi-boot", "secureboot-disabled"}, Reporters: testbed.Reporters{testbed.NewJUnitReporter(p)}}
	tg := testbed.Target{Name: "Fedora-Testbed-43.x86_64", Features: []testbed.Feature{testbed.FeatureUEFI}}
	if _, err := s.CheckBoot(context.Background(), tg, b); err != nil {
		t.Fatal(err)
	}
	if err := s.Reporters.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name      string  `xml:"name,attr"`
				SystemOut *string `xml:"system-out"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil || len(doc.Suites) != 1 {
		t.Fatalf("%v\n%s", err, data)
	}
	want := map[string]string{"uefi-boot": "guest check secureboot: Secure Boot disabled (SetupMode=1)", "secureboot-disabled": ""}
	for _, c := range doc.Suites[0].Cases {
		w, ok := want[c.Name]
		if !ok {
			t.Errorf("unexpected case %s", c.Name)
			continue
		}
		delete(want, c.Name)
		got := ""
		if c.SystemOut != nil {
			got = *c.SystemOut
		}
		if got != w {
			t.Errorf("case %s has output %q, want %q", c.Name, got, w)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing cases %v\n%s", want, data)
	}
}

// TestPersistReboot: persist-reboot passes when the second boot finds the
// first boot's tokens and machine-id, and fails naming what differs.
func TestPersistReboot(t *testing.T) {
	tg := testbed.Target{Name: "t", Features: []testbed.Feature{testbed.FeatureComposefs, testbed.FeatureSystemd, testbed.FeatureReboot}}
	facts := func(etc, varLib, mid string) map[string]string {
		f := composefsFacts()
		f["persist-etc"], f["persist-var-lib"], f["machine-id"] = etc, varLib, mid
		return f
	}
	pair := func(first, second map[string]string) *testbed.BootResult {
		b := boot(testbed.OutcomePoweredOff, "", agent(second, allPass())...)
		b.Previous = boot(testbed.OutcomePoweredOff, "", agent(first, allPass())...)
		return b
	}
	const mid = "0123456789abcdef0123456789abcdef"
	good := facts("new:a1", "new:b2", mid)
	for _, tc := range []struct {
		name string
		b    *testbed.BootResult
		want testbed.Result
	}{
		{"found", pair(good, facts("a1", "b2", mid)), testbed.Pass},
		{"etc lost", pair(good, facts("new:a9", "b2", mid)), testbed.Fail},
		{"var other", pair(good, facts("a1", "zz", mid)), testbed.Fail},
		{"machine-id changed", pair(good, facts("a1", "b2", "fedcba9876543210fedcba9876543210")), testbed.Fail},
		{"machine-id uninitialized", pair(facts("new:a1", "new:b2", "uninitialized"), facts("a1", "b2", "uninitialized")), testbed.Fail},
		{"first boot found a token", pair(facts("a1", "new:b2", mid), facts("a1", "b2", mid)), testbed.Fail},
		{"no second boot", boot(testbed.OutcomeTimeout, "timeout", "CFS-TEST-BEGIN v1"), testbed.Fail},
	} {
		if got := run(t, tg, tc.b)["persist-reboot"]; got != tc.want {
			t.Errorf("%s: persist-reboot = %s, want %s", tc.name, got, tc.want)
		}
	}
	// Without the reboot feature the check does not apply.
	tg.Features = tg.Features[:2]
	if got := run(t, tg, pair(good, facts("a1", "b2", mid)))["persist-reboot"]; got != testbed.Skip {
		t.Errorf("without reboot: persist-reboot = %s, want SKIP", got)
	}
}
