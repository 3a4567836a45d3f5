# The testbed variant: built offline from the fixture image that
# `make fixtures` creates (a Debian cloud kernel, busybox and the systemd EFI
# stub laid out like a bootable container). Tests and `make demo` use it;
# nothing here needs the network. The path is relative to this directory and
# need not exist to validate the manifests.

variant "testbed" {
  description = "Offline test system built from the local fixture image"
  arches      = ["x86_64", "aarch64"]

  source {
    image = "oci:../testbed/fixtures/build/oci:testbed"
  }

  composefs {
    # Contingency switch; the boot test checks the plain-root path with:
    #   cfs-compose set manifests/testbed.hcl variant.testbed.composefs.enabled=false
    enabled = true
    verity  = "enable"
  }

  deploy {
    # cfs-compose's own composefs layout, booted by cfs-init. The fixture
    # image has no dracut initramfs, so it cannot boot an ostree sysroot.
    backend = "composefs"
  }

  initramfs {
    # cfs-compose's own /init plus the modules it needs from the image.
    source = "builtin"
  }

  disk {
    size    = "512MiB"
    formats = ["raw"]

    partition "esp" {
      size = "64MiB"
    }
  }

  test {
    boot    = true
    timeout = "5m"
    memory  = "1GiB"
  }
}
