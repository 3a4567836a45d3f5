package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/testbed/protocol"
)

func TestBootedDeployment(t *testing.T) {
	tests := []struct {
		name, status, want string
	}{
		{"one deployment", "* debian 536e703e6eac410e7083796edde34845577a5c8db5960a4f9772c687dcf9b98d.0\n    origin refspec: debian/x86_64\n",
			"debian 536e703e6eac410e7083796edde34845577a5c8db5960a4f9772c687dcf9b98d.0"},
		{"staged and rollback around it", "  fedora aaaa.0 (staged)\n* fedora bbbb.1\n    Version: 41\n  fedora cccc.0 (rollback)\n", "fedora bbbb.1"},
		{"none booted", "  fedora aaaa.0\n", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bootedDeployment(tt.status)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("bootedDeployment = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("bootedDeployment = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// fakeCommands replaces runCommand with canned outputs keyed by the
// command line; an unknown command fails.
func fakeCommands(t *testing.T, out map[string]string) {
	old := runCommand
	t.Cleanup(func() { runCommand = old })
	runCommand = func(name string, args ...string) (string, error) {
		cl := strings.Join(append([]string{name}, args...), " ")
		if o, ok := out[cl]; ok {
			return o, nil
		}
		return "", errors.New("no such command: " + cl)
	}
}

const (
	journalCmdline = "journalctl -b -q --no-pager -o cat -u dracut-cmdline.service"
	journalPrepare = "journalctl -b -q --no-pager -o cat -u ostree-prepare-root.service"
	statusCmd      = "ostree admin status"
)

func TestOstreeChecks(t *testing.T) {
	finishedCmdline := "Starting dracut-cmdline.service - dracut cmdline hook...\nFinished dracut-cmdline.service - dracut cmdline hook.\n"
	finishedPrepare := "Starting ostree-prepare-root.service - OSTree Prepare OS/...\nFinished ostree-prepare-root.service - OSTree Prepare OS/.\n"
	tests := []struct {
		name           string
		ostree, image  bool
		files          []string
		cmds           map[string]string
		booted, initrd protocol.Status
		detail         string
	}{
		{name: "not expected", booted: protocol.Skip, initrd: protocol.Skip},
		{name: "dracut booted the deployment", ostree: true, image: true, files: []string{ostreeBootedMarker},
			cmds:   map[string]string{statusCmd: "* debian abcd.0\n", journalCmdline: finishedCmdline, journalPrepare: finishedPrepare},
			booted: protocol.Pass, initrd: protocol.Pass, detail: "debian abcd.0"},
		{name: "builtin initramfs records", ostree: true, image: true, files: []string{ostreeBootedMarker, "/run/cfs/composefs-digest"},
			cmds:   map[string]string{statusCmd: "* debian abcd.0\n", journalCmdline: finishedCmdline, journalPrepare: finishedPrepare},
			booted: protocol.Pass, initrd: protocol.Fail, detail: "/run/cfs exists"},
		{name: "prepare-root never ran", ostree: true, image: true,
			cmds:   map[string]string{statusCmd: "", journalCmdline: finishedCmdline, journalPrepare: "Starting ostree-prepare-root.service\n"},
			booted: protocol.Fail, initrd: protocol.Fail, detail: "ostree-prepare-root.service finishing"},
		{name: "image initramfs, no ostree", image: true,
			cmds:   map[string]string{journalCmdline: finishedCmdline},
			booted: protocol.Skip, initrd: protocol.Pass, detail: "dracut-cmdline.service"},
		{name: "ostree status fails", ostree: true, files: []string{ostreeBootedMarker},
			cmds:   map[string]string{},
			booted: protocol.Fail, initrd: protocol.Skip, detail: "no such command: ostree admin status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newFakeRoot(t, "root=LABEL=root ostree=/ostree/boot.1/debian/x/0", "")
			for _, f := range tt.files {
				r.write(f, "")
			}
			fakeCommands(t, tt.cmds)
			e := loadEnv(r.dir)
			e.ostree, e.imageInitramfs = tt.ostree, tt.image
			b, i := checkOstreeBooted(e, modePlain), checkImageInitramfs(e, modePlain)
			if b.status != tt.booted || i.status != tt.initrd {
				t.Fatalf("ostree-booted %s (%s), image-initramfs %s (%s); want %s, %s", b.status, b.detail, i.status, i.detail, tt.booted, tt.initrd)
			}
			if !strings.Contains(b.detail+"\n"+i.detail, tt.detail) {
				t.Errorf("details %q / %q lack %q", b.detail, i.detail, tt.detail)
			}
		})
	}
}

func TestOstreeSysroot(t *testing.T) {
	mi := "1 1 0:2 / / rw - ext4 /dev/vda2 rw\n2 1 253:2 / /sysroot ro,relatime - ext4 /dev/vda2 ro\n"
	r := newFakeRoot(t, "", mi)
	e := loadEnv(r.dir)
	e.ostree = true
	if o := checkSysroot(e, modePlain); o.status != protocol.Fail || !strings.Contains(o.detail, "ostree/repo/config") {
		t.Fatalf("sysroot without a repository: %s %s", o.status, o.detail)
	}
	r.write("/sysroot/ostree/repo/config", "[core]\nmode=bare\n")
	// The fake /sysroot is a writable directory, so the check gets as far
	// as the write probe, past the layout test.
	if o := checkSysroot(e, modePlain); !strings.Contains(o.detail, "writing to /sysroot") {
		t.Fatalf("sysroot with a repository: %s %s", o.status, o.detail)
	}
}
