package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Checks of an ostree deployment booted through the image's own initramfs
// (deploy.backend = "ostree", initramfs.source = "image"): the agent is
// told to expect them with -ostree and -image-initramfs; without those
// flags the checks report SKIP.

// commandWait bounds each command the ostree checks run in the guest.
const commandWait = time.Minute

// runCommand runs a guest command and returns its standard output; unit
// tests replace it.
var runCommand = func(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandWait)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// ostreeBootedMarker is the file ostree-prepare-root creates for a system
// booted into a deployment (libostree's OSTREE_PATH_BOOTED).
const ostreeBootedMarker = "/run/ostree-booted"

// bootedDeployment returns the booted deployment of `ostree admin status`
// output as "STATEROOT CHECKSUM.SERIAL": the line marked "* ".
func bootedDeployment(status string) (string, error) {
	for _, l := range strings.Split(status, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "*" {
			return f[1] + " " + f[2], nil
		}
	}
	return "", fmt.Errorf("no booted deployment (a line starting with \"* \") in `ostree admin status`:\n%s", strings.TrimSpace(status))
}

// ostreeBooted runs `ostree admin status` once and caches the answer.
func (e *env) ostreeBooted() (string, error) {
	if e.ostreeStatus == nil {
		st := &ostreeStatus{}
		out, err := runCommand("ostree", "admin", "status")
		if err == nil {
			st.booted, err = bootedDeployment(out)
		}
		st.err = err
		e.ostreeStatus = st
	}
	return e.ostreeStatus.booted, e.ostreeStatus.err
}

// ostreeStatus is the cached answer of `ostree admin status`.
type ostreeStatus struct {
	booted string
	err    error
}

// checkOstreeBooted: the image's own ostree CLI reports a booted
// deployment (the host compares it with the one the compose wrote).
func checkOstreeBooted(e *env, _ mode) outcome {
	if !e.ostree {
		return skip("no ostree deployment expected (deploy.backend is not ostree)")
	}
	if _, err := os.Stat(e.path(ostreeBootedMarker)); err != nil {
		return fail("%s is missing: ostree-prepare-root did not set this boot up (%v)", ostreeBootedMarker, err)
	}
	d, err := e.ostreeBooted()
	if err != nil {
		return fail("%v", err)
	}
	return pass("ostree admin status: booted deployment %s", d)
}

// initrdUnits are the initrd units whose completion shows that the image's
// own dracut initramfs ran: dracut's command-line hook always runs, and
// ostree-prepare-root when it boots an ostree deployment.
func initrdUnits(ostree bool) []string {
	u := []string{"dracut-cmdline.service"}
	if ostree {
		u = append(u, "ostree-prepare-root.service")
	}
	return u
}

// checkImageInitramfs: the initramfs that ran is the image's own (dracut)
// and not cfs-compose's builtin one: the builtin /init leaves its records
// under /run/cfs, dracut's units leave theirs in this boot's journal.
func checkImageInitramfs(e *env, _ mode) outcome {
	if !e.imageInitramfs {
		return skip("the disk boots cfs-compose's builtin initramfs (initramfs.source = \"builtin\")")
	}
	if _, err := os.Stat(e.path("/run/cfs")); err == nil {
		return fail("/run/cfs exists: cfs-compose's builtin initramfs ran, not the image's own")
	} else if !errors.Is(err, os.ErrNotExist) {
		return fail("stat /run/cfs: %v", err)
	}
	var seen []string
	for _, u := range initrdUnits(e.ostree) {
		out, err := runCommand("journalctl", "-b", "-q", "--no-pager", "-o", "cat", "-u", u)
		if err != nil {
			return fail("reading this boot's journal: %v", err)
		}
		if !finished(out, u) {
			return fail("this boot's journal does not show %s finishing in the initrd:\n%s", u, strings.TrimSpace(out))
		}
		seen = append(seen, u)
	}
	return pass("no builtin initramfs records under /run/cfs; the initrd ran %s", strings.Join(seen, ", "))
}

// finished reports whether journal text (journalctl -o cat) has systemd's
// "Finished UNIT" line for unit.
func finished(journal, unit string) bool {
	for _, l := range strings.Split(journal, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "Finished "+unit) {
			return true
		}
	}
	return false
}
