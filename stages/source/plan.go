package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"

	"github.com/cfs-compose/cfs-compose/internal/imagepull"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// Version is the stage implementation version (part of every cache key).
const Version = "1"

// ErrOffline reports a tag that cannot be pinned without the network.
var ErrOffline = errors.New("source: offline")

// Stage is the source stage: pull the bootable container image, stream it
// into a composefs tree and object store, analyse and lint it.
type Stage struct {
	// Sys overrides the containers-image system context (registries.conf,
	// auth.json, TLS, ...); nil means the user's defaults.
	Sys *types.SystemContext
}

// New returns the source stage with the default system context.
func New() pipeline.Stage { return (&Stage{}).Define() }

// Define makes the pipeline stage of s.
func (s *Stage) Define() pipeline.Stage {
	return pipeline.Define(pipeline.Spec[Config]{
		Kind: contract.Source, Version: Version,
		Plan: func(ctx context.Context, pc *pipeline.PlanContext) (*Config, error) {
			return Resolve(ctx, pc.Config, pc.Facts, pc.Offline, s.Sys)
		},
		Run: s.run,
	})
}

// Resolve pins the image reference to its manifest digest (reading the
// manifest; for docker references that is a network look-up, refused
// offline unless the manifest pins a digest), fingerprints the signature
// policy and collects the settings lints need.
func Resolve(ctx context.Context, mc *manifest.Config, f *pipeline.Facts, offline bool, sys *types.SystemContext) (*Config, error) {
	src := mc.Source
	c := &Config{
		Image: src.Image, Arch: f.Arch.Name, Kind: src.Kind, Kernel: src.Kernel,
		Lints: LintSettings{
			Composefs: f.Composefs, ComposefsSigned: f.ComposefsSigned, Kdump: mc.Kernel.Kdump,
			Initramfs: f.Initramfs, Ostree: f.Ostree(), ExtraDirs: nonNil(mc.Rootfs.ExtraDirs), UKI: f.UKI, UKIStub: mc.UKI.Stub,
			Skip: nonNil(mc.Lints.Skip),
		},
	}
	ref, err := imagepull.ParseReference(src.Image)
	if err != nil {
		return nil, err
	}
	c.Transport, c.Identity = ref.Transport, ref.Identity()
	if c.Policy, err = imagepull.ResolvePolicy(src.Policy, src.SignedBy); err != nil {
		return nil, err
	}
	if offline && !ref.Local() {
		if ref.Pin == "" {
			return nil, fmt.Errorf("%w: cannot pin %s to a digest without the network (pin it as NAME@sha256:… or plan online)", ErrOffline, src.Image)
		}
		c.ManifestDigest = ref.Pin.String()
	} else {
		img, err := imagepull.Open(ctx, ref, mc.Arch, sys)
		if err != nil {
			return nil, err
		}
		defer img.Close()
		c.ManifestDigest, c.InstanceDigest, c.ConfigDigest = img.ManifestDigest.String(), img.InstanceDigest.String(), img.ConfigDigest.String()
	}
	pinned, err := ref.Pinned(digest.Digest(c.ManifestDigest))
	if err != nil {
		return nil, err
	}
	c.Pinned = pinned.String()
	if ref.Local() {
		// A local image has no name that holds across machines; its
		// content digest is its identity.
		c.Identity = ref.Transport + "@" + c.ManifestDigest
	}
	return c, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
