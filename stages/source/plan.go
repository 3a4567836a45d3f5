package source

import (
	"context"
	"errors"
	"fmt"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
)

// Kind is the stage kind.
const Kind = "source"

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
func New() *Stage { return &Stage{} }

// Kind implements pipeline.Stage.
func (s *Stage) Kind() string { return Kind }

// Version implements pipeline.Stage.
func (s *Stage) Version() string { return Version }

// Inputs implements pipeline.Stage: the source stage has none.
func (s *Stage) Inputs() []pipeline.Dep { return nil }

// Plan implements pipeline.Stage: it pins the image reference to its
// manifest digest (reading the manifest; for docker references that is a
// network look-up, refused offline unless the manifest pins a digest),
// fingerprints the signature policy and collects the settings lints need.
func (s *Stage) Plan(ctx context.Context, pc *pipeline.PlanContext) (any, error) {
	return Resolve(ctx, pc.Config, pc.Offline, s.Sys)
}

// Resolve is Plan on a manifest config.
func Resolve(ctx context.Context, mc *manifest.Config, offline bool, sys *types.SystemContext) (*Config, error) {
	src := mc.Source
	kind := src.Kind
	if kind == "" {
		kind = manifest.SourceContainer
	}
	stub := mc.UKI.Stub
	if stub == "" {
		stub = "image"
	}
	initramfs := mc.Initramfs.Source
	if initramfs == "" {
		initramfs = manifest.InitramfsBuiltin
	}
	c := &Config{
		Image: src.Image, Arch: mc.Arch, Kind: kind, Kernel: src.Kernel,
		Lints: LintSettings{
			Composefs: mc.Composefs.Enabled, ComposefsSigned: mc.Composefs.Signed, Kdump: mc.Kernel.Kdump,
			Initramfs: initramfs, ExtraDirs: nonNil(mc.Rootfs.ExtraDirs), UKI: mc.UKI.Enabled, UKIStub: stub,
			Skip: nonNil(mc.Lints.Skip),
		},
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ref, err := ParseReference(src.Image)
	if err != nil {
		return nil, err
	}
	c.Transport, c.Identity = ref.Transport, ref.Identity()
	if c.Policy, err = ResolvePolicy(src.Policy, src.SignedBy); err != nil {
		return nil, err
	}
	if offline && !ref.Local() {
		if ref.Pin == "" {
			return nil, fmt.Errorf("%w: cannot pin %s to a digest without the network (pin it as NAME@sha256:… or plan online)", ErrOffline, src.Image)
		}
		c.ManifestDigest = ref.Pin.String()
	} else {
		img, err := Open(ctx, ref, mc.Arch, sys)
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
	return c, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
