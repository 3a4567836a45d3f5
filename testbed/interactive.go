package testbed

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// Interactive boots m with the serial console (and QEMU's monitor,
// Ctrl-A C; Ctrl-A X quits) attached to stdin and stdout, for people who
// want to look around in a built image. The disk is booted through a
// throwaway overlay in outDir, as in [Boot], so the image is never
// written. It returns when QEMU exits; there is no timeout and no check.
func Interactive(ctx context.Context, m Machine, outDir string, stdin io.Reader, stdout, stderr io.Writer) error {
	m = m.withDefaults()
	if err := m.validate(); err != nil {
		return err
	}
	accel, _ := DetectAccel(m.Arch)
	if m.Accel != "" {
		accel = m.Accel
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	args, err := m.args(ctx, outDir, accel)
	if err != nil {
		return err
	}
	for i := range args {
		if args[i] == "-serial" && i+1 < len(args) {
			args[i+1] = "mon:stdio"
		}
	}
	cmd := exec.CommandContext(ctx, m.QEMU, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("testbed: %s: %w", m.QEMU, err)
	}
	return nil
}
