// Package diskimage assembles reproducible GPT disk images: an EFI System
// Partition (FAT32, written by [github.com/cfs-compose/cfs-compose/internal/fat]),
// ext4 partitions populated from host directories (mkfs.ext4 -d from
// e2fsprogs), and the partition table (written by
// [github.com/cfs-compose/cfs-compose/internal/gpt]).
//
// Unlike the format packages it drives, diskimage works on paths and runs
// host tools: mkfs.ext4 (e2fsprogs >= 1.47) for ext4 and qemu-img for qcow2.
//
// # Reproducibility
//
// A [Spec] fully determines the image bytes. The disk GUID, partition
// GUIDs, ext4 UUIDs and directory hash seeds, and FAT volume IDs are
// derived from Spec.Seed with SHA-256; every timestamp the image carries
// is Spec.Epoch, except the modification times of files copied from a
// root directory, which are the tree's own. mkfs.ext4 runs with a private
// configuration file and a minimal environment (LC_ALL=C,
// E2FSPROGS_FAKE_TIME), so /etc/mke2fs.conf and the caller's environment do
// not leak in. Afterwards the inode tables are patched: the access and
// change times mkfs.ext4 copies from the source tree are set to the epoch,
// and extended attributes, which it stores in the source file system's
// listing order, are put in the kernel's sort order. The same e2fsprogs
// version is needed for byte-identical output.
//
// # Output
//
// Images are written to a temporary file next to the destination and
// renamed into place only when complete; on any error the temporary file is
// removed and the destination is untouched. Raw images are sparse: regions
// no file system uses are never written.
package diskimage

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/cfs-compose/cfs-compose/internal/gpt"
)

// Partition types.
const (
	TypeESP   = "esp"   // EFI System Partition
	TypeRoot  = "root"  // the OS root file system (GPT type by architecture)
	TypeLinux = "linux" // any other Linux file system
)

// File systems.
const (
	FSVfat = "vfat" // FAT32
	FSExt4 = "ext4"
)

// Architectures (as Fedora spells them); they select the root type GUID.
const (
	ArchX86_64  = "x86_64"
	ArchAarch64 = "aarch64"
)

const (
	sectorSize = 512
	alignment  = 1 << 20 // partitions start on 1 MiB boundaries
	fsBlock    = 4096    // partition sizes are whole 4 KiB blocks
)

// ErrSpec means a Spec is invalid; the message names the field at fault.
var ErrSpec = errors.New("diskimage: invalid spec")

// ErrNoSpace means a partition's content does not fit; the message gives
// the partition, the bytes needed and the bytes available.
var ErrNoSpace = errors.New("diskimage: content does not fit")

// Spec describes a disk image.
type Spec struct {
	// Size is the disk size in bytes, a multiple of 1 MiB.
	Size int64
	// Arch selects the root partition's type GUID: ArchX86_64 or ArchAarch64.
	Arch string
	// Seed is any caller-chosen string (for example the compose ID plus
	// variant and arch); all GUIDs, UUIDs and serial numbers derive from it.
	Seed string
	// Epoch is the timestamp for everything the image does not copy from a
	// source tree; zero means 1980-01-01T00:00:00Z. Whole seconds are used.
	Epoch time.Time
	// Partitions are laid out in order, each starting on a 1 MiB boundary.
	Partitions []Partition
}

// Partition is one GPT partition and its file system.
type Partition struct {
	Name string // unique name, e.g. "esp", "root" (used in errors and GUID derivation)
	Type string // TypeESP, TypeRoot or TypeLinux
	// Size in bytes, a multiple of 4096; 0 means the rest of the disk (at
	// most one partition).
	Size int64
	FS   string // FSVfat or FSExt4; TypeESP needs FSVfat, TypeRoot FSExt4
	// Label is the GPT partition name (PARTLABEL) and the file system label
	// (FAT: at most 11 characters, upper-cased; ext4: at most 16 bytes).
	Label  string
	Verity bool // ext4 only: create with the verity feature
	// Files is the content of a vfat partition, written in order.
	Files []File
	// Dir is the host directory an ext4 partition is populated from; empty
	// means an empty file system. Hardlinks, xattrs, device nodes, symlinks,
	// owners and modes are kept.
	Dir string
	// Immutable are directories or files of an ext4 partition, slash-
	// separated paths relative to Dir, that get the immutable inode flag
	// (chattr +i; mkfs.ext4 -d copies no inode flags), as `ostree admin
	// deploy` sets it on a deployment directory.
	Immutable []string
}

// File is one file of a vfat partition.
type File struct {
	Path    string    // slash-separated path, e.g. "EFI/BOOT/BOOTX64.EFI"
	Size    int64     // exact length of Content
	Content io.Reader // read once, exactly Size bytes
}

