// Command cfs-init is the /init of cfs-compose's builtin initramfs: a
// static program (CGO_ENABLED=0) that mounts the API filesystems, loads the
// kernel modules listed in /etc/cfs-init.json, finds the root partition
// (GPT partition name "root", else the root partition type), verifies the
// composefs image named by the kernel command line (its fs-verity digest,
// and in signed mode a detached signature by the embedded key), enables
// fs-verity on the object store on first boot, mounts the composefs root
// (EROFS + overlayfs with the object store as a data-only layer), a
// writable /etc overlay and the shared /var, then switches root and
// executes the image's init.
//
// With composefs disabled in its configuration it mounts the plain
// deployment tree instead. In ostree mode (deploy.backend = "ostree") it
// does ostree-prepare-root's work: it follows ostree= to the deployment,
// checks the commit's composefs digest against composefs= and the
// deployment's .ostree.cfs against both, mounts that image over the
// repository's objects (or, composefs disabled, the deployment directory),
// binds the deployment's /etc and the stateroot's /var and writes
// /run/ostree-booted for libostree. Anything wrong is printed on the console as
// "cfs-init: FATAL: <reason>" and the machine powers off: an unverified
// root is never booted. docs/boot-chain.md describes the behaviour, the
// command-line arguments and the on-disk layout.
package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "cfs-init: this is the initramfs /init of cfs-compose; it only runs as process 1 (see docs/boot-chain.md)")
		os.Exit(2)
	}
	b := newBooter(linuxSystem{}, "/", os.Stdout)
	err := b.boot(os.Args[1:])
	fatal(err)
}

// fatal prints the reason plainly on the console and powers the machine
// off. It never returns.
func fatal(err error) {
	fmt.Fprintf(os.Stdout, "cfs-init: FATAL: %v\n", err)
	fmt.Fprintln(os.Stdout, "cfs-init: refusing to boot; powering off")
	unix.IoctlSetInt(1, unix.TCSBRK, 1) // drain the console
	time.Sleep(200 * time.Millisecond)
	unix.Sync()
	for {
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		time.Sleep(time.Second)
	}
}
