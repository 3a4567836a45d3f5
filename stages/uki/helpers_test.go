package uki_test

import (
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
)

// The shared stage-test helpers (stages/internal/stagetest) under the
// names this package's tests use.
var (
	fixtureLayout  = stagetest.FixtureLayout
	fixtureRef     = stagetest.FixtureRef
	requireInitbin = stagetest.RequireInitbin
	fixtureContent = stagetest.FixtureContent
	derivedImage   = stagetest.DerivedImage
	openStore      = stagetest.OpenStore
	build          = stagetest.Build
	output         = stagetest.Output
	config         = stagetest.TestbedConfig
)

// cosignPassword encrypts the test cosign keys.
const cosignPassword = stagetest.CosignPassword
