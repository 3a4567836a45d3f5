# Variables shared by every manifest in this directory.
#
# Change them for one run without editing any file (lowest priority first):
#   the default below  <  CFS_VAR_NAME=VALUE in the environment
#                      <  -var-file FILE (NAME = VALUE lines)
#                      <  -var NAME=VALUE on the command line
# For example:  cfs-compose -var release=44 validate
#
# Change a default for good with:
#   cfs-compose set manifests/variables.hcl variable.release.default='"44"'

variable "release" {
  type        = string
  default     = "43"
  description = "Fedora release to compose: the image tags and the compose name (Fedora-43-...) follow it."

  validation {
    condition     = can(regex("^([0-9]+|rawhide)$", var.release))
    error_message = "The release must be a Fedora release number such as \"43\", or \"rawhide\"."
  }
}

variable "registry" {
  type        = string
  default     = "quay.io/fedora"
  description = "Registry and namespace the Fedora bootable container images are pulled from."
}

variable "compose_type" {
  type        = string
  default     = "nightly"
  description = "productmd compose type: production (no suffix), nightly (.n), test (.t) or ci (.ci)."

  validation {
    condition     = contains(["production", "nightly", "test", "ci"], var.compose_type)
    error_message = "The compose type must be production, nightly, test or ci."
  }
}

variable "disk_size" {
  type        = string
  default     = "10GiB"
  description = "Default disk image size; variants may set their own."
}

# The compose block names the compose directory: Fedora-43-YYYYMMDD.n.N.
compose {
  product = "Fedora"
  release = var.release
  type    = var.compose_type
}
