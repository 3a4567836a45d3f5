package testbed

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The agent's delivery into a real operating system (systemd as PID 1):
// the image under test carries no agent. The boot gets
//
//   - a small read-only ext4 disk (label AgentDiskLabel) holding the static
//     agent binary for the guest's architecture, attached after the disk
//     under test (so that one stays /dev/vda);
//   - two systemd credentials (systemd.system-credentials(7), imported by
//     PID 1 and turned into units by systemd-debug-generator, systemd ≥
//     256): systemd.extra-unit.cfs-agent.service, which mounts the disk and
//     runs the agent with -systemd -console -poweroff, and
//     systemd.unit-dropin.multi-user.target, a drop-in making
//     multi-user.target want it.
//
// The credentials travel as SMBIOS type 11 strings
// ("io.systemd.credential.binary:NAME=BASE64"), which systemd reads on x86_64
// and on aarch64 with UEFI firmware alike (CONFIG_DMI_SYSFS is built into
// Debian's kernels). QEMU's fw_cfg cannot carry them: its file names are
// limited to 55 bytes, and "opt/io.systemd.credentials/" plus either
// credential name is longer.

// AgentDiskLabel is the file system label of the agent disk.
const AgentDiskLabel = "cfs-agent"

// AgentUnit is the name of the unit that runs the agent.
const AgentUnit = "cfs-agent.service"

// AgentOptions are the agent's arguments for one boot.
type AgentOptions struct {
	// ExtraDirs are the root-level directories the image must have
	// (rootfs.extra_dirs).
	ExtraDirs []string
	// Tampered are files whose composefs object the harness changed on
	// the disk: the agent's object-tamper check expects EIO reading them.
	Tampered []string
	// Removed are files whose composefs object the harness deleted from
	// the disk: object-tamper expects ENOENT opening them.
	Removed []string
	// Unverified are files whose composefs object the harness replaced by
	// an identical copy without fs-verity: with verity "enable" or
	// "require" (overlayfs verity=on/require), object-tamper expects EIO
	// opening them.
	Unverified []string
	// Ostree: the disk is an ostree sysroot; the agent runs its ostree
	// checks (-ostree).
	Ostree bool
	// ImageInitramfs: the disk boots the image's own initramfs; the
	// agent checks that it ran (-image-initramfs).
	ImageInitramfs bool
}

// agentUnitText returns the unit file that runs the agent. The unit is
// Type=exec, not oneshot: its start job must finish at once, or
// `systemctl is-system-running --wait` in the agent would wait for the
// agent itself.
func agentUnitText(o AgentOptions) string {
	args := "-systemd -console -poweroff"
	if len(o.ExtraDirs) > 0 {
		args += " -extra-dirs " + strings.Join(o.ExtraDirs, ",")
	}
	for _, f := range []struct {
		flag  string
		files []string
	}{{"-tampered", o.Tampered}, {"-removed", o.Removed}, {"-unverified", o.Unverified}} {
		if len(f.files) > 0 {
			args += " " + f.flag + " " + strings.Join(f.files, ",")
		}
	}
	if o.Ostree {
		args += " -ostree"
	}
	if o.ImageInitramfs {
		args += " -image-initramfs"
	}
	return `[Unit]
Description=cfs-compose testbed agent (delivered at boot)
After=multi-user.target

[Service]
Type=exec
ExecStartPre=/bin/mkdir -p /run/cfs-agent
ExecStartPre=/bin/mount -o ro,noload LABEL=` + AgentDiskLabel + ` /run/cfs-agent
ExecStart=/run/cfs-agent/cfs-agent ` + args + `
StandardOutput=journal+console
StandardError=journal+console
`
}

// agentDropIn makes multi-user.target pull the agent in.
const agentDropIn = "[Unit]\nWants=" + AgentUnit + "\n"

// AgentDelivery writes the agent disk into dir (mkfs.ext4 -d: no loop
// device, no root) from the static agent executable for the guest's
// architecture, and returns the QEMU arguments that attach it read-only
// and pass the unit credentials (append them to [Machine.ExtraArgs]).
func AgentDelivery(ctx context.Context, agent []byte, o AgentOptions, dir string) ([]string, error) {
	tree := filepath.Join(dir, "agent-tree")
	if err := os.RemoveAll(tree); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tree, "cfs-agent"), agent, 0o755); err != nil {
		return nil, err
	}
	img := filepath.Join(dir, "agent.img")
	os.Remove(img)
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return nil, fmt.Errorf("testbed: the agent disk needs mkfs.ext4: %w", err)
	}
	size := fmt.Sprintf("%dK", (len(agent)>>10)+4096)
	out, err := exec.CommandContext(ctx, mkfs, "-q", "-F", "-L", AgentDiskLabel, "-O", "^has_journal",
		"-E", "root_owner=0:0", "-d", tree, img, size).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("testbed: writing the agent disk: %w: %s", err, strings.TrimSpace(string(out)))
	}
	cred := func(name, value string) string {
		return "type=11,value=io.systemd.credential.binary:" + name + "=" + base64.StdEncoding.EncodeToString([]byte(value))
	}
	return []string{
		"-drive", "file=" + img + ",format=raw,if=virtio,readonly=on",
		"-smbios", cred("systemd.extra-unit."+AgentUnit, agentUnitText(o)),
		"-smbios", cred("systemd.unit-dropin.multi-user.target", agentDropIn),
	}, nil
}
