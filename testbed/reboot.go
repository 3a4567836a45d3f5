package testbed

import (
	"context"
	"errors"
	"os"
	"path/filepath"
)

// BootTwice boots m's disk twice through the same qcow2 overlay (the disk
// itself is never written), so the second boot sees what the first wrote:
// the first boot's files go to outDir/first-boot, the second's to
// outDir/second-boot. The overlay is m.Overlay when set (kept), else
// outDir/reboot-overlay.qcow2, made afresh and removed afterwards. The
// result is the second boot's, with the first in [BootResult.Previous];
// when the first boot does not power off after a complete agent report
// there is no point in a second one, and the first boot's result is
// returned (Previous nil), which the reboot checks fail on.
func BootTwice(ctx context.Context, m Machine, outDir string) (*BootResult, error) {
	if m.Disk == "" {
		return nil, errors.New("testbed: booting twice needs a disk")
	}
	if m.Overlay == "" {
		m.Overlay = filepath.Join(outDir, "reboot-overlay.qcow2")
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return nil, err
		}
		os.Remove(m.Overlay)
		defer os.Remove(m.Overlay)
	}
	first, err := Boot(ctx, m, filepath.Join(outDir, "first-boot"))
	if err != nil {
		return nil, err
	}
	if first.Outcome != OutcomePoweredOff || !first.Report.Ended {
		return first, nil
	}
	second, err := Boot(ctx, m, filepath.Join(outDir, "second-boot"))
	if err != nil {
		return nil, err
	}
	second.Previous = first
	return second, nil
}
