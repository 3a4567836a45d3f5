package ostree

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/arch"
	ot "github.com/cfs-compose/cfs-compose/internal/ostree"
	"github.com/cfs-compose/cfs-compose/internal/ostree/sysroot"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// Version is the implementation version (part of every cache key).
const Version = "1"

// Config is the resolved configuration of one ostree stage instance.
type Config struct {
	Arch *arch.Arch `json:"arch"`
	// Stateroot is deploy.stateroot.
	Stateroot string `json:"stateroot"`
	// Ref is the repository ref of the commit, "<stateroot>/<arch>".
	Ref string `json:"ref"`
	// Kargs are the deployment's kernel arguments before ostree's own:
	// root=LABEL=<root label>, rw, then kernel.cmdline.
	Kargs []string `json:"kargs"`
	// Composefs writes ostree's composefs image and the commit's
	// composefs digest (composefs.enabled).
	Composefs bool `json:"composefs"`
	// ComposefsVerity records the content objects' fs-verity digests in
	// the deployment's .ostree.cfs (sysroot.Options.ComposefsVerity), as
	// libostree does when the objects carry fs-verity: then the image's
	// own digest is the commit's ostree.composefs.digest.v0. Set with the
	// builtin initramfs, whose cfs-init checks exactly that and enables
	// fs-verity on the objects at boot (docs/boot-layout.md).
	ComposefsVerity bool `json:"composefs_verity,omitempty"`
	// Origin is the deployment's origin file.
	Origin string `json:"origin"`
	// SignKey is the ed25519 key file that signs the commit
	// (composefs.signed, signing.ostree_key); SignPub its public key as
	// ostree writes key IDs (base64), which enters the cache key.
	SignKey string `json:"sign_key,omitempty"`
	SignPub string `json:"sign_pub,omitempty"`
}

// New returns the ostree stage. A target runs it with the ostree
// deployment backend.
func New() pipeline.Stage {
	return pipeline.Define(pipeline.Spec[Config]{
		Kind: contract.Ostree, Version: Version,
		Inputs: []pipeline.Dep{{Kind: contract.Source}},
		When:   func(f *pipeline.Facts) bool { return f.Ostree() },
		Plan:   Plan, Run: run,
	})
}

// Plan decides the ref, the kernel arguments and the origin file.
func Plan(_ context.Context, pc *pipeline.PlanContext) (*Config, error) {
	mc, f := pc.Config, pc.Facts
	c := &Config{
		Arch: f.Arch, Stateroot: f.Stateroot, Ref: f.Stateroot + "/" + f.Arch.Name,
		Kargs:     append([]string{"root=LABEL=" + f.RootLabel, "rw"}, mc.Kernel.Cmdline...),
		Composefs: f.Composefs, ComposefsVerity: f.Composefs && f.Initramfs == manifest.InitramfsBuiltin,
	}
	if !ot.ValidRef(c.Ref) {
		return nil, fmt.Errorf("deploy.stateroot %q: %q is not a valid ostree ref", c.Stateroot, c.Ref)
	}
	for i, a := range mc.Kernel.Cmdline {
		if a == "" || a == "--" || strings.ContainsAny(a, " \t\n\r\x00") {
			return nil, fmt.Errorf("kernel.cmdline[%d] = %q: ostree keeps kernel arguments as single words and appends ostree= at the end", i, a)
		}
	}
	origin, err := originOf(mc.Source.Image, mc.Source.SignedBy != "", c.Ref)
	if err != nil {
		return nil, err
	}
	c.Origin = origin
	if f.OstreeKey != "" {
		k, err := loadSigningKey(f.OstreeKey)
		if err != nil {
			return nil, err
		}
		c.SignKey, c.SignPub = f.OstreeKey, ot.PublicKeyText(k.Public().(ed25519.PublicKey))
	}
	return c, nil
}

// loadSigningKey reads signing.ostree_key.
func loadSigningKey(path string) (ed25519.PrivateKey, error) {
	k, err := ot.LoadSigningKey(path)
	if err != nil {
		return nil, fmt.Errorf("signing.ostree_key: %w", err)
	}
	return k, nil
}

// originOf returns the origin file of a deployment of image: the container
// image reference bootc records for a registry image, else the ref.
func originOf(image string, signed bool, ref string) (string, error) {
	name, ok := strings.CutPrefix(image, "docker://")
	if !ok {
		return sysroot.RefspecOrigin(ref), nil
	}
	r := sysroot.ImageRef{Image: name}
	if signed {
		r.Verify = sysroot.VerifyPolicy
	}
	o, err := sysroot.ContainerOrigin(r)
	if err != nil {
		return "", fmt.Errorf("source.image %s: %w", image, err)
	}
	return o, nil
}
