# Fedora IoT, from its bootable container image, for x86_64 and aarch64
# (edge gateways and single-board computers).

variant "iot" {
  name        = "IoT"
  description = "Fedora IoT: an immutable OS for edge devices, from its bootable container image"
  arches      = ["x86_64", "aarch64"]

  source {
    image = "docker://${var.registry}/fedora-iot:${var.release}"
  }

  composefs {
    # Contingency switch; roll back with:
    #   cfs-compose set manifests/iot.hcl variant.iot.composefs.enabled=false
    enabled = true
  }

  disk {
    size = "8GiB"
    # IoT images are written to SD cards and eMMC: raw only.
    formats = ["raw"]
  }

  arch "aarch64" {
    disk {
      # Boards keep their firmware blobs and device trees on the ESP.
      partition "esp" {
        size = "1GiB"
      }
    }

    test {
      # aarch64 guests run under emulation (TCG) on x86_64 builders.
      timeout = "30m"
    }
  }
}
