// Package initramfs is the initramfs stage: it makes the initramfs the UKI
// embeds, from the source stage's tree and image analysis.
//
// With initramfs { source = "builtin" } (the default) it writes
// cfs-compose's own initramfs: the static cfs-init binary for the target
// architecture as /init (embedded by [initbin]), the kernel modules needed
// to reach and mount the root taken from the image's kernel (resolved with
// internal/kmod against modules.dep or each module's .modinfo, built-in
// modules skipped, compressed modules decompressed), and
// etc/cfs-init.json with the composefs mode, the verity mode, the root
// partition label and, for signed composefs, the public key the digest
// signature is checked with (internal/initconfig). The cpio is
// deterministic (internal/initramfs), so the same image and settings give
// the same bytes.
//
// With initramfs { source = "image" } it copies the image's own
// /usr/lib/modules/<kver>/initramfs.img byte for byte.
//
// The parts follow the stage shape of the repository:
//
//   - [Config] (config.go): the resolved config.
//   - [Stage.Plan] / [Resolve] (plan.go): the module list (the base set
//     [BaseModules] plus initramfs.modules, names checked), the verity
//     mode, the public key read and checked from signing.pub (or
//     signing.key's .pub), the root partition label, and the SHA-256 of the
//     embedded cfs-init so a new init binary changes the cache key.
//   - [Stage.Run] (run.go): the output "initramfs" (a gzip newc cpio for
//     builtin; the image's file verbatim for image) and compose.json facts.
//
// The kernel is the one the source stage chose (the analysis's kernel,
// following source.kernel); the config carries source.kernel so that a
// different selection is a different cache key. See docs/boot-chain.md for
// the archive layout and docs/stages.md for the stage contract.
package initramfs
