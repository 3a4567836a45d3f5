package boottest

import (
	"strings"
	"testing"
)

func TestAgentMode(t *testing.T) {
	for _, tt := range []struct {
		name, dump, want string
	}{
		{"systemd-sysv", "/ 0 40755 2 0 0 0 0.0 - - -\n/usr/sbin/init 20 120777 1 0 0 0 0.0 ../lib/systemd/systemd - -\n", AgentSystemd},
		{"fedora", "/usr/sbin/init 22 120777 1 0 0 0 0.0 /usr/lib/systemd/systemd - -\n", AgentSystemd},
		{"agent binary", "/usr/sbin/init 2314400 100755 1 0 0 0 0.0 ab/cdef - -\n", AgentPID1},
		{"busybox link", "/usr/sbin/init 16 120777 1 0 0 0 0.0 ../bin/busybox - -\n", AgentPID1},
		{"no init", "/ 0 40755 2 0 0 0 0.0 - - -\n", AgentPID1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AgentMode(strings.NewReader(tt.dump))
			if err != nil || got != tt.want {
				t.Errorf("AgentMode = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := AgentMode(strings.NewReader("/usr/sbin/init 1 zz 1 0 0 0 0.0 x - -\n")); err == nil {
		t.Error("a bad mode was accepted")
	}
}
