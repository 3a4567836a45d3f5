// Package checks registers the testbed's host-side checks with
// testbed.DefaultRegistry in init(). Import it for its side effect:
//
//	import _ "github.com/cfs-compose/cfs-compose/testbed/checks"
//
// Topic files: boot.go (the boot reached the agent, or the firmware
// refused it), rootfs.go (composefs or plain root, /usr, /etc, /var),
// firmware.go (UEFI and Secure Boot state). Most checks read the result of
// the guest agent's check of the same name and add what only the host
// knows (the expected digest, the expected Secure Boot state).
package checks
