// Package bootlayout describes the layouts of a bootable disk that the
// disk stage writes, the initramfs (cmd/cfs-init) mounts and the compose
// verifier checks: the EFI system partition's files and the root
// partition's deployment layouts. Every path is relative to its
// partition's root and slash-separated; nothing here touches a disk.
//
// A root partition holds one deployment layout per backend:
//
//   - [Composefs]: bootc's composefs-native layout (composefs images named
//     by their digest, a content-addressed object store, per-deployment
//     state), which the builtin initramfs mounts;
//   - [Plain]: the contingency layout with composefs off, the image's tree
//     unpacked as a plain directory.
//
// docs/boot-layout.md describes the layouts for people.
package bootlayout

import (
	"path"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// DefaultRootLabel is the root partition's GPT name (PARTLABEL) when the
// manifest gives none.
const DefaultRootLabel = "root"

// ESP paths.
const (
	// ESPBootDir holds the removable-media boot file the firmware runs.
	ESPBootDir = "EFI/BOOT"
	// ESPLinuxDir holds UKIs (Boot Loader Specification Type #2).
	ESPLinuxDir = "EFI/Linux"
)

// ESPBootPath is the firmware's default boot file for a:
// EFI/BOOT/BOOTX64.EFI or EFI/BOOT/BOOTAA64.EFI.
func ESPBootPath(a *arch.Arch) string { return path.Join(ESPBootDir, a.EFIBootFile) }

// ESPUKIPath is the path of the UKI file under EFI/Linux:
// EFI/Linux/<file>.
func ESPUKIPath(file string) string { return path.Join(ESPLinuxDir, file) }

// composefsLayout is the type of [Composefs].
type composefsLayout struct{}

// Composefs is the composefs-native deployment layout:
//
//	composefs/images/<hex>             the EROFS image, named by its fs-verity digest
//	composefs/images/<hex>.sig         its digest's signature (signed mode)
//	composefs/objects/XX/YYYY…         the object store
//	state/deploy/<hex>/etc, etc.work   the /etc overlay's upper and work directories
//	state/deploy/<hex>/.verity-enabled first-boot stamp: fs-verity enabled on every object
//	state/os/default/var               /var, shared by deployments
var Composefs composefsLayout

// Directories of the composefs layout.
const (
	ImagesDir  = "composefs/images"
	ObjectsDir = "composefs/objects"
	DeployDir  = "state/deploy"
	VarDir     = "state/os/default/var"
)

// Image is the path of the image with digest hex.
func (composefsLayout) Image(hex string) string { return path.Join(ImagesDir, hex) }

// Signature is the path of the signature of digest hex.
func (composefsLayout) Signature(hex string) string { return path.Join(ImagesDir, hex+".sig") }

// Object is the path of the object whose object-store name is name
// ("XX/YYYY…", internal/objstore.Name).
func (composefsLayout) Object(name string) string { return path.Join(ObjectsDir, name) }

// Deployment is the state directory of the deployment of image hex.
func (composefsLayout) Deployment(hex string) string { return path.Join(DeployDir, hex) }

// VerityStamp marks a deployment whose objects have fs-verity enabled.
func (composefsLayout) VerityStamp(hex string) string {
	return path.Join(DeployDir, hex, ".verity-enabled")
}

// Var is the directory bound on /var.
func (composefsLayout) Var() string { return VarDir }

// plainLayout is the type of [Plain].
type plainLayout struct{}

// Plain is the deployment layout with composefs off:
//
//	state/deploy/plain/root   the image's root tree, unpacked
//	state/os/default/var      /var
var Plain plainLayout

// Root is the unpacked tree.
func (plainLayout) Root() string { return path.Join(DeployDir, "plain", "root") }

// Var is the directory bound on /var.
func (plainLayout) Var() string { return VarDir }

// Dirs lists the directories the layouts create above their contents
// (not the object fan-out directories, nor a plain tree's own), parents
// first; the disk stage gives them fixed times.
func Dirs() []string {
	return []string{path.Dir(ImagesDir), ImagesDir, ObjectsDir, path.Dir(DeployDir), DeployDir, path.Dir(Plain.Root())}
}
