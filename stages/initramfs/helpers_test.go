package initramfs_test

import (
	"github.com/cfs-compose/cfs-compose/stages/internal/stagetest"
)

// The shared stage-test helpers (stages/internal/stagetest) under the
// names this package's tests use.
var (
	fixtureRef     = stagetest.FixtureRef
	requireInitbin = stagetest.RequireInitbin
	fixtureContent = stagetest.FixtureContent
	derivedImage   = stagetest.DerivedImage
	openStore      = stagetest.OpenStore
	build          = stagetest.Build
	output         = stagetest.Output
	config         = stagetest.TestbedConfig
)
