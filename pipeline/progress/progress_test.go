package progress

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/pipeline"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here (%v): the live display cannot be exercised", err)
	}
	var unlock int32
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal(e)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ws := &unix.Winsize{Row: 30, Col: 120}
	unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, ws)
	return m, s
}

func events(stage string) []pipeline.Event {
	t := time.Now()
	return []pipeline.Event{
		{Type: pipeline.EventPlan, Total: 2, Time: t},
		{Type: pipeline.EventStart, Stage: stage, Kind: "composefs", Targets: []string{"coreos/x86_64"}, Time: t},
		{Type: pipeline.EventProgress, Stage: stage, Done: 512 << 10, Total: 1 << 20, Time: t},
		{Type: pipeline.EventFinish, Stage: stage, Kind: "composefs", Targets: []string{"coreos/x86_64"}, Status: "ran", Bytes: 1 << 20, Time: t.Add(time.Second)},
	}
}

// TestTerminalKeepsLogLines drives the live display on a real
// pseudo-terminal and checks that log lines written while bars run reach
// the terminal intact.
func TestTerminalKeepsLogLines(t *testing.T) {
	master, slave := openPTY(t)
	defer master.Close()
	var got bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(&got, master)
	}()
	d := New(slave, true)
	log := zerolog.New(zerolog.ConsoleWriter{Out: d.Writer(), NoColor: true}).With().Timestamp().Logger()
	d.SetLogger(log)
	evs := events("s1")
	for _, ev := range evs[:3] {
		d.Event(ev)
	}
	log.Info().Msg("a log line while the bar runs")
	time.Sleep(400 * time.Millisecond) // let the bar render
	d.Event(evs[3])
	d.Close()
	slave.Close()
	master.SetReadDeadline(time.Now().Add(2 * time.Second))
	wg.Wait()
	out := got.String()
	for _, want := range []string{"a log line while the bar runs", "compose started", "stage finished", "composefs coreos/x86_64", "status=ran", "written=\"1.0 MiB\""} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, out)
		}
	}
}

// TestPlainOutput checks the non-terminal path: no escape sequences, one
// line per event, nothing dropped.
func TestPlainOutput(t *testing.T) {
	var buf bytes.Buffer
	d := New(&buf, false)
	if d.Writer() != &buf {
		t.Fatal("non-terminal log writer must bypass mpb")
	}
	d.SetLogger(zerolog.New(zerolog.ConsoleWriter{Out: d.Writer(), NoColor: true}))
	for _, ev := range events("s1") {
		d.Event(ev)
	}
	d.Close()
	out := buf.String()
	if strings.Contains(out, "\x1b[") {
		t.Errorf("escape codes in plain output: %q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "stage started") || !strings.Contains(lines[2], "took_s=1") {
		t.Errorf("plain output:\n%s", out)
	}
}
