package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// QEMU must not outlive the build that started it, even when the build is
// killed with SIGKILL and has no chance to clean up. Three mechanisms, each
// covering what the one before cannot:
//
//   - QEMU is started with the parent-death signal SIGKILL
//     (PR_SET_PDEATHSIG), from a goroutine locked to its OS thread for
//     QEMU's whole life: the kernel sends the signal when the creating
//     thread exits, so the thread must not go back to Go's pool (where a
//     locked goroutine's exit would end it) before QEMU has exited.
//   - A CPU-time limit (RLIMIT_CPU) set on the QEMU process: the kernel
//     kills QEMU once it has used the boot's time budget (timeout plus
//     graces plus a margin, times its vCPUs), whatever happens to the
//     build. Under TCG, QEMU's CPU time tracks wall time.
//   - A pidfile per running QEMU in [Machine.RunDir], holding the QEMU and
//     parent pids and start times. Every Boot first reaps QEMUs whose
//     parent is gone (a QEMU with a live parent belongs to another build
//     and is left alone).

// DefaultRunDir is where running QEMUs are recorded when [Machine.RunDir]
// is empty.
func DefaultRunDir() string { return filepath.Join(os.TempDir(), "cfs-compose-qemu") }

// qemuRecord is the content of a pidfile: "qemu-pid qemu-start parent-pid
// parent-start" (start times in clock ticks since boot, from
// /proc/PID/stat), so a recycled pid is never taken for the QEMU.
type qemuRecord struct {
	pid, parent           int
	pidStart, parentStart uint64
}

func (r qemuRecord) String() string {
	return fmt.Sprintf("%d %d %d %d\n", r.pid, r.pidStart, r.parent, r.parentStart)
}

func parseQEMURecord(b []byte) (qemuRecord, error) {
	var r qemuRecord
	if _, err := fmt.Sscanf(string(b), "%d %d %d %d", &r.pid, &r.pidStart, &r.parent, &r.parentStart); err != nil {
		return r, fmt.Errorf("testbed: bad QEMU pidfile: %w", err)
	}
	return r, nil
}

// procStart returns a process's start time (field 22 of /proc/PID/stat),
// or false when there is no such process.
func procStart(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; fields resume after ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

// alive reports whether pid is the process that started at start.
func alive(pid int, start uint64) bool {
	s, ok := procStart(pid)
	return ok && s == start
}

// ReapStaleQEMU kills the QEMUs recorded in dir whose parent process is
// gone (their builds were killed) and removes their pidfiles, and the
// pidfiles of QEMUs that are gone. It returns the pids it killed.
func ReapStaleQEMU(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var killed []int
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".pid") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		r, err := parseQEMURecord(b)
		switch {
		case err != nil:
			os.Remove(p)
		case !alive(r.pid, r.pidStart):
			os.Remove(p) // QEMU is gone
		case alive(r.parent, r.parentStart):
			// another live build's QEMU
		default:
			syscall.Kill(-r.pid, syscall.SIGKILL) // its process group (Setpgid)
			syscall.Kill(r.pid, syscall.SIGKILL)
			killed = append(killed, r.pid)
			os.Remove(p)
		}
	}
	return killed, nil
}

// cpuLimit is the CPU-time budget, in seconds, QEMU gets for machine m.
func cpuLimit(m Machine) uint64 {
	budget := m.Timeout + m.PowerOffGrace + m.FatalGrace + panicGrace + time.Minute
	return uint64(budget.Seconds()+0.5) * uint64(max(m.CPUs, 1)+1)
}

// qemuProcess is a started QEMU: Wait on exited, and Release the pidfile
// once it has exited.
type qemuProcess struct {
	cmd     *exec.Cmd
	exited  chan error // receives cmd.Wait's result once
	pidfile string
}

// startQEMU starts cmd (which must not have been started) as described
// above, after reaping stale QEMUs in runDir.
func startQEMU(cmd *exec.Cmd, m Machine) (*qemuProcess, error) {
	runDir := m.RunDir
	if runDir == "" {
		runDir = DefaultRunDir()
	}
	if _, err := ReapStaleQEMU(runDir); err != nil {
		return nil, fmt.Errorf("testbed: reaping stale QEMU processes in %s: %w", runDir, err)
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL

	qp := &qemuProcess{cmd: cmd, exited: make(chan error, 1)}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal follows this thread: keep it (and this
		// goroutine on it) until QEMU has exited.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		qp.exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	lim := cpuLimit(m)
	// ESRCH: QEMU has already exited (it failed at once); its exit status
	// tells why.
	if err := unix.Prlimit(pid, unix.RLIMIT_CPU, &unix.Rlimit{Cur: lim, Max: lim + 5}, nil); err != nil && !errors.Is(err, unix.ESRCH) {
		qp.kill()
		<-qp.exited
		return nil, fmt.Errorf("testbed: limiting QEMU's CPU time: %w", err)
	}
	rec := qemuRecord{pid: pid, parent: os.Getpid()}
	rec.pidStart, _ = procStart(pid)
	rec.parentStart, _ = procStart(os.Getpid())
	qp.pidfile = filepath.Join(runDir, strconv.Itoa(pid)+".pid")
	if err := os.WriteFile(qp.pidfile, []byte(rec.String()), 0o644); err != nil {
		qp.kill()
		<-qp.exited
		return nil, fmt.Errorf("testbed: recording QEMU: %w", err)
	}
	return qp, nil
}

// kill kills QEMU's process group.
func (qp *qemuProcess) kill() {
	syscall.Kill(-qp.cmd.Process.Pid, syscall.SIGKILL)
}

// release removes the pidfile; call it once QEMU has exited.
func (qp *qemuProcess) release() {
	if qp.pidfile != "" {
		os.Remove(qp.pidfile)
	}
}
