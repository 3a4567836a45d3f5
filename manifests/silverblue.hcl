# Fedora Silverblue, the GNOME Atomic Desktop.
#
# Fedora enables composefs on the Atomic Desktops only for the bootable
# container images (https://fedoraproject.org/wiki/Changes/ComposefsAtomicDesktops),
# which is what this variant builds from.

variant "silverblue" {
  name        = "Silverblue"
  description = "Fedora Silverblue: the GNOME Atomic Desktop, from its bootable container image"
  arches      = ["x86_64", "aarch64"]

  source {
    image = "docker://${var.registry}/fedora-silverblue:${var.release}"
  }

  composefs {
    # Contingency switch; roll back with:
    #   cfs-compose set manifests/silverblue.hcl variant.silverblue.composefs.enabled=false
    enabled = true
  }

  disk {
    # A desktop deployment with its flatpak-ready /var needs more room.
    size = "20GiB"
  }
}
