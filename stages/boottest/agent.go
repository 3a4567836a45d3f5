package boottest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/testbed"
	"github.com/cfs-compose/cfs-compose/testbed/agentbin"
)

// How the test agent gets into the booted system.
const (
	// AgentPID1: the image itself runs the agent as /usr/sbin/init (the
	// busybox testbed fixture).
	AgentPID1 = "pid1"
	// AgentSystemd: the image's init is systemd; the boot test delivers
	// the agent at boot (testbed.AgentDelivery) and leaves the image alone.
	AgentSystemd = "systemd"
)

// initPath is the image's init, which decides the agent's delivery.
const initPath = "/usr/sbin/init"

// AgentMode decides, once per boot test, how the agent gets in: from the
// source stage's tree (a composefs dumpfile), AgentSystemd when
// /usr/sbin/init is systemd (a symbolic link whose target's base name is
// "systemd", as systemd-sysv and Fedora install it), else AgentPID1.
func AgentMode(dumpfile io.Reader) (string, error) {
	sc := bufio.NewScanner(dumpfile)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 10)
		if len(f) < 9 || f[0] != initPath {
			continue
		}
		var mode uint32
		if _, err := fmt.Sscanf(f[2], "%o", &mode); err != nil {
			return "", fmt.Errorf("boottest: source tree: %s: bad mode %q", initPath, f[2])
		}
		if mode&0o170000 == 0o120000 && path.Base(f[8]) == "systemd" {
			return AgentSystemd, nil
		}
		return AgentPID1, nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("boottest: reading the source tree: %w", err)
	}
	return AgentPID1, nil
}

// agentSHA256 is the digest of the agent the boot test would deliver for
// arch ("" when cfs-compose was built without it), for the cache key.
func agentSHA256(arch string) string {
	b, err := agentbin.Binary(arch)
	if err != nil {
		return ""
	}
	return artifacts.DigestBytes(b).Hex()
}

// agentArgs prepares the agent's delivery into dir for a systemd image and
// returns the QEMU arguments; nil for AgentPID1.
func agentArgs(ctx context.Context, c *Config, mode, dir string) ([]string, error) {
	if mode != AgentSystemd {
		return nil, nil
	}
	bin, err := agentbin.Binary(c.Arch)
	if err != nil {
		return nil, fmt.Errorf("boottest: the image's init is systemd, so the agent is delivered at boot: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return testbed.AgentDelivery(ctx, bin, testbed.AgentOptions{ExtraDirs: c.ExtraDirs,
		Ostree: c.Expect.Ostree, ImageInitramfs: c.Expect.ImageInitramfs}, dir)
}