// BytesFile returns a File with the given content.
func BytesFile(path string, b []byte) File {
	return File{Path: path, Size: int64(len(b)), Content: bytes.NewReader(b)}
}

// Layout is where a Spec's partitions land, and their identifiers.
type Layout struct {
	Size       int64             // disk size in bytes
	SectorSize int               // logical sector size (512)
	DiskGUID   string            // GPT disk GUID
	Partitions []PartitionLayout // in Spec order; Number is the GPT slot
}

// PartitionLayout is one placed partition.
type PartitionLayout struct {
	Number   int    // partition number (GPT slot, 1-based)
	Name     string // Spec name
	Label    string // GPT partition name (PARTLABEL)
	Type     string // TypeESP, TypeRoot or TypeLinux
	FS       string // FSVfat or FSExt4
	TypeGUID string // GPT partition type GUID
	GUID     string // GPT unique partition GUID (PARTUUID)
	// FSID is the file system identifier: the ext4 UUID, or the FAT volume
	// ID as "XXXX-XXXX" (what /dev/disk/by-uuid shows).
	FSID     string
	Offset   int64  // byte offset on the disk
	Size     int64  // bytes
	FirstLBA uint64 // first sector
	LastLBA  uint64 // last sector, inclusive

	fsUUID   gpt.GUID // ext4 UUID
	hashSeed gpt.GUID // ext4 directory hash seed
	volumeID uint32   // FAT serial
	label    string   // file system label
}

// derive returns 16 bytes derived from the seed and a purpose, shaped as
// an RFC 9562 version 4 UUID.
func derive(seed, purpose string) gpt.GUID {
	h := sha256.Sum256([]byte("cfs-compose/diskimage/v1\x00" + seed + "\x00" + purpose))
	var g gpt.GUID
	copy(g[:], h[:16])
	g[6] = g[6]&0x0F | 0x40
	g[8] = g[8]&0x3F | 0x80
	return g
}

