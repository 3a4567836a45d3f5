package testbed

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestQEMUDiesWithParent kills a process running a boot with SIGKILL: the
// fake QEMU must die with it (parent-death signal), it must have carried
// a CPU-time limit of its own, and its pidfile must be reaped by the next
// boot (issue 13 item 22).
func TestQEMUDiesWithParent(t *testing.T) {
	if os.Getenv("CFS_TESTBED_HELPER") == "boot" {
		// The helper: boot a QEMU that hangs, until killed.
		q := os.Getenv("CFS_TESTBED_FAKE_QEMU")
		Boot(context.Background(), Machine{Arch: "x86_64", QEMU: q, Kernel: q, Append: "console=ttyS0",
			Timeout: time.Hour, Accel: AccelTCG, RunDir: os.Getenv("CFS_TESTBED_RUNDIR")}, t.TempDir())
		os.Exit(0)
	}
	runDir := t.TempDir()
	q := fakeQEMU(t, "exec sleep 600")
	helper := exec.Command(os.Args[0], "-test.run=^TestQEMUDiesWithParent$", "-test.count=1")
	helper.Env = append(os.Environ(), "CFS_TESTBED_HELPER=boot", "CFS_TESTBED_FAKE_QEMU="+q, "CFS_TESTBED_RUNDIR="+runDir)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Process.Kill()

	// Wait for the helper's QEMU to be recorded.
	var rec qemuRecord
	deadline := time.Now().Add(20 * time.Second)
	for {
		ents, _ := filepath.Glob(filepath.Join(runDir, "*.pid"))
		if len(ents) == 1 {
			b, _ := os.ReadFile(ents[0])
			if r, err := parseQEMURecord(b); err == nil {
				rec = r
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper's QEMU was never recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rec.parent != helper.Process.Pid || !alive(rec.pid, rec.pidStart) {
		t.Fatalf("record %+v, helper %d", rec, helper.Process.Pid)
	}
	limits, err := os.ReadFile("/proc/" + strconv.Itoa(rec.pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(limits), "Max cpu time") || strings.Contains(firstLine(string(limits), "Max cpu time"), "unlimited") {
		t.Errorf("QEMU has no CPU-time limit of its own:\n%s", limits)
	}

	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for alive(rec.pid, rec.pidStart) {
		if time.Now().After(deadline) {
			syscall.Kill(rec.pid, syscall.SIGKILL)
			t.Fatalf("QEMU (pid %d) outlived its killed parent", rec.pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The next boot's reaping removes the dead QEMU's pidfile.
	if _, err := ReapStaleQEMU(runDir); err != nil {
		t.Fatal(err)
	}
	if ents, _ := filepath.Glob(filepath.Join(runDir, "*.pid")); len(ents) != 0 {
		t.Errorf("pidfiles left: %v", ents)
	}
}

func firstLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestReapStaleQEMU: a recorded QEMU whose parent is gone is killed; one
// whose parent lives (another build's) is left alone; records of dead or
// unparsable processes are removed.
func TestReapStaleQEMU(t *testing.T) {
	self := os.Getpid()
	selfStart, ok := procStart(self)
	if !ok {
		t.Fatal("no /proc/self/stat")
	}
	tests := []struct {
		name       string
		running    bool // a sleeping stand-in for QEMU
		parentDead bool
		content    string // pidfile content when not running
		wantKilled bool
		wantFile   bool
	}{
		{name: "orphan", running: true, parentDead: true, wantKilled: true},
		{name: "another build's", running: true, wantFile: true},
		{name: "QEMU gone", content: "999999999 1 1 1\n"},
		{name: "garbage", content: "nonsense\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "x.pid")
			var cmd *exec.Cmd
			if tc.running {
				cmd = exec.Command("sleep", "600")
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer cmd.Process.Kill()
				start, _ := procStart(cmd.Process.Pid)
				parentStart := selfStart
				if tc.parentDead {
					parentStart = selfStart + 12345 // the pid is reused by another process
				}
				tc.content = qemuRecord{pid: cmd.Process.Pid, pidStart: start, parent: self, parentStart: parentStart}.String()
			}
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			killed, err := ReapStaleQEMU(dir)
			if err != nil {
				t.Fatal(err)
			}
			if (len(killed) == 1) != tc.wantKilled {
				t.Errorf("killed %v", killed)
			}
			if _, err := os.Stat(p); (err == nil) != tc.wantFile {
				t.Errorf("pidfile kept: %v, want %v", err == nil, tc.wantFile)
			}
			if cmd != nil {
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case <-done:
					if !tc.wantKilled {
						t.Error("a live build's QEMU was killed")
					}
				case <-time.After(500 * time.Millisecond):
					if tc.wantKilled {
						t.Error("the orphan QEMU still runs")
					}
				}
			}
		})
	}
}
