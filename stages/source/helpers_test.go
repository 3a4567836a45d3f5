package source

import (
	"encoding/binary"
	"testing"

	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// fakeArm64Image returns an arm64 Image header without a PE part.
func fakeArm64Image(n int) []byte {
	b := make([]byte, max(n, 0x100))
	binary.LittleEndian.PutUint32(b[0x38:], arm64Magic)
	return b
}

// facts decides the facts of mc's target as the pipeline does.
func facts(t testing.TB, mc *manifest.Config) *pipeline.Facts {
	t.Helper()
	f, err := pipeline.FactsOf(pipeline.Target{Variant: mc.Variant, Name: mc.Name, Arch: mc.Arch}, mc)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
