# The testbed-os variant: a real systemd operating system (Debian trixie,
# laid out like a Fedora bootable container) built offline from the OS
# fixture that `make fixtures` builds into the fixture cache
# (${CFS_FIXTURES_CACHE:-/var/cache/cfs-compose/fixtures}/os-oci, see
# docs/testbed.md). `make fixtures` links that layout as
# testbed/fixtures/build/os-oci, so the path below is relative to this
# directory like the testbed variant's and need not exist to validate the
# manifests. The boot test delivers its agent at boot (a read-only extra
# disk and a systemd unit passed as a credential): the image under test is
# exactly what `build` produces.

variant "testbed-os" {
  description = "Offline real-OS test system (systemd as PID 1) built from the local OS fixture"
  arches      = ["x86_64", "aarch64"]

  source {
    image = "oci:../testbed/fixtures/build/os-oci:testbed-os"
  }

  lints {
    # Debian's ostree-boot brings the grub2 hook along; the disk boots its
    # UKI directly and never runs grub, so the hook is inert here.
    skip = ["ostree-grub2"]
  }

  composefs {
    # Contingency switch; the boot tests check the plain-root path with:
    #   cfs-compose set manifests/testbed-os.hcl variant.testbed-os.composefs.enabled=false
    enabled = true
    verity  = "enable"
  }

  deploy {
    # cfs-compose's own composefs layout, booted by cfs-init (the builtin
    # initramfs), as in the testbed variant; the defaults' ostree backend
    # needs the image's own initramfs.
    backend = "composefs"
  }

  kernel {
    # "ro": systemd's remount-fs would otherwise remount a plain root
    # (composefs off) read-write; /etc and /var are mounts of their own and
    # stay writable. (A composefs root cannot be remounted rw anyway.)
    cmdline = concat(local.console.x86_64, ["ro"])
  }

  arch "aarch64" {
    kernel {
      cmdline = concat(local.console.aarch64, ["ro"])
    }
  }

  initramfs {
    # cfs-compose's own /init plus the modules it needs from the image.
    source = "builtin"
  }

  disk {
    size    = "3GiB"
    formats = ["raw"]

    partition "esp" {
      size = "64MiB"
    }
  }

  test {
    boot = true
    # A full systemd boot under TCG: ~1 min on x86_64, ~2 min on aarch64,
    # times 2-3 on a busy build machine.
    timeout = "8m"
    memory  = "1GiB"
    # Boot the disk a second time through the same overlay: persist-reboot
    # checks that /etc, /var and the machine-id survive (one more boot,
    # ~30-50 s on x86_64 under TCG: the second boot skips fs-verity
    # enabling).
    reboot = true
  }
}
