package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

// ErrNoQEMU means the QEMU system emulator for the guest arch is missing.
var ErrNoQEMU = errors.New("testbed: QEMU not found")

// Machine describes one QEMU virtual machine boot.
type Machine struct {
	Arch      string // "x86_64" or "aarch64"
	MemoryMiB int    // default 1024
	CPUs      int    // default 1 (as fast as 2 under TCG, half the host CPU)
	Accel     string // AccelTCG, AccelKVM or "" to detect (see DetectAccel)
	CPU       string // -cpu; default: aarch64 "max,pauth-impdef=on" (TCG) or "host" (KVM); x86_64 QEMU's default

	// Firmware boots through UEFI; nil boots x86_64 through SeaBIOS and
	// aarch64 without firmware (both need Kernel then).
	Firmware *Firmware

	// Direct kernel boot. With Firmware on x86_64, OVMF loads the kernel
	// (and verifies it under Secure Boot).
	Kernel string
	Initrd string
	Append string

	// Disk is a raw or qcow2 disk image. It is never written: the guest
	// sees a qcow2 overlay created for the boot and deleted after it.
	Disk       string
	DiskFormat string // "raw" (default) or "qcow2"
	// Overlay, when set, is the qcow2 overlay over Disk to boot through
	// instead of a throwaway one: it is created when missing and kept
	// after the boot, so a second boot with the same Overlay sees what the
	// first one wrote (Disk itself is still never written).
	Overlay string

	Timeout time.Duration // whole boot; default 5 minutes
	// PowerOffGrace is how long QEMU may run on after the agent's report
	// ended before the boot counts as hung; default 15 s.
	PowerOffGrace time.Duration
	// FatalGrace is how long QEMU may run on after "cfs-init: FATAL" so
	// that the initramfs can power the machine off by itself (tests of
	// its halt path); 0 stops QEMU at once.
	FatalGrace time.Duration
	// StopAt, when set, is console text at which QEMU is stopped at once
	// with OutcomeStopped (also on an unterminated line, like a firmware
	// prompt).
	StopAt    string
	QEMU      string   // emulator binary; default qemu-system-<arch>
	QEMUImg   string   // qemu-img binary; default qemu-img
	ExtraArgs []string // appended to the command line
	// RunDir records running QEMUs (one pidfile each) so that a later
	// Boot reaps those whose build was killed; default [DefaultRunDir].
	RunDir string
}

// Outcome is how a boot ended.
type Outcome int

// Boot outcomes.
const (
	OutcomePoweredOff Outcome = iota // QEMU exited by itself (guest power-off or reboot with -no-reboot)
	OutcomeRefused                   // the firmware refused the image (Access Denied, …)
	OutcomeInitFatal                 // the builtin initramfs printed cfs-init: FATAL
	OutcomePanic                     // the kernel panicked
	OutcomeTimeout                   // the timeout expired (or the guest did not power off after its report)
	OutcomeQEMUError                 // QEMU exited with an error of its own
	OutcomeStopped                   // the console showed Machine.StopAt
)

var outcomeNames = [...]string{"powered-off", "refused", "init-fatal", "panic", "timeout", "qemu-error", "stopped"}

// String returns the outcome's name ("powered-off", "refused", …).
func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// MarshalText encodes the outcome as its name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText decodes an outcome name.
func (o *Outcome) UnmarshalText(b []byte) error {
	for i, n := range outcomeNames {
		if n == string(b) {
			*o = Outcome(i)
			return nil
		}
	}
	return fmt.Errorf("testbed: unknown boot outcome %q", b)
}

