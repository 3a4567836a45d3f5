# Settings every variant starts from. A variant block overrides any of them,
# attribute by attribute; an `arch "aarch64" { }` block overrides them for one
# architecture. Partitions merge by their label ("esp", "root"), so a variant
# that writes `partition "root" { size = "12GiB" }` changes only that size.
#
# `cfs-compose explain VARIANT --arch ARCH` prints the effective settings of a
# variant and the file:line each one comes from.

locals {
  # Serial and graphical consoles; the serial one is where the boot test
  # reads the guest's output.
  console = {
    x86_64  = ["console=tty0", "console=ttyS0,115200n8"]
    aarch64 = ["console=tty0", "console=ttyAMA0,115200n8"]
  }
}

defaults {
  arches = ["x86_64"]

  source {
    # Bootable container images (bootc). Classic ostree commits
    # (kind = "ostree") cannot use composefs.
    kind = "container"
  }

  composefs {
    # THE CONTINGENCY SWITCH. Each variant repeats this line so that rolling
    # composefs back for one variant is a one-line change:
    #   cfs-compose set manifests/fedora-coreos.hcl variant.coreos.composefs.enabled=false
    enabled = true

    # "enable": objects that carry fs-verity are checked (Fedora's default);
    # "require" refuses any object without it and needs the root partition
    # below to keep verity = true.
    verity = "enable"

    # Signing the composefs digest needs signing { key } and
    # secureboot { key, cert }; see docs/manifest-language.md.
    signed = false
  }

  deploy {
    # The Fedora images deploy as ostree sysroots, as `bootc install` lays
    # them out: their own dracut initramfs (initramfs.source = "image"
    # below) boots them through ostree-prepare-root, and `bootc upgrade` /
    # `ostree admin` keep working on the installed system. cfs-compose's own
    # composefs layout (backend = "composefs") needs the builtin initramfs,
    # which the testbed variant uses. See docs/boot-layout.md.
    backend   = "ostree"
    stateroot = "fedora"
  }

  kernel {
    cmdline = local.console.x86_64
    # kdump does not work with composefs yet (Red Hat bug 2284097);
    # validate warns if a variant turns it on.
    kdump = false
  }

  initramfs {
    # The image's own dracut initramfs: ostree-prepare-root mounts the
    # deployment (and its composefs image) from the ostree sysroot.
    source = "image"
  }

  bootloader {
    # The firmware boots the UKI directly. Never "ostree-grub2" with
    # composefs: it breaks dual boot (ostree issue 3198).
    type = "uki"
  }

  uki {
    enabled = true
    # The systemd EFI stub from the image itself.
    stub = "image"
  }

  rootfs {
    # A composefs root is read-only: root-level directories the OS needs
    # beyond the standard ones must be listed here, e.g. ["/data"].
    extra_dirs = []
  }

  disk {
    size    = var.disk_size
    formats = ["raw", "qcow2"]

    partition "esp" {
      size  = "512MiB"
      label = "EFI-SYSTEM"
    }

    partition "root" {
      # 0 = the rest of the disk.
      size = 0
      # ext4 with the verity feature, so composefs objects carry fs-verity.
      verity = true
    }
  }

  test {
    # Boot tests of the full Fedora images are opt-in: they are large and
    # QEMU runs without KVM on the build machines.
    boot    = false
    timeout = "15m"
    memory  = "2GiB"
  }

  arch "aarch64" {
    kernel {
      cmdline = local.console.aarch64
    }
  }
}
