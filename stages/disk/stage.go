// Package disk is the disk stage: it lays out the root partition (with the
// composefs backend the composefs repository, or with composefs disabled a
// plain deployment tree; with the ostree backend the ostree stage's sysroot
// tree as it is; docs/boot-layout.md), puts the UKI on the ESP, and writes
// a reproducible GPT disk image (raw, and qcow2 when the manifest asks).
package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/internal/bootlayout"
	cfs "github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/diskimage"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/imageinput"
)

// Version is the implementation version (part of every cache key).
const Version = "2"

// Config is the resolved configuration of one disk stage instance.
type Config struct {
	Arch       *arch.Arch  `json:"arch"`
	Size       int64       `json:"size"`
	Partitions []Partition `json:"partitions"`
	Formats    []string    `json:"formats"`
	// Composefs: the root partition holds the composefs repository
	// (composefs backend with composefs on).
	Composefs bool `json:"composefs"`
	// Ostree: the root partition is the ostree stage's sysroot (the
	// ostree deployment backend).
	Ostree bool `json:"ostree,omitempty"`
	// Basename names the published files: <Basename>.raw, .qcow2.
	Basename string `json:"basename"`
	// UKIName is the file name under EFI/Linux on the ESP.
	UKIName string `json:"uki_name"`
}

// Partition is one partition of the layout.
type Partition struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Size   int64  `json:"size"`
	FS     string `json:"fs"`
	Label  string `json:"label"`
	Verity bool   `json:"verity"`
}

// New returns the disk stage.
func New() pipeline.Stage {
	return pipeline.Define(pipeline.Spec[Config]{
		Kind: contract.Disk, Version: Version,
		Inputs: []pipeline.Dep{{Kind: contract.Source}, {Kind: contract.Composefs, Optional: true}, {Kind: contract.Ostree, Optional: true}, {Kind: contract.UKI}},
		Plan:   Plan, Run: run,
	})
}

// Plan takes the disk layout from the manifest and checks that it fits
// (sizes, labels), so errors show before any stage runs.
func Plan(_ context.Context, pc *pipeline.PlanContext) (*Config, error) {
	mc, f := pc.Config, pc.Facts
	c := &Config{
		Arch: f.Arch, Size: mc.Disk.Size, Formats: slices.Clone(mc.Disk.Formats),
		Composefs: f.Composefs && !f.Ostree(), Ostree: f.Ostree(),
		Basename: artifacts.Basename(pc.Compose.Product, mc.Name, pc.Compose.Release, f.Arch.Name),
		UKIName:  mc.UKI.Name + ".efi",
	}
	for _, p := range mc.Disk.Partitions {
		c.Partitions = append(c.Partitions, Partition{Name: p.Name, Type: p.Type, Size: p.Size, FS: p.FS, Label: p.Label, Verity: p.Verity})
	}
	if _, err := c.spec("plan", time.Time{}).Layout(); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	return c, nil
}

func (c *Config) spec(seed string, epoch time.Time) *diskimage.Spec {
	s := &diskimage.Spec{Size: c.Size, Arch: c.Arch.Name, Seed: seed, Epoch: epoch}
	for _, p := range c.Partitions {
		s.Partitions = append(s.Partitions, diskimage.Partition{Name: p.Name, Type: p.Type, Size: p.Size, FS: p.FS, Label: p.Label, Verity: p.Verity})
	}
	return s
}

