// Package sysroot lays out an ostree sysroot in a directory (the future
// root partition) the way ostree 2025.2 does for `ostree admin init-fs`
// ([Init]), `ostree admin os-init STATEROOT` ([InitStateroot]) and the
// first `ostree admin deploy --os=STATEROOT [--karg-append=…]
// [--origin-file=…] COMMIT` ([Deploy]) of a commit already written to
// the sysroot's bare repository (package ostree's Writer). The result is
// what those commands write, file for file: paths, types, modes, owners,
// extended attributes, symbolic link targets, contents, the hard links of
// the checkout to the repository's content objects, and the immutable
// flag of the deployment directory (see TestOracle). Times that ostree
// takes from the clock are set to a given time instead, so the output is
// deterministic.
//
// For a container-image deployment the origin file is the one bootc
// writes ([ContainerOrigin]); with composefs, [Deploy] writes the
// deployment's .ostree.cfs and [ostree.Reader.ComposefsDigest] computes
// the commit metadata that names it before the commit is written.
//
// The calls come in this order: [Init]; optionally [Configure];
// [InitStateroot]; writing the commit with ostree.NewWriter on
// filepath.Join(dir, [RepoDir]) (WriteTree, then for composefs
// [ostree.Reader.ComposefsDigest] of the root and
// [ostree.ComposefsDigestEntry] in the commit metadata, then WriteCommit);
// then [Deploy]. After an error the sysroot is half written and should be
// discarded. Everything runs as root on a local directory; the functions
// are not safe for concurrent use on the same sysroot.
//
// # Coverage
//
// Reproduced: the epoch-0 and --modern (epoch 1) init-fs layouts; one
// stateroot; the first deployment of a sysroot (deploy serial 0, boot
// version 1, sub-boot version 1, bootserial 0, repository ref
// ostree/1/1/0); the kernel layout usr/lib/modules/KVER with vmlinuz,
// initramfs.img or initramfs (optional; without it the init= argument
// ostree adds), devicetree and .vmlinuz.hmac, and ostree's boot checksum
// over kernel, initramfs and device tree; the BLS entry with ostree's
// 2024.5+ name ostree-1.conf, title from os-release and the commit's
// version, and the aboot/abootcfg keys it always writes; /etc from
// /usr/etc (copies), an empty /etc in the commit; the stateroot /var
// filled from the commit's /var, and the legacy var directories when the
// commit has no usr/lib/tmpfiles.d; var/.ostree-selabeled; the backing
// directories (root-transient upper and work); the boot loader "none"
// (no grub2, syslinux, u-boot, zipl or aboot configuration: ostree then
// writes only BLS entries, boot/loader → loader.1); kernel files hard
// linked into /boot when it is on the same file system, copied
// otherwise; the repository's [sysroot] options bootc sets
// ([Configure], [BootcConfig]: bootloader=none, bootprefix=true, which
// puts /boot before the entry's kernel paths, readonly=true).
//
// Not reproduced (Deploy fails with [ErrUnsupported] where it can tell):
// further deployments (merge deployments, the /etc three-way merge,
// pruning, boot version swaps), staged deployments, several kernels in
// usr/lib/modules, the legacy kernel layouts (usr/lib/ostree-boot,
// /boot), dtb directories, aboot images, a populated /etc in the commit,
// overlay initrds, boot loader configuration (grub2, zipl, …; the
// repository option sysroot.bootloader may be unset or "none"), and
// SELinux labelling by the deployment's policy: files get the attributes
// their objects carry (libostree relabels the /etc copy, /var, the origin
// file, the upper directory and copied kernels when the deployment has a
// policy). libostree built with composefs writes .ostree.cfs whenever it
// deploys; [Options.Composefs] off gives the layout of a libostree built
// without it (Debian's, the oracle) plus the kernel argument that tells
// ostree-prepare-root not to use composefs. Ownership, set-id bits and
// security.*/trusted.* attributes need root, as for the bare repository.
//
// libostree writes the BLS keys it does not know by name (aboot,
// abootcfg) in the iteration order of a GLib hash table; Deploy
// reproduces GLib's table to get the same order.
//
// Modes are those ostree creates under umask 022; they are set
// explicitly, whatever the process umask.
package sysroot
