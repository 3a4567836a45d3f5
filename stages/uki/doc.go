// Package uki is the uki stage: it assembles the Unified Kernel Image from
// the image's kernel and EFI stub (or a stub on the build host), the
// initramfs stage's output, the image's os-release and the kernel command
// line carrying the composefs digest, and Authenticode-signs it with the
// Secure Boot db key when the manifest configures one.
//
// The parts follow the stage shape of the repository:
//
//   - [Config] (config.go): the resolved config; [Config.CacheKey] keeps the
//     host paths of the stub and the keys out of the cache key and keeps
//     the stub's SHA-256 and the db certificate's fingerprint in.
//   - [Stage.Plan] / [Resolve] (plan.go): skipped when uki { enabled =
//     false }; checks the command line arguments, reads and checks a host
//     stub (PE32+ for the right machine), and loads the Secure Boot
//     certificate and key (so an unreadable, malformed or mismatched key is
//     reported before any stage runs).
//   - [Stage.Run] (run.go): internal/uki.Build, then
//     signing/secureboot.SignPE when signing; the output "uki", published
//     as <Product>-<Name>-<Release>.<arch>.efi.
//
// The command line is the manifest's kernel.cmdline followed by
// composefs=<hex> when the composefs stage produced a digest (inserted
// before a "--" that starts init's arguments); with the ostree deployment
// backend it is the ostree stage's deployment command line (root=, rw,
// kernel.cmdline, ostree=), so the image's own initramfs boots straight
// into the deployment. .uname is the kernel
// version, .osrel the image's os-release. See docs/boot-chain.md for the
// PE layout and docs/stages.md for the stage contract.
package uki
