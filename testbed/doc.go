// Package testbed boots cfs-compose images in QEMU and checks them, in the
// shape of coreos-assembler's kola harness: checks are data ([Check])
// registered by name, each runs with one handle ([H]) in the manner of
// package testing, and results go to pluggable [Reporter]s (console, JSON,
// JUnit XML).
//
// A boot test has two halves. In the guest, the test agent (testbed/agent,
// the fixture image's /usr/sbin/init) runs its checks and reports them on
// the serial console in the line protocol of testbed/protocol, then powers
// off. On the host, [Boot] runs QEMU ([Machine]: firmware, accelerator,
// direct kernel or disk through a throwaway qcow2 overlay, a timeout),
// captures the console with per-line timestamps, recognises firmware
// refusals and initramfs failures and stops QEMU at once, and parses the
// agent's report into a [BootResult]. QEMU dies with the process that
// started it (parent-death signal, its own CPU-time limit, and pidfiles in
// [Machine.RunDir] that the next boot reaps with [ReapStaleQEMU]). A
// [Suite] then runs the registered
// host checks that apply to the [Target] (its [Feature]s) against that
// result and reports them.
//
// The host checks live in topic files of package testbed/checks, which
// registers them in init(); import it for its side effect.
//
// Files: check.go (Check, Registry), match.go (selection), h.go (H),
// suite.go (Suite), qemu.go (Machine, Boot), qemuproc.go (QEMU's process
// lifetime), console.go (serial capture),
// firmware.go, accel.go, secureboot.go (variable store enrollment),
// reporter*.go (Reporter and its implementations).
package testbed