// BootResult is what one boot produced.
type BootResult struct {
	Arch       string          `json:"arch"`
	Accel      string          `json:"accel"`
	Args       []string        `json:"args"`        // QEMU argv
	OutputDir  string          `json:"output_dir"`  // console log, command line, vars copy
	ConsoleLog string          `json:"console_log"` // timestamped serial log
	Lines      []ConsoleLine   `json:"-"`
	Report     protocol.Report `json:"report"`
	Outcome    Outcome         `json:"outcome"`
	Reason     string          `json:"reason"`        // what decided the outcome
	Duration   time.Duration   `json:"duration_ns"`   // QEMU spawn to exit
	VerdictAt  time.Duration   `json:"verdict_at_ns"` // spawn to report end / refusal / fatal line (0: none)
	// BegunAt is the time from QEMU's spawn to the agent's first report
	// line (CFS-TEST-BEGIN; 0: none). In a real OS the agent's unit is
	// ordered after multi-user.target (AgentDelivery), so this is when
	// systemd reached multi-user.target, plus the unit's start (mounting
	// the agent disk, executing the agent); in the busybox fixture the
	// agent is PID 1 and this is when the image's init started.
	BegunAt  time.Duration `json:"begun_at_ns"`
	ExitCode int           `json:"exit_code"`        // -1 when killed
	Stderr   string        `json:"stderr,omitempty"` // QEMU's stderr (bounded)
	// Previous is the first boot of the same disk when this is the second
	// ([BootTwice]); nil otherwise.
	Previous *BootResult `json:"previous,omitempty"`
}

// Tail returns the last n console lines with their timestamps.
func (b *BootResult) Tail(n int) []string {
	start := max(len(b.Lines)-n, 0)
	out := make([]string, 0, len(b.Lines)-start)
	for _, l := range b.Lines[start:] {
		out = append(out, fmt.Sprintf("[%8.3f] %s", l.At.Seconds(), l.Text))
	}
	return out
}

// Find returns the first console line containing s.
func (b *BootResult) Find(s string) (ConsoleLine, bool) {
	for _, l := range b.Lines {
		if strings.Contains(l.Text, s) {
			return l, true
		}
	}
	return ConsoleLine{}, false
}

// DefaultConsole returns the kernel console argument for an arch
// ("console=ttyS0" or "console=ttyAMA0").
func DefaultConsole(name string) string {
	if a, err := arch.Lookup(name); err == nil {
		return a.KernelConsole()
	}
	return arch.X86_64.KernelConsole()
}

// panicGrace is how long QEMU runs on after a kernel panic line, to
// capture the trace.
const panicGrace = 2 * time.Second

func (m Machine) withDefaults() Machine {
	if m.MemoryMiB == 0 {
		m.MemoryMiB = 1024
	}
	if m.CPUs == 0 {
		m.CPUs = 1
	}
	if m.Timeout == 0 {
		m.Timeout = 5 * time.Minute
	}
	if m.PowerOffGrace == 0 {
		m.PowerOffGrace = 15 * time.Second
	}
	if m.DiskFormat == "" {
		m.DiskFormat = "raw"
	}
	if a, err := arch.Lookup(m.Arch); m.QEMU == "" && err == nil {
		m.QEMU = a.QEMU
	}
	if m.QEMUImg == "" {
		m.QEMUImg = "qemu-img"
	}
	return m
}

func (m Machine) validate() error {
	switch {
	case !slices.Contains(arch.Names(), m.Arch):
		return fmt.Errorf("testbed: unsupported arch %q (want %s)", m.Arch, strings.Join(arch.Names(), " or "))
	case m.Kernel == "" && m.Disk == "":
		return fmt.Errorf("testbed: machine has neither a kernel nor a disk to boot")
	case m.Firmware == nil && m.Kernel == "":
		return fmt.Errorf("testbed: booting a disk needs UEFI firmware")
	case m.Initrd != "" && m.Kernel == "":
		return fmt.Errorf("testbed: initrd given without a kernel")
	case m.DiskFormat != "raw" && m.DiskFormat != "qcow2":
		return fmt.Errorf("testbed: disk format %q (want raw or qcow2)", m.DiskFormat)
	case m.Overlay != "" && m.Disk == "":
		return fmt.Errorf("testbed: overlay %s given without a disk", m.Overlay)
	}
	for _, f := range []string{m.Kernel, m.Initrd, m.Disk} {
		if f != "" && !isFile(f) {
			return fmt.Errorf("testbed: %s: not a file", f)
		}
	}
	return nil
}

