package diskimage

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	pathpkg "path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/debugfs"
)

// mke2fsConf replaces /etc/mke2fs.conf so the host's defaults cannot change
// the image: the feature set of e2fsprogs 1.47's stock ext4 without
// orphan_file (readable by older e2fsck), 4 KiB blocks, 256-byte inodes,
// one inode per 16 KiB.
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
	default = {
		inode_ratio = 16384
	}
`

const inodeRatio = 16384

// treeStats summarises a source tree for the space check.
type treeStats struct {
	dir    string
	inodes int64 // distinct inodes (hardlinks counted once), root excluded
	data   int64 // bytes of blocks for file data, directories and long symlinks
}

// statTree walks dir without following symlinks.
func statTree(dir string) (*treeStats, error) {
	st := &treeStats{dir: dir}
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	round := func(n int64) int64 { return (n + fsBlock - 1) / fsBlock * fsBlock }
	dirBytes := map[string]int64{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if p != dir {
			// Directory entry: 8 bytes of header plus the name, 4-byte aligned.
			dirBytes[filepath.Dir(p)] += int64(8+len(d.Name())+3) &^ 3
		}
		sys, _ := info.Sys().(*syscall.Stat_t)
		if sys != nil && !info.IsDir() && sys.Nlink > 1 {
			k := key{uint64(sys.Dev), sys.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		if p != dir {
			st.inodes++
		}
		switch {
		case info.Mode().IsRegular():
			n := round(info.Size())
			if sys != nil && sys.Blocks*512 < info.Size() { // sparse source file
				n = round(sys.Blocks * 512)
			}
			st.data += n
		case info.Mode()&fs.ModeSymlink != 0 && info.Size() >= 60:
			st.data += fsBlock
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading root tree %s: %w", dir, err)
	}
	for _, n := range dirBytes {
		st.data += max(fsBlock, round(n))
	}
	return st, nil
}

// inodeCount is the inode count to ask mkfs for: the default ratio, or more
// when the tree needs it.
func (st *treeStats) inodeCount(size int64) int64 {
	n := size / inodeRatio
	if st != nil && st.inodes+st.inodes/8+64 > n {
		n = st.inodes + st.inodes/8 + 64
	}
	return n
}

// check fails fast when the tree's data alone exceeds the partition.
func (st *treeStats) check(name string, size int64) error {
	need := st.data + st.inodeCount(size)*256
	if need > size {
		return fmt.Errorf("%w: partition %q (ext4, %d bytes): %s needs at least %d bytes (%d bytes of data blocks in %d inodes, plus inode tables), the partition has %d",
			ErrNoSpace, name, size, st.dir, need, st.data, st.inodes, size)
	}
	return nil
}

// writeExt4 runs mkfs.ext4 on the partition's region of the image file and
// normalises the inode times it copied from the source tree.
func writeExt4(ctx context.Context, f *os.File, path string, p Partition, pl *PartitionLayout, epoch time.Time, st *treeStats) error {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return fmt.Errorf("diskimage: partition %q: mkfs.ext4 (e2fsprogs) is needed for ext4: %w", p.Name, err)
	}
	conf, err := os.CreateTemp("", "cfs-mke2fs-*.conf")
	if err != nil {
		return fmt.Errorf("diskimage: partition %q: writing mke2fs.conf: %w", p.Name, err)
	}
	defer os.Remove(conf.Name())
	if _, err := conf.WriteString(mke2fsConf); err != nil {
		conf.Close()
		return fmt.Errorf("diskimage: partition %q: writing mke2fs.conf: %w", p.Name, err)
	}
	if err := conf.Close(); err != nil {
		return fmt.Errorf("diskimage: partition %q: writing mke2fs.conf: %w", p.Name, err)
	}
	args := mkfsArgs(p, pl, st)
	cmd := exec.CommandContext(ctx, mkfs, append(args, path, strconv.FormatInt(pl.Size/fsBlock, 10))...)
	t := strconv.FormatInt(epoch.Unix(), 10)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"LC_ALL=C", // mkfs.ext4 -d sorts directory entries with strcoll
		"MKE2FS_CONFIG=" + conf.Name(),
		"E2FSPROGS_FAKE_TIME=" + t, // e2fsprogs 1.47.0
		"SOURCE_DATE_EPOCH=" + t,   // later e2fsprogs
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("diskimage: partition %q: mkfs.ext4: %w", p.Name, ctx.Err())
		}
		msg := trimOutput(out)
		if strings.Contains(msg, "Could not allocate") || strings.Contains(msg, "No space left") ||
			strings.Contains(msg, "No free space") {
			need := int64(0)
			if st != nil {
				need = st.data + st.inodeCount(pl.Size)*256
			}
			return fmt.Errorf("%w: partition %q (ext4, %d bytes): %s needs more than the file system holds (estimated %d bytes with inode tables, before journal and group metadata): mkfs.ext4: %s",
				ErrNoSpace, p.Name, pl.Size, p.Dir, need, msg)
		}
		return fmt.Errorf("diskimage: partition %q: mkfs.ext4 %s: %w: %s", p.Name, strings.Join(args, " "), err, msg)
	}
	immutable, err := inodesOf(ctx, path, pl.Offset, p.Immutable)
	if err != nil {
		return fmt.Errorf("diskimage: partition %q: immutable paths: %w", p.Name, err)
	}
	if _, err := normalizeExt4(f, pl.Offset, epoch.Unix(), immutable); err != nil {
		return fmt.Errorf("diskimage: partition %q: normalising ext4 inode times and xattr order: %w", p.Name, err)
	}
	return nil
}

// mkfsArgs returns the mkfs.ext4 options for a partition (without the
// device and size operands).
func mkfsArgs(p Partition, pl *PartitionLayout, st *treeStats) []string {
	args := []string{"-F", "-q", "-t", "ext4", "-T", "default", "-b", "4096", "-I", "256",
		"-N", strconv.FormatInt(st.inodeCount(pl.Size), 10),
		"-L", pl.label, "-U", pl.fsUUID.String(),
		"-E", "offset=" + strconv.FormatInt(pl.Offset, 10) + ",nodiscard,root_owner=0:0,hash_seed=" + pl.hashSeed.String(),
	}
	if p.Verity {
		args = append(args, "-O", "verity")
	}
	if p.Dir != "" {
		args = append(args, "-d", p.Dir)
	}
	return args
}

// trimOutput returns a tool's output on one line, without trailing noise,
// at most 2000 bytes.
func trimOutput(b []byte) string {
	s := strings.Join(strings.Fields(strings.TrimSpace(string(b))), " ")
	if len(s) > 2000 {
		s = s[:2000] + "..."
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// inodesOf returns the inode numbers of paths (relative to the file
// system's root) in the ext4 file system offset bytes into the image, read
// with debugfs; a path that does not exist is an error.
func inodesOf(ctx context.Context, image string, offset int64, paths []string) (map[uint32]bool, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	parents := make([]string, len(paths))
	for i, p := range paths {
		parents[i] = "/" + strings.Trim(pathpkg.Dir("/"+p), "/")
	}
	listing, err := debugfs.Open(image, offset).ReadDirs(ctx, parents)
	if err != nil {
		return nil, err
	}
	inodes := map[uint32]bool{}
	for i, p := range paths {
		base := pathpkg.Base("/" + p)
		found := false
		for _, e := range listing[parents[i]] {
			if e.Name == base {
				inodes[uint32(e.Inode)] = true
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("%s is not in the file system", p)
		}
	}
	return inodes, nil
}
