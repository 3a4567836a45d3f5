// Package stages is the table of stage kinds cfs-compose runs, in pipeline
// order. Each kind lives in its own package (stages/<kind>) and implements
// pipeline.Stage; stages never import each other and exchange data only
// through artifacts.
package stages

import (
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/boottest"
	"github.com/cfs-compose/cfs-compose/stages/composefs"
	"github.com/cfs-compose/cfs-compose/stages/disk"
	"github.com/cfs-compose/cfs-compose/stages/initramfs"
	"github.com/cfs-compose/cfs-compose/stages/ostree"
	"github.com/cfs-compose/cfs-compose/stages/sign"
	"github.com/cfs-compose/cfs-compose/stages/source"
	"github.com/cfs-compose/cfs-compose/stages/uki"
)

// All returns one instance of every stage kind, in pipeline order (a
// stage's inputs come before it). Kinds are unique. sign comes after disk
// (its optional inputs composefs, uki and disk must precede it).
func All() []pipeline.Stage {
	return []pipeline.Stage{
		source.New(),
		composefs.New(),
		initramfs.New(),
		ostree.New(),
		uki.New(),
		disk.New(),
		sign.New(),
		// boottest comes last: it boots the disk image.
		boottest.New(),
	}
}
