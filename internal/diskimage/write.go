package diskimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/internal/fat"
)

// Write writes the raw disk image described by s to path and returns its
// layout. The image is built in a temporary file in path's directory and
// renamed over path when complete; on error nothing is left behind and an
// existing file at path is untouched. The image gets mode 0644. Write
// reads every File.Content once.
// Cancelling ctx stops a running mkfs.ext4.
func Write(ctx context.Context, s *Spec, path string) (l *Layout, err error) {
	l, err = s.Layout()
	if err != nil {
		return nil, err
	}
	// Check ext4 content sizes before writing anything. parts is a copy
	// with the root trees' symlinks resolved; the caller's Spec stays as is.
	parts := append([]Partition(nil), s.Partitions...)
	trees := make([]*treeStats, len(parts))
	for i, p := range parts {
		if p.FS != FSExt4 || p.Dir == "" {
			continue
		}
		// mkfs.ext4 follows a symlinked source directory; the walk must too.
		real, err := filepath.EvalSymlinks(p.Dir)
		if err != nil {
			return nil, fmt.Errorf("diskimage: partition %q: root tree: %w", p.Name, err)
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: partition %q: root tree %s is not a directory", ErrSpec, p.Name, p.Dir)
		}
		parts[i].Dir = real
		st, err := statTree(real)
		if err != nil {
			return nil, fmt.Errorf("diskimage: partition %q: %w", p.Name, err)
		}
		if err := st.check(p.Name, l.Partitions[i].Size); err != nil {
			return nil, err
		}
		trees[i] = st
	}
	af, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return nil, fmt.Errorf("diskimage: %w", err)
	}
	defer af.Abort()
	f, tmp := af.File, af.Name()
	if err := f.Truncate(s.Size); err != nil {
		return nil, fmt.Errorf("diskimage: sizing %s: %w", tmp, err)
	}
	out := &sparseWriter{f: f}
	if err := l.table().Write(out, s.Size); err != nil {
		return nil, fmt.Errorf("diskimage: writing partition table: %w", err)
	}
	// Partitions occupy disjoint regions, so they are written concurrently:
	// mkfs.ext4 runs as its own process while the ESP is filled here. The
	// first error cancels the rest and is the one reported.
	epoch := s.epoch()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		pl := &l.Partitions[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch p.FS {
			case FSVfat:
				errs[i] = writeFAT(io.NewOffsetWriter(out, pl.Offset), p, pl, epoch)
			case FSExt4:
				errs[i] = writeExt4(pctx, f, tmp, p, pl, epoch, trees[i])
			}
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("diskimage: %w", err)
	}
	for _, e := range errs {
		// A partition cancelled because another failed reports
		// context.Canceled; prefer the failure that caused it.
		if e != nil && !errors.Is(e, context.Canceled) {
			return nil, e
		}
	}
	for _, e := range errs {
		if e != nil {
			return nil, e
		}
	}
	if err := af.Commit(); err != nil {
		return nil, fmt.Errorf("diskimage: %w", err)
	}
	return l, nil
}

// writeFAT formats and fills a vfat partition.
func writeFAT(w io.WriterAt, p Partition, pl *PartitionLayout, epoch time.Time) error {
	fw, err := fat.NewWriter(w, pl.Size, fat.Options{
		Label:         pl.label,
		VolumeID:      pl.volumeID,
		Time:          epoch,
		HiddenSectors: uint32(pl.FirstLBA),
	})
	if err != nil {
		return fmt.Errorf("diskimage: partition %q (vfat, %d bytes): %w", p.Name, pl.Size, err)
	}
	for _, file := range p.Files {
		if err := fw.WriteHeader(&fat.Header{Name: file.Path, Size: file.Size}); err != nil {
			return fmt.Errorf("diskimage: partition %q: %w", p.Name, err)
		}
		n, err := io.CopyN(fw, file.Content, file.Size)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("diskimage: partition %q: %s: content has %d bytes, File.Size says %d", p.Name, file.Path, n, file.Size)
			}
			return fmt.Errorf("diskimage: partition %q: writing %s: %w", p.Name, file.Path, err)
		}
		var one [1]byte
		if k, _ := file.Content.Read(one[:]); k > 0 {
			return fmt.Errorf("diskimage: partition %q: %s: content is longer than File.Size %d", p.Name, file.Path, file.Size)
		}
	}
	if err := fw.Close(); err != nil {
		var se *fat.SpaceError
		if errors.As(err, &se) {
			return fmt.Errorf("%w: partition %q (vfat, %d bytes): the files and directories need %d bytes of clusters, the file system has %d available",
				ErrNoSpace, p.Name, pl.Size, se.Needed, se.Available)
		}
		return fmt.Errorf("diskimage: partition %q: %w", p.Name, err)
	}
	return nil
}

// ConvertQcow2 converts the raw image src to a qcow2 image at dst with
// qemu-img, through a temporary file renamed into place.
func ConvertQcow2(ctx context.Context, src, dst string) (err error) {
	dir, base := filepath.Split(dst)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("diskimage: creating %s: %w", dst, err)
	}
	tmp := f.Name()
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("diskimage: creating %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	cmd := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", src, tmp)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("diskimage: qemu-img convert %s: %w: %s", src, err, trimOutput(out))
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("diskimage: %w", err)
	}
	if err := atomicfile.PublishKeep(tmp, dst); err != nil {
		return fmt.Errorf("diskimage: %w", err)
	}
	return nil
}
