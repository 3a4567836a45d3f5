package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/artifacts/composedir"
	"github.com/cfs-compose/cfs-compose/testbed"
)

type bootOptions struct {
	variant, arch string
	memory        int
}

func newBootCmd(g *globals) *cobra.Command {
	o := &bootOptions{}
	c := &cobra.Command{
		Use:   "boot COMPOSE_DIR [--variant V] [--arch A]",
		Short: "Boot a compose's disk image in QEMU with the serial console attached",
		Long: `boot starts a compose's disk image in QEMU (UEFI firmware, TCG unless
real KVM is usable) with the serial console and QEMU's monitor on this
terminal, for looking around in a built image: Ctrl-A X quits, Ctrl-A C
switches to the monitor. The disk is booted through a throwaway overlay,
so the compose is never written. --variant and --arch pick the target when
the compose has several (the variant's label or name).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := openCompose(args[0])
			if err != nil {
				return err
			}
			t, err := pickTarget(c, o.variant, o.arch)
			if err != nil {
				return err
			}
			disk, format := t.Raw, "raw"
			if disk == "" {
				disk, format = t.Qcow2, "qcow2"
			}
			if disk == "" {
				return fmt.Errorf("%s/%s has no disk image in %s", t.Variant, t.Arch, args[0])
			}
			fw, err := testbed.FindFirmware(t.Arch, false, testbed.FirmwareDirs())
			if err != nil {
				return err
			}
			tmp, err := os.MkdirTemp("", "cfs-compose-boot-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			fmt.Fprintf(g.stderr, "booting %s (%s/%s); Ctrl-A X quits\n", filepath.Join(c.Dir, filepath.FromSlash(disk)), t.Variant, t.Arch)
			m := testbed.Machine{Arch: t.Arch, MemoryMiB: o.memory, CPUs: 2, Firmware: &fw, Disk: filepath.Join(c.Dir, filepath.FromSlash(disk)), DiskFormat: format}
			return testbed.Interactive(cmd.Context(), m, tmp, g.stdin, g.stdout, g.stderr)
		},
	}
	f := c.Flags()
	f.StringVar(&o.variant, "variant", "", "the target's variant (label or name)")
	f.StringVar(&o.arch, "arch", "", "the target's architecture")
	f.IntVar(&o.memory, "memory", 2048, "guest RAM in MiB")
	return c
}

// pickTarget selects the compose target a variant and arch name (either
// may be empty when that leaves one target).
func pickTarget(c *composedir.Compose, variant, arch string) (*composedir.Target, error) {
	var match []*composedir.Target
	var all []string
	for i := range c.Targets {
		t := &c.Targets[i]
		all = append(all, t.Variant+"/"+t.Arch)
		if (variant == "" || strings.EqualFold(variant, t.Variant) || strings.EqualFold(variant, t.Name)) && (arch == "" || arch == t.Arch) {
			match = append(match, t)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return nil, usageError{fmt.Errorf("no target %q/%q in the compose (it has %s)", variant, arch, strings.Join(all, ", "))}
	}
	return nil, usageError{errors.New("the compose has several targets (" + strings.Join(all, ", ") + "): choose one with --variant and --arch")}
}