func (s *Spec) epoch() time.Time {
	if s.Epoch.IsZero() {
		return time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return s.Epoch.UTC().Truncate(time.Second)
}

// Layout validates s and computes the partition placement and identifiers,
// without any I/O.
func (s *Spec) Layout() (*Layout, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrSpec, fmt.Sprintf(format, args...))
	}
	var rootType gpt.GUID
	switch s.Arch {
	case ArchX86_64:
		rootType = gpt.TypeLinuxRootX86_64
	case ArchAarch64:
		rootType = gpt.TypeLinuxRootARM64
	default:
		return nil, bad("arch %q (want %q or %q)", s.Arch, ArchX86_64, ArchAarch64)
	}
	if s.Size <= 0 || s.Size%alignment != 0 {
		return nil, bad("disk size %d is not a positive multiple of 1 MiB", s.Size)
	}
	if len(s.Partitions) == 0 {
		return nil, bad("no partitions")
	}
	tab := gpt.Table{SectorSize: sectorSize}
	first, last, err := tab.UsableRange(s.Size)
	if err != nil {
		return nil, bad("disk size %d: %v", s.Size, err)
	}
	l := &Layout{Size: s.Size, SectorSize: sectorSize, DiskGUID: derive(s.Seed, "disk").String()}
	names := map[string]bool{}
	labels := map[string]string{}
	rest := -1
	for i, p := range s.Partitions {
		where := fmt.Sprintf("partition %d (%q)", i+1, p.Name)
		if p.Name == "" {
			return nil, bad("partition %d has no name", i+1)
		}
		if names[p.Name] {
			return nil, bad("%s: duplicate name", where)
		}
		names[p.Name] = true
		if other, dup := labels[p.Label]; dup {
			return nil, bad("%s: label %q is also used by partition %q", where, p.Label, other)
		}
		labels[p.Label] = p.Name
		var typ gpt.GUID
		switch p.Type {
		case TypeESP:
			typ = gpt.TypeESP
			if p.FS != FSVfat {
				return nil, bad("%s: type esp needs fs %q, not %q", where, FSVfat, p.FS)
			}
		case TypeRoot:
			typ = rootType
			if p.FS != FSExt4 {
				return nil, bad("%s: type root needs fs %q, not %q", where, FSExt4, p.FS)
			}
		case TypeLinux:
			typ = gpt.TypeLinuxData
		default:
			return nil, bad("%s: type %q (want esp, root or linux)", where, p.Type)
		}
		switch p.FS {
		case FSVfat:
			if p.Verity {
				return nil, bad("%s: verity needs ext4", where)
			}
			if p.Dir != "" {
				return nil, bad("%s: a vfat partition takes Files, not Dir", where)
			}
		case FSExt4:
			if len(p.Files) > 0 {
				return nil, bad("%s: an ext4 partition takes Dir, not Files", where)
			}
			if len(p.Label) > 16 {
				return nil, bad("%s: ext4 label %q is longer than 16 bytes", where, p.Label)
			}
		default:
			return nil, bad("%s: fs %q (want vfat or ext4)", where, p.FS)
		}
		if p.Label == "" {
			return nil, bad("%s: empty label", where)
		}
		if len(utf16.Encode([]rune(p.Label))) > gpt.NameLen {
			return nil, bad("%s: label %q is longer than %d UTF-16 code units", where, p.Label, gpt.NameLen)
		}
		if p.Size < 0 || p.Size%fsBlock != 0 {
			return nil, bad("%s: size %d is not a non-negative multiple of 4096", where, p.Size)
		}
		if p.Size == 0 {
			if rest >= 0 {
				return nil, bad("%s: only one partition may take the rest of the disk (size 0); %q does already", where, s.Partitions[rest].Name)
			}
			rest = i
		}
		pl := PartitionLayout{
			Number:   i + 1,
			Name:     p.Name,
			Label:    p.Label,
			Type:     p.Type,
			FS:       p.FS,
			TypeGUID: typ.String(),
			GUID:     derive(s.Seed, "partition\x00"+p.Name).String(),
			Size:     p.Size,
		}
		switch p.FS {
		case FSExt4:
			pl.fsUUID = derive(s.Seed, "ext4-uuid\x00"+p.Name)
			pl.hashSeed = derive(s.Seed, "ext4-hash-seed\x00"+p.Name)
			pl.FSID = pl.fsUUID.String()
			pl.label = p.Label
		case FSVfat:
			g := derive(s.Seed, "fat-volume-id\x00"+p.Name)
			pl.volumeID = uint32(g[0])<<24 | uint32(g[1])<<16 | uint32(g[2])<<8 | uint32(g[3])
			pl.FSID = fmt.Sprintf("%04X-%04X", pl.volumeID>>16, pl.volumeID&0xFFFF)
			pl.label = strings.ToUpper(p.Label)
			if len(pl.label) > 11 {
				return nil, bad("%s: FAT volume label %q is longer than 11 characters", where, p.Label)
			}
		}
		l.Partitions = append(l.Partitions, pl)
	}
	// Place the partitions: fixed sizes first, so the rest is known.
	align := uint64(alignment / sectorSize)
	var fixed int64
	for _, p := range s.Partitions {
		fixed += p.Size
	}
	lba := (first + align - 1) / align * align
	for i := range l.Partitions {
		pl := &l.Partitions[i]
		pl.FirstLBA = lba
		if pl.Size == 0 {
			// Everything up to the backup table, less the alignment gaps the
			// partitions after this one need.
			var after int64
			for _, q := range l.Partitions[i+1:] {
				after += (q.Size + alignment - 1) / alignment * alignment
			}
			// Round down to a whole MiB so that the partition also ends on
			// a 1 MiB boundary (sgdisk -v cautions otherwise); the backup
			// table lives in the last MiB.
			avail := int64(last+1-lba)*sectorSize - after
			pl.Size = avail / alignment * alignment
			if pl.Size <= 0 {
				return nil, fmt.Errorf("%w: partition %q (size 0, the rest of the disk) gets no space: the disk has %d bytes, the other partitions take %d",
					ErrSpec, pl.Name, s.Size, fixed)
			}
		}
		pl.LastLBA = lba + uint64(pl.Size/sectorSize) - 1
		pl.Offset = int64(lba) * sectorSize
		if pl.LastLBA > last {
			return nil, fmt.Errorf("%w: partitions need %d bytes up to partition %q, the disk of %d bytes has %d usable (partition %q ends at LBA %d, last usable LBA %d)",
				ErrSpec, int64(pl.LastLBA+1-first)*sectorSize, pl.Name, s.Size, int64(last+1-first)*sectorSize, pl.Name, pl.LastLBA, last)
		}
		lba = (pl.LastLBA + 1 + align - 1) / align * align
	}
	return l, nil
}

// table returns the GPT for a layout.
func (l *Layout) table() *gpt.Table {
	t := &gpt.Table{SectorSize: l.SectorSize, DiskGUID: gpt.MustParseGUID(l.DiskGUID)}
	for _, p := range l.Partitions {
		t.Partitions = append(t.Partitions, gpt.Partition{
			Type:     gpt.MustParseGUID(p.TypeGUID),
			GUID:     gpt.MustParseGUID(p.GUID),
			FirstLBA: p.FirstLBA,
			LastLBA:  p.LastLBA,
			Name:     p.Label,
		})
	}
	return t
}
