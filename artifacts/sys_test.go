package artifacts

import (
	"syscall"
	"testing"
)

type syscallStat struct{}

// blocks returns the 512-byte blocks a file allocates.
func (syscallStat) blocks(t *testing.T, p string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks
}
