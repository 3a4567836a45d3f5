// Package contract is the typed contract between stage kinds: the kinds'
// names and every output one stage writes and another reads, each with
// its media type and, for JSON outputs, its schema (the types in package
// artifacts). A producing stage writes through these declarations and a
// consuming stage reads through them, so kind and output names are spelled
// here and nowhere else; stage packages never import each other.
//
// docs/stages.md lists the same outputs for people.
package contract

import (
	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing"
)

// The stage kinds, in pipeline order.
const (
	Source    = "source"
	Composefs = "composefs"
	Initramfs = "initramfs"
	Ostree    = "ostree"
	UKI       = "uki"
	Disk      = "disk"
	Sign      = "sign"
	BootTest  = "boottest"
)

// Media types of outputs not covered by package artifacts.
const (
	MediaTypeQcow2   = "application/x-qemu-disk"
	MediaTypeSig     = "text/plain; charset=us-ascii" // base64 signature
	MediaTypeJUnit   = "application/xml"
	MediaTypeConsole = "text/plain"
)

// The source stage's outputs.
var (
	// SourceTree is the image's file tree as a composefs dumpfile whose
	// file contents are objects of the shared object store.
	SourceTree = pipeline.Output{Kind: Source, Name: "tree", MediaType: artifacts.MediaTypeDumpfile}
	// SourceAnalysis is what the source stage learned about the image.
	SourceAnalysis = pipeline.NewJSON[artifacts.ImageAnalysis](Source, "analysis")
	// SourceLints is the lint report (the source stage's own schema).
	SourceLints = pipeline.Output{Kind: Source, Name: "lints", MediaType: artifacts.MediaTypeJSON}
)

// The composefs stage's outputs.
var (
	// ComposefsImage is the EROFS composefs image.
	ComposefsImage = pipeline.Output{Kind: Composefs, Name: "image", MediaType: artifacts.MediaTypeComposefs}
	// ComposefsDigest is the image's digest.
	ComposefsDigest = pipeline.NewJSON[artifacts.ComposefsDigest](Composefs, "digest")
	// ComposefsDigestSig is the base64 signature of the digest (with
	// composefs { signed = true }).
	ComposefsDigestSig = pipeline.Output{Kind: Composefs, Name: "digest.sig", MediaType: "text/plain"}
)

// InitramfsArchive is the initramfs stage's output: the initramfs.
var InitramfsArchive = pipeline.Output{Kind: Initramfs, Name: "initramfs", MediaType: artifacts.MediaTypeOctet}

// The ostree stage's outputs (deploy { backend = "ostree" }).
var (
	// OstreeSysroot is the root partition's content: the ostree sysroot
	// (bare repository, stateroot, deployment, /boot), a directory tree
	// in the store with owners, modes, extended attributes and hard links.
	OstreeSysroot = pipeline.Output{Kind: Ostree, Name: "sysroot", MediaType: artifacts.MediaTypeTree}
	// OstreeDeployment describes the commit and its deployment; its
	// command line is the UKI's.
	OstreeDeployment = pipeline.NewJSON[artifacts.OstreeDeployment](Ostree, "deployment")
)

// UKIImage is the uki stage's output: the Unified Kernel Image.
var UKIImage = pipeline.Output{Kind: UKI, Name: "uki", MediaType: artifacts.MediaTypeOctet}

// The disk stage's outputs.
var (
	DiskRaw    = pipeline.Output{Kind: Disk, Name: "raw", MediaType: artifacts.MediaTypeOctet}
	DiskQcow2  = pipeline.Output{Kind: Disk, Name: "qcow2", MediaType: MediaTypeQcow2}
	DiskLayout = pipeline.NewJSON[artifacts.DiskLayout](Disk, "layout")
)

// The boottest stage's outputs.
var (
	BootTestResults = pipeline.NewJSON[artifacts.BootTestResults](BootTest, "results")
	BootTestJUnit   = pipeline.Output{Kind: BootTest, Name: "junit", MediaType: MediaTypeJUnit}
	BootTestConsole = pipeline.Output{Kind: BootTest, Name: "console", MediaType: MediaTypeConsole}
)

// Signed lists the artifacts the sign stage signs when they are present,
// in signing order.
var Signed = []pipeline.Output{ComposefsImage, UKIImage, DiskRaw, DiskQcow2}

// Signatures returns the sign stage's two outputs for a signed artifact:
// its cosign signature and its Sigstore bundle.
func Signatures(o pipeline.Output) (sig, bundle pipeline.Output) {
	return pipeline.Output{Kind: Sign, Name: o.Name + signing.SigSuffix, MediaType: MediaTypeSig},
		pipeline.Output{Kind: Sign, Name: o.Name + signing.BundleSuffix, MediaType: signing.BundleMediaType}
}
