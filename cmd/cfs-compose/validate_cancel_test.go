package main

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestValidateInterrupted sends SIGINT while validate loads a large
// manifest set: loading stops with "Loading cancelled" instead of running
// to the end (issue 13 item 20).
func TestValidateInterrupted(t *testing.T) {
	dir := t.TempDir()
	const manifest = `
compose {
  release = "43"
}
variant "v" {
  source {
    image = "docker://quay.io/fedora/fedora-coreos:stable"
  }
}
`
	var locals strings.Builder
	locals.WriteString("locals {\n  l0 = 0\n")
	for i := 1; i < 100_000; i++ {
		fmt.Fprintf(&locals, "  l%d = local.l%d + 1\n", i, i-1)
	}
	locals.WriteString("}\n")
	for name, body := range map[string]string{"a.hcl": manifest, "locals.hcl": locals.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// While this test sends SIGINT to its own process, a handler of its own
	// keeps the default action (exit) away.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	defer signal.Stop(sigs)
	timer := time.AfterFunc(100*time.Millisecond, func() { syscall.Kill(os.Getpid(), syscall.SIGINT) })
	defer timer.Stop()

	var stdout, stderr bytes.Buffer
	code := run([]string{"validate", "-m", dir}, strings.NewReader(""), &stdout, &stderr)
	if code != exitError || !strings.Contains(stderr.String(), "Loading cancelled") {
		t.Fatalf("exit %d, stderr:\n%.2000s", code, stderr.String())
	}
}
