// Package vmtest is test support for packages whose tests boot QEMU guests
// with the testbed runner ([testbed.Boot]): the skip rules every boot test
// follows, a boot call that fails the test on harness errors, and failure
// messages that carry the guest's console.
//
// It imports package testing; only _test.go files may import it.
package vmtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/testbed"
)

// Require skips the test under -short, and loudly when one of the tools
// (QEMU, qemu-img, mkfs.ext4, …) is not installed.
func Require(tb testing.TB, tools ...string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("QEMU boot test skipped under -short")
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			tb.Skipf("SKIPPING QEMU BOOT TEST: %s is not installed (the Makefile's DEB_PACKAGES installs it): %v", t, err)
		}
	}
}

// Boot boots m with [testbed.Boot] in a fresh temporary directory (the
// console log, QEMU command line and variable store copy land there) and
// returns the result; a harness error (no QEMU, a bad machine) fails the
// test. With $VMTEST_CONSOLE set, verbose runs log the whole console.
func Boot(tb testing.TB, m testbed.Machine) *testbed.BootResult {
	tb.Helper()
	res, err := testbed.Boot(context.Background(), m, tb.TempDir())
	if err != nil {
		tb.Fatalf("booting %s: %v", m.Arch, err)
	}
	if testing.Verbose() && os.Getenv("VMTEST_CONSOLE") != "" {
		tb.Logf("console:\n%s", Console(res))
	}
	return res
}

// Console returns the whole console, one "[   1.234] line" per line, with
// QEMU's stderr appended.
func Console(r *testbed.BootResult) string {
	var b strings.Builder
	for _, l := range r.Tail(len(r.Lines)) {
		b.WriteString(l + "\n")
	}
	if s := strings.TrimSpace(r.Stderr); s != "" {
		fmt.Fprintf(&b, "qemu stderr: %s\n", s)
	}
	return b.String()
}

// Fail reports a failed expectation with the boot's outcome and console.
func Fail(tb testing.TB, r *testbed.BootResult, format string, a ...any) {
	tb.Helper()
	tb.Errorf("%s\n--- %s boot: %s (%s) after %.2fs ---\n%s", fmt.Sprintf(format, a...), r.Arch, r.Outcome, r.Reason, r.Duration.Seconds(), Console(r))
}
