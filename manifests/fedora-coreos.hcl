# Fedora CoreOS, from its bootable container image on quay.io.

variable "coreos_stream" {
  type        = string
  default     = "stable"
  description = "Fedora CoreOS update stream: stable, testing or next."

  validation {
    condition     = contains(["stable", "testing", "next"], var.coreos_stream)
    error_message = "The CoreOS stream must be stable, testing or next."
  }
}

locals {
  # Ignition runs on first boot of a disk image written to bare metal.
  coreos_cmdline = ["ignition.platform.id=metal"]
}

variant "coreos" {
  name        = "CoreOS"
  description = "Fedora CoreOS (${var.coreos_stream} stream)"
  arches      = ["x86_64", "aarch64"]

  source {
    image = "docker://${var.registry}/fedora-coreos:${var.coreos_stream}"
  }

  composefs {
    # Contingency switch; roll back with:
    #   cfs-compose set manifests/fedora-coreos.hcl variant.coreos.composefs.enabled=false
    enabled = true
  }

  kernel {
    cmdline = concat(local.console.x86_64, local.coreos_cmdline)
  }

  arch "aarch64" {
    kernel {
      cmdline = concat(local.console.aarch64, local.coreos_cmdline)
    }
  }
}
