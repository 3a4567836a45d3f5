// Package disk is the disk stage: it lays out the root partition (the
// composefs repository, or with composefs disabled a plain deployment tree;
// docs/boot-layout.md), puts the UKI on the ESP, and writes a reproducible
// GPT disk image (raw, and qcow2 when the manifest asks).
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

	"github.com/cfs-compose/cfs-compose/artifacts"
	cfs "github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/diskimage"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/internal/imageinput"
	"golang.org/x/sys/unix"
)

// Kind is the stage kind.
const Kind = "disk"

// Version is the implementation version (part of every cache key).
const Version = "1"

// Output names (see docs/stages.md).
const (
	OutRaw    = "raw"
	OutQcow2  = "qcow2"
	OutLayout = "layout"
)

// Config is the resolved configuration of one disk stage instance.
type Config struct {
	Arch       string      `json:"arch"`
	Size       int64       `json:"size"`
	Partitions []Partition `json:"partitions"`
	Formats    []string    `json:"formats"`
	Composefs  bool        `json:"composefs"`
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

// Stage implements pipeline.Stage.
type Stage struct{}

// New returns the disk stage.
func New() *Stage { return &Stage{} }

// Kind implements pipeline.Stage.
func (*Stage) Kind() string { return Kind }

// Version implements pipeline.Stage.
func (*Stage) Version() string { return Version }

// Inputs implements pipeline.Stage.
func (*Stage) Inputs() []pipeline.Dep {
	return []pipeline.Dep{{Kind: "source"}, {Kind: "composefs", Optional: true}, {Kind: "uki"}}
}

// Plan implements pipeline.Stage.
func (*Stage) Plan(_ context.Context, pc *pipeline.PlanContext) (any, error) {
	mc := pc.Config
	c := &Config{
		Arch: mc.Arch, Size: mc.Disk.Size, Formats: slices.Clone(mc.Disk.Formats), Composefs: mc.Composefs.Enabled,
		Basename: fmt.Sprintf("%s-%s-%s.%s", pc.Compose.Product, mc.Name, pc.Compose.Release, mc.Arch),
		UKIName:  mc.UKI.Name + ".efi",
	}
	if len(c.Formats) == 0 {
		c.Formats = []string{"raw"}
	}
	for _, f := range c.Formats {
		if f != "raw" && f != "qcow2" {
			return nil, fmt.Errorf("disk.formats: unknown format %q (want raw or qcow2)", f)
		}
	}
	hasRoot := false
	for _, p := range mc.Disk.Partitions {
		c.Partitions = append(c.Partitions, Partition{Name: p.Name, Type: p.Type, Size: p.Size, FS: p.FS, Label: p.Label, Verity: p.Verity})
		hasRoot = hasRoot || p.Type == manifest.PartitionRoot
	}
	if !hasRoot {
		return nil, errors.New("disk: no partition of type root")
	}
	// Validate the layout now (sizes, labels), so errors show before any
	// stage runs; Layout does no I/O.
	if _, err := c.spec("plan", time.Time{}).Layout(); err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	return c, nil
}

func (c *Config) spec(seed string, epoch time.Time) *diskimage.Spec {
	s := &diskimage.Spec{Size: c.Size, Arch: c.Arch, Seed: seed, Epoch: epoch}
	for _, p := range c.Partitions {
		s.Partitions = append(s.Partitions, diskimage.Partition{Name: p.Name, Type: p.Type, Size: p.Size, FS: p.FS, Label: p.Label, Verity: p.Verity})
	}
	return s
}

// Run implements pipeline.Stage.
func (*Stage) Run(ctx context.Context, rc *pipeline.RunContext) error {
	var c Config
	if err := rc.DecodeConfig(&c); err != nil {
		return err
	}
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
	for _, in := range [][2]string{{"source", "tree"}, {"uki", "uki"}, {"composefs", "image"}, {"composefs", "digest.sig"}} {
		if rc.HasInput(in[0], in[1]) {
			o, _ := rc.Input(in[0], in[1])
			fmt.Fprintf(seed, "%s/%s=%s\n", in[0], in[1], o.Digest)
		}
	}
	fmt.Fprintf(seed, "config=%s\n", mustJSON(c))
	seedHex := hex.EncodeToString(seed.Sum(nil))
	epoch := time.Unix(tree.Root().Mtime.Sec, 0).UTC()
	if epoch.Before(time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)) {
		epoch = time.Time{} // FAT cannot go earlier; the library's default
	}

	root := filepath.Join(rc.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	var digest string
	if c.Composefs {
		if digest, err = composefsLayout(rc, tree, objects, root); err != nil {
			return err
		}
	} else {
		plain := filepath.Join(root, "state", "deploy", "plain", "root")
		if err := os.MkdirAll(filepath.Dir(plain), 0o755); err != nil {
			return err
		}
		if err := materialize(tree, objects, plain); err != nil {
			return err
		}
	}
	if err := fixDirTimes(root, epoch); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	ukiPath, err := rc.InputPath("uki", "uki")
	if err != nil {
		return err
	}
	ukiBytes, err := os.ReadFile(ukiPath)
	if err != nil {
		return fmt.Errorf("reading the UKI: %w", err)
	}
	boot := "EFI/BOOT/BOOTX64.EFI"
	if c.Arch == manifest.ArchAarch64 {
		boot = "EFI/BOOT/BOOTAA64.EFI"
	}
	spec := c.spec(seedHex, epoch)
	for i := range spec.Partitions {
		p := &spec.Partitions[i]
		switch p.Type {
		case diskimage.TypeESP:
			p.Files = []diskimage.File{diskimage.BytesFile(boot, ukiBytes), diskimage.BytesFile("EFI/Linux/"+c.UKIName, ukiBytes)}
		case diskimage.TypeRoot:
			p.Dir = root
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
		if err := rc.AddFile(OutQcow2, q, "application/x-qemu-disk", &artifacts.Publish{Filename: c.Basename + ".qcow2", Type: "qcow2", Format: "qcow2", Bootable: true}); err != nil {
			return err
		}
	}
	// The raw image is always produced (boot tests and qcow2 start from
	// it); it is published only when the manifest lists it.
	var pub *artifacts.Publish
	if slices.Contains(c.Formats, "raw") {
		pub = &artifacts.Publish{Filename: c.Basename + ".raw", Type: "raw", Format: "raw", Bootable: true}
	}
	if err := rc.AddFile(OutRaw, rawPath, artifacts.MediaTypeOctet, pub); err != nil {
		return err
	}
	dl := artifacts.DiskLayout{Schema: artifacts.DiskLayoutSchema, Size: layout.Size, SectorSize: layout.SectorSize, DiskGUID: layout.DiskGUID, ComposefsDigest: digest, ESPBootPath: boot, ESPUKIPath: "EFI/Linux/" + c.UKIName}
	for _, p := range layout.Partitions {
		dl.Partitions = append(dl.Partitions, artifacts.DiskPartition{Number: p.Number, Name: p.Name, Label: p.Label, Type: p.Type, FS: p.FS, TypeGUID: p.TypeGUID, GUID: p.GUID, FSID: p.FSID, Offset: p.Offset, Size: p.Size})
	}
	if err := rc.AddJSON(OutLayout, dl, nil); err != nil {
		return err
	}
	rc.Log.Info().Str("disk_guid", layout.DiskGUID).Bool("composefs", c.Composefs).Msg("disk image written")
	return rc.SetMeta("disk_guid", layout.DiskGUID)
}

// composefsLayout fills root with the composefs repository: the image
// under its digest, its signature, and every object it references (hard
// links into the shared store, whose objects all have mtime 0).
func composefsLayout(rc *pipeline.RunContext, tree *cfs.Tree, objects *objstore.Store, root string) (string, error) {
	b, err := rc.ReadInput("composefs", "digest")
	if err != nil {
		return "", fmt.Errorf("composefs is enabled but its digest is missing: %w", err)
	}
	var d struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(b, &d); err != nil || len(d.Digest) != 64 {
		return "", fmt.Errorf("reading composefs/digest: bad digest %q (%v)", d.Digest, err)
	}
	images := filepath.Join(root, "composefs", "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return "", err
	}
	img, err := rc.InputPath("composefs", "image")
	if err != nil {
		return "", err
	}
	if err := copyFile(img, filepath.Join(images, d.Digest), 0o644); err != nil {
		return "", fmt.Errorf("placing the composefs image: %w", err)
	}
	if rc.HasInput("composefs", "digest.sig") {
		sig, err := rc.InputPath("composefs", "digest.sig")
		if err != nil {
			return "", err
		}
		if err := copyFile(sig, filepath.Join(images, d.Digest+".sig"), 0o644); err != nil {
			return "", fmt.Errorf("placing the digest signature: %w", err)
		}
	}
	objDir := filepath.Join(root, "composefs", "objects")
	for _, payload := range tree.Objects() {
		od, err := objstore.ParseName(payload)
		if err != nil {
			return "", fmt.Errorf("source tree: file content at %q is not an object of the store: %w", payload, err)
		}
		name := objstore.Name(od)
		dst := filepath.Join(objDir, filepath.FromSlash(name))
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
	var dirs []string
	for _, d := range []string{"", "composefs", "composefs/images", "composefs/objects", "state", "state/deploy", "state/deploy/plain"} {
		dirs = append(dirs, filepath.Join(root, d))
	}
	if ents, err := os.ReadDir(filepath.Join(root, "composefs", "objects")); err == nil {
		for _, e := range ents {
			dirs = append(dirs, filepath.Join(root, "composefs", "objects", e.Name()))
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
