// Package ostree is the ostree stage of the ostree deployment backend
// (deploy { backend = "ostree" }): it commits the source stage's image tree
// into the bare repository of a new ostree sysroot and deploys that commit,
// as `bootc install` lays out a disk (internal/ostree writes the repository
// byte-identical with `ostree commit`; internal/ostree/sysroot the
// deployment as `ostree admin init-fs --modern`, `os-init` and `deploy`
// do).
//
// The commit is what ostree-rs-ext imports from a bootable container
// image, reduced to one tree: /etc moves to /usr/etc (ostree's
// deployment-time /etc), everything else stays. It gets the subject
// from the image's os-release (PRETTY_NAME), the version from the image's
// org.opencontainers.image.version label (else os-release OSTREE_VERSION,
// IMAGE_VERSION, VERSION_ID), ostree.bootable and ostree.linux, with
// composefs the commit's ostree.composefs.digest.v0, and the ref binding
// of its ref "<stateroot>/<arch>". Its timestamp is the mtime of the
// image tree's root, so the same image gives the same commit, sysroot and
// disk.
//
// The ref is not ostree-rs-ext's ostree/container/image/… name: that ref
// promises an imported container image (manifest and layer metadata in the
// commit), which this commit does not carry; bootc and ostree find the
// deployment through ostree's own ref ostree/1/1/0 and the origin file.
//
// The deployment's kernel arguments are root=LABEL=<root partition
// label> (Facts.RootLabel, the label the disk stage gives the partition),
// rw (the sysroot is remounted read-only by ostree-prepare-root, as bootc
// configures it), then kernel.cmdline; ostree adds ostree= and, without
// composefs, ostree.prepare-root.composefs=0. The origin follows the
// manifest's docker:// image as bootc records it (ostree-image-signed when
// source.signed_by is set, else ostree-unverified-registry); an image
// from a local transport (oci:, oci-archive:, dir:) cannot be followed
// from the installed system, so the deployment then follows its ref.
//
// Outputs: "sysroot", the sysroot as a directory tree in the store (the
// disk stage copies it into the root partition), and "deployment",
// artifacts.OstreeDeployment (the UKI's command line comes from it).
//
// The deployment directory's immutable flag, which `ostree admin deploy`
// sets, is cleared in the store (which keeps no inode flags and must be
// able to remove the tree); the disk stage sets it again in the root
// partition (diskimage.Partition.Immutable), so mkdir at / fails with
// EPERM on a system booted without composefs, as on Fedora.
//
// Not done here (later work): signed commits, SELinux relabelling by the
// deployment's policy (files keep the labels the image carries).
package ostree