// run lays out the root partition and the ESP and writes the disk image.
func run(ctx context.Context, rc *pipeline.RunContext, c *Config) error {
	tree, err := imageinput.Tree(rc)
	if err != nil {
		return err
	}
	objects, err := objstore.Open(rc.ObjectsDir())
	if err != nil {
		return err
	}
	defer objects.Close()

	// The seed for GUIDs and UUIDs and the epoch for times come from the
	// inputs only, so the same inputs give the same disk bytes.
	seed := sha256.New()
	for _, in := range []pipeline.Output{contract.SourceTree, contract.UKIImage, contract.ComposefsImage, contract.ComposefsDigestSig, contract.OstreeSysroot} {
		if in.Present(rc) {
			o, err := in.Artifact(rc)
			if err != nil {
				return err
			}
			fmt.Fprintf(seed, "%s=%s\n", in, o.Digest)
		}
	}
	fmt.Fprintf(seed, "config=%s\n", mustJSON(c))
	seedHex := hex.EncodeToString(seed.Sum(nil))
	epoch := time.Unix(tree.Root().Mtime.Sec, 0).UTC()
	if epoch.Before(time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)) {
		epoch = time.Time{} // FAT cannot go earlier; the library's default
	}

	root := filepath.Join(rc.TempDir(), "root")
	var digest string
	var immutable []string
	if c.Ostree {
		// The sysroot tree is the root partition as it is (times set
		// by the ostree stage); mkfs.ext4 only reads it.
		if root, err = contract.OstreeSysroot.Path(rc); err != nil {
			return err
		}
		// The deployment directory is immutable, as `ostree admin
		// deploy` leaves it: nothing can be created at / of a system
		// booted without composefs either.
		dep, err := contract.OstreeDeployment.Get(rc)
		if err != nil {
			return err
		}
		immutable = []string{dep.Dir}
	} else if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	switch {
	case c.Ostree:
	case c.Composefs:
		if digest, err = composefsLayout(rc, tree, objects, root); err != nil {
			return err
		}
	default:
		plain := filepath.Join(root, filepath.FromSlash(bootlayout.Plain.Root()))
		if err := os.MkdirAll(filepath.Dir(plain), 0o755); err != nil {
			return err
		}
		if err := materialize(tree, objects, plain); err != nil {
			return err
		}
	}
	if !c.Ostree {
		if err := fixDirTimes(root, epoch); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	ukiPath, err := contract.UKIImage.Path(rc)
	if err != nil {
		return err
	}
	ukiBytes, err := os.ReadFile(ukiPath)
	if err != nil {
		return fmt.Errorf("reading the UKI: %w", err)
	}
	boot, ukiOnESP := bootlayout.ESPBootPath(c.Arch), bootlayout.ESPUKIPath(c.UKIName)
	spec := c.spec(seedHex, epoch)
	for i := range spec.Partitions {
		p := &spec.Partitions[i]
		switch p.Type {
		case diskimage.TypeESP:
			p.Files = []diskimage.File{diskimage.BytesFile(boot, ukiBytes), diskimage.BytesFile(ukiOnESP, ukiBytes)}
		case diskimage.TypeRoot:
			p.Dir, p.Immutable = root, immutable
		}
	}
	rawPath := filepath.Join(rc.TempDir(), c.Basename+".raw")
	layout, err := diskimage.Write(ctx, spec, rawPath)
	if err != nil {
		return fmt.Errorf("writing the disk image: %w", err)
	}
	if slices.Contains(c.Formats, "qcow2") {
		q := filepath.Join(rc.TempDir(), c.Basename+".qcow2")
		if err := diskimage.ConvertQcow2(ctx, rawPath, q); err != nil {
			return err
		}
		if err := contract.DiskQcow2.AddFile(rc, q, &artifacts.Publish{Filename: c.Basename + ".qcow2", Type: "qcow2", Format: "qcow2", Bootable: true}); err != nil {
			return err
		}
	}
	// The raw image is always produced (boot tests and qcow2 start from
	// it); it is published only when the manifest lists it.
	var pub *artifacts.Publish
	if slices.Contains(c.Formats, "raw") {
		pub = &artifacts.Publish{Filename: c.Basename + ".raw", Type: "raw", Format: "raw", Bootable: true}
	}
	if err := contract.DiskRaw.AddFile(rc, rawPath, pub); err != nil {
		return err
	}
	dl := artifacts.DiskLayout{Schema: artifacts.DiskLayoutSchema, Size: layout.Size, SectorSize: layout.SectorSize, DiskGUID: layout.DiskGUID, ComposefsDigest: digest, ESPBootPath: boot, ESPUKIPath: ukiOnESP}
	for _, p := range layout.Partitions {
		dl.Partitions = append(dl.Partitions, artifacts.DiskPartition{Number: p.Number, Name: p.Name, Label: p.Label, Type: p.Type, FS: p.FS, TypeGUID: p.TypeGUID, GUID: p.GUID, FSID: p.FSID, Offset: p.Offset, Size: p.Size})
	}
	if err := contract.DiskLayout.Set(rc, &dl, nil); err != nil {
		return err
	}
	rc.Log.Info().Str("disk_guid", layout.DiskGUID).Bool("composefs", c.Composefs).Msg("disk image written")
	return rc.SetMeta("disk_guid", layout.DiskGUID)
}

// composefsLayout fills root with the composefs repository: the image
// under its digest, its signature, and every object it references (hard
// links into the shared store, whose objects all have mtime 0).
func composefsLayout(rc *pipeline.RunContext, tree *cfs.Tree, objects *objstore.Store, root string) (string, error) {
	d, err := contract.ComposefsDigest.Get(rc)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(root, bootlayout.ImagesDir), 0o755); err != nil {
		return "", err
	}
	img, err := contract.ComposefsImage.Path(rc)
	if err != nil {
		return "", err
	}
	if err := copyFile(img, filepath.Join(root, bootlayout.Composefs.Image(d.Digest)), 0o644); err != nil {
		return "", fmt.Errorf("placing the composefs image: %w", err)
	}
	if contract.ComposefsDigestSig.Present(rc) {
		sig, err := contract.ComposefsDigestSig.Path(rc)
		if err != nil {
			return "", err
		}
		if err := copyFile(sig, filepath.Join(root, bootlayout.Composefs.Signature(d.Digest)), 0o644); err != nil {
			return "", fmt.Errorf("placing the digest signature: %w", err)
		}
	}
	for _, payload := range tree.Objects() {
		od, err := objstore.ParseName(payload)
		if err != nil {
			return "", fmt.Errorf("source tree: file content at %q is not an object of the store: %w", payload, err)
		}
		name := objstore.Name(od)
		dst := filepath.Join(root, filepath.FromSlash(bootlayout.Composefs.Object(name)))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.Link(objects.Path(od), dst); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return "", fmt.Errorf("placing object %s: %w", name, err)
		}
	}
	return d.Digest, nil
}

// copyFile copies src to dst with mode and mtime 0.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(dst, mode); err != nil {
		return err
	}
	return os.Chtimes(dst, time.Unix(0, 0), time.Unix(0, 0))
}

// fixDirTimes gives the directories the layout created (not those of a
// materialized tree, which carry the image's times) a fixed mtime.
func fixDirTimes(root string, epoch time.Time) error {
	dirs := []string{root}
	for _, d := range bootlayout.Dirs() {
		dirs = append(dirs, filepath.Join(root, filepath.FromSlash(d)))
	}
	objects := filepath.Join(root, filepath.FromSlash(bootlayout.ObjectsDir))
	if ents, err := os.ReadDir(objects); err == nil {
		for _, e := range ents {
			dirs = append(dirs, filepath.Join(objects, e.Name()))
		}
	}
	ts := unix.NsecToTimespec(epoch.UnixNano())
	if epoch.IsZero() {
		ts = unix.Timespec{}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		err := unix.UtimesNanoAt(unix.AT_FDCWD, dirs[i], []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("setting times of %s: %w", dirs[i], err)
		}
	}
	return nil
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