// args prepares the per-boot files in outDir (variable store copy, disk
// overlay) and returns the QEMU argv without the binary.
func (m Machine) args(ctx context.Context, outDir, accel string) ([]string, error) {
	a := []string{"-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
		"-m", fmt.Sprint(m.MemoryMiB), "-smp", fmt.Sprint(m.CPUs), "-accel", accel}
	cpu := m.CPU
	switch ar, _ := arch.Lookup(m.Arch); ar {
	case arch.X86_64:
		machine := ar.QEMUMachine
		if m.Firmware != nil && m.Firmware.SMM {
			machine += ",smm=on"
			a = append(a, "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		a = append(a, "-machine", machine)
		if cpu == "" && accel == AccelKVM {
			cpu = "host"
		}
	case arch.Aarch64:
		a = append(a, "-machine", ar.QEMUMachine)
		if cpu == "" {
			cpu = "max,pauth-impdef=on" // plain max is 2.5x slower under TCG (QARMA)
			if accel == AccelKVM {
				cpu = "host"
			}
		}
	}
	if cpu != "" {
		a = append(a, "-cpu", cpu)
	}
	if fw := m.Firmware; fw != nil {
		vars := filepath.Join(outDir, "vars.fd")
		if err := copyFile(fw.VarsTemplate, vars); err != nil {
			return nil, fmt.Errorf("copying firmware variables: %w", err)
		}
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+fw.Code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	if m.Kernel != "" {
		a = append(a, "-kernel", m.Kernel)
		if m.Initrd != "" {
			a = append(a, "-initrd", m.Initrd)
		}
		if m.Append != "" {
			a = append(a, "-append", m.Append)
		}
	}
	if m.Disk != "" {
		overlay := m.Overlay
		if overlay == "" {
			overlay = filepath.Join(outDir, "disk-overlay.qcow2")
			os.Remove(overlay)
		}
		if !isFile(overlay) {
			if err := createOverlay(ctx, m.QEMUImg, m.Disk, m.DiskFormat, overlay); err != nil {
				return nil, err
			}
		}
		a = append(a, "-drive", "file="+overlay+",format=qcow2,if=virtio")
	}
	return append(a, m.ExtraArgs...), nil
}

// createOverlay makes a qcow2 overlay over disk so the guest never writes
// the artifact.
func createOverlay(ctx context.Context, qemuImg, disk, format, overlay string) error {
	abs, err := filepath.Abs(disk)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2", "-b", abs, "-F", format, overlay).CombinedOutput()
	if err != nil {
		return fmt.Errorf("creating disk overlay over %s: %w: %s", disk, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Boot starts QEMU for m, captures the serial console into
// outDir/console.log (one line per console line, prefixed by the seconds
// since QEMU started), and waits until QEMU exits, the timeout expires, or
// the console shows a verdict that never powers the machine off (a
// firmware refusal, cfs-init: FATAL, a kernel panic), in which case QEMU's
// process group is killed at once. QEMU never outlives the calling
// process, even one killed with SIGKILL: it gets the parent-death signal,
// a CPU-time limit of its own, and a pidfile in [Machine.RunDir] from which
// the next Boot reaps it (see qemuproc.go). The agent's report is parsed
// from the console. The error is for problems of the harness itself (missing QEMU,
// bad machine); what happened in the guest is in the result.
func Boot(ctx context.Context, m Machine, outDir string) (*BootResult, error) {
	m = m.withDefaults()
	if err := m.validate(); err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(m.QEMU)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoQEMU, m.QEMU, err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	accel := m.Accel
	if accel == "" {
		accel, _ = DetectAccel(m.Arch)
	}
	args, err := m.args(ctx, outDir, accel)
	if overlay := filepath.Join(outDir, "disk-overlay.qcow2"); m.Disk != "" && m.Overlay == "" {
		defer os.Remove(overlay)
	}
	if err != nil {
		return nil, err
	}
	res := &BootResult{Arch: m.Arch, Accel: accel, Args: append([]string{bin}, args...), OutputDir: outDir,
		ConsoleLog: filepath.Join(outDir, "console.log")}
	if err := os.WriteFile(filepath.Join(outDir, "qemu-cmdline.txt"), []byte(shellQuote(res.Args)+"\n"), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(res.ConsoleLog)
	if err != nil {
		return nil, err
	}
	defer logf.Close()

	cmd := exec.Command(bin, args...)
	start := time.Now()
	con := newConsole(logf, start)
	con.stopAt = m.StopAt
	var stderr boundedBuffer
	cmd.Stdout, cmd.Stderr = con, &stderr
	// QEMU dies with this process, is bounded in CPU time, and is recorded
	// for reaping (qemuproc.go).
	qp, err := startQEMU(cmd, m)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	defer qp.release()
	exited := qp.exited
	kill := qp.kill
	timeout := time.NewTimer(m.Timeout)
	defer timeout.Stop()
	var grace <-chan time.Time
	killed := false
	var waitErr error
loop:
	for {
		select {
		case waitErr = <-exited:
			break loop
		case ev := <-con.events:
			switch ev.kind {
			case eventReportEnd:
				res.VerdictAt = ev.at
				grace = time.After(m.PowerOffGrace)
			case eventRefused, eventStop:
				res.VerdictAt, res.Reason, res.Outcome = ev.at, ev.line, OutcomeRefused
				if ev.kind == eventStop {
					res.Outcome = OutcomeStopped
				}
				killed = true
				kill()
			case eventInitFatal:
				res.VerdictAt, res.Reason, res.Outcome = ev.at, ev.line, OutcomeInitFatal
				if m.FatalGrace > 0 {
					grace = time.After(m.FatalGrace)
					continue
				}
				killed = true
				kill()
			case eventPanic:
				res.VerdictAt, res.Reason, res.Outcome = ev.at, ev.line, OutcomePanic
				killed = true
				grace = time.After(panicGrace)
			}
		case <-grace:
			if res.Outcome == OutcomePoweredOff {
				res.Outcome, res.Reason = OutcomeTimeout, fmt.Sprintf("the guest did not power off within %s of its report", m.PowerOffGrace)
			}
			killed = true
			kill()
			grace = nil
		case <-timeout.C:
			res.Outcome, res.Reason = OutcomeTimeout, fmt.Sprintf("no verdict within %s", m.Timeout)
			killed = true
			kill()
		case <-ctx.Done():
			res.Outcome, res.Reason = OutcomeTimeout, "cancelled: "+ctx.Err().Error()
			killed = true
			kill()
		}
	}
	res.Duration = time.Since(start)
	// Kill whatever QEMU left in its process group.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if err := con.flush(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", res.ConsoleLog, err)
	}
	res.Lines, res.Report = con.snapshot()
	for _, l := range res.Lines {
		if strings.Contains(l.Text, protocol.MarkerBegin) {
			res.BegunAt = l.At
			break
		}
	}
	res.Stderr = stderr.String()
	res.ExitCode = cmd.ProcessState.ExitCode()
	if !killed && waitErr != nil && res.Outcome == OutcomePoweredOff {
		res.Outcome = OutcomeQEMUError
		res.Reason = fmt.Sprintf("%s exited: %v: %s", filepath.Base(bin), waitErr, strings.TrimSpace(res.Stderr))
	}
	if !killed && waitErr == nil && res.Outcome == OutcomePoweredOff {
		res.Reason = "QEMU exited after the guest powered off"
		if !res.Report.Ended {
			res.Reason = "QEMU exited without a complete agent report (guest reboot or power-off before the report)"
		}
	}
	if err := writeBootJSON(res); err != nil {
		return nil, err
	}
	return res, nil
}

func writeBootJSON(res *BootResult) error {
	b, err := jsonMarshalIndent(res)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(res.OutputDir, "boot.json"), b)
}

// boundedBuffer keeps the first 64 KiB written to it.
type boundedBuffer struct{ b bytes.Buffer }

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *boundedBuffer) String() string { return w.b.String() }

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// shellQuote renders argv for humans to paste into a shell.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=,:+@%", r))
		}) < 0 {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}
