# The testbed-ostree variant: the real-OS fixture (testbed-os.hcl) deployed
# the way Fedora's variants are, as an ostree sysroot, and booted through
# the image's own dracut initramfs: Debian's ostree-prepare-root finds the
# deployment from ostree= on the command line and mounts it at /sysroot.
#
# Debian's ostree is built without composefs support, so this variant
# ships with composefs off (the contingency state the Fedora variants fall
# back to); see docs/boot-layout.md. The boot tests also boot the same
# sysroot with composefs on through the builtin initramfs, cfs-init doing
# ostree-prepare-root's work (version "ostree-cfs" of
# stages/boottest/realos_test.go), by hand with:
#   cfs-compose set manifests/testbed-ostree.hcl variant.testbed-ostree.composefs.enabled=true
#   cfs-compose set manifests/testbed-ostree.hcl variant.testbed-ostree.initramfs.source='"builtin"'

variant "testbed-ostree" {
  description = "Offline real-OS test system deployed as an ostree sysroot, booted by the image's own initramfs"
  arches      = ["x86_64", "aarch64"]

  source {
    image = "oci:../testbed/fixtures/build/os-oci:testbed-os"
  }

  lints {
    skip = ["ostree-grub2"]
  }

  composefs {
    enabled = false
  }

  deploy {
    backend   = "ostree"
    stateroot = "debian"
  }

  kernel {
    cmdline = local.console.x86_64
  }

  arch "aarch64" {
    kernel {
      cmdline = local.console.aarch64
    }
  }

  initramfs {
    source = "image"
  }

  disk {
    size    = "3GiB"
    formats = ["raw"]

    partition "esp" {
      size = "128MiB"
    }
  }

  test {
    boot    = true
    timeout = "8m"
    memory  = "1GiB"
    # A second boot of the same disk: /etc, /var and the machine-id
    # survive in the deployment's /etc and the stateroot's /var.
    reboot = true
  }
}
