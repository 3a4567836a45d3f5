package testbed

import (
	"context"
	"encoding/base64"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentUnitText(t *testing.T) {
	tests := []struct {
		name string
		o    AgentOptions
		exec string
	}{
		{"extra dirs", AgentOptions{ExtraDirs: []string{"/data", "/srv2"}}, "-systemd -console -poweroff -extra-dirs /data,/srv2"},
		{"tampered objects", AgentOptions{Tampered: []string{"/a", "/b"}, Removed: []string{"/c"}, Unverified: []string{"/d"}},
			"-systemd -console -poweroff -tampered /a,/b -removed /c -unverified /d"},
	}
	for _, tt := range tests {
		u := agentUnitText(tt.o)
		for _, want := range []string{"Type=exec", "After=multi-user.target", "LABEL=cfs-agent /run/cfs-agent",
			"ExecStart=/run/cfs-agent/cfs-agent " + tt.exec + "\n"} {
			if !strings.Contains(u, want) {
				t.Errorf("%s: unit lacks %q:\n%s", tt.name, want, u)
			}
		}
	}
}

func TestAgentDelivery(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 is not installed")
	}
	dir := t.TempDir()
	args, err := AgentDelivery(context.Background(), []byte("#!agent"), AgentOptions{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(args) != 6 || args[1] != "file="+filepath.Join(dir, "agent.img")+",format=raw,if=virtio,readonly=on" {
		t.Fatalf("args %q", args)
	}
	const prefix = "type=11,value=io.systemd.credential.binary:"
	creds := map[string]string{}
	for _, a := range []string{args[3], args[5]} {
		name, b64, ok := strings.Cut(strings.TrimPrefix(a, prefix), "=")
		v, err := base64.StdEncoding.DecodeString(b64)
		if !ok || err != nil || strings.Contains(a, ",,") {
			t.Fatalf("credential %q: %v", a, err)
		}
		creds[name] = string(v)
	}
	if !strings.Contains(creds["systemd.extra-unit.cfs-agent.service"], "ExecStart=/run/cfs-agent/cfs-agent") ||
		creds["systemd.unit-dropin.multi-user.target"] != "[Unit]\nWants=cfs-agent.service\n" {
		t.Errorf("credentials %q", creds)
	}
	if out, err := exec.Command("debugfs", "-R", "cat /cfs-agent", filepath.Join(dir, "agent.img")).Output(); err == nil && string(out) != "#!agent" {
		t.Errorf("the disk holds %q", out)
	}
}
