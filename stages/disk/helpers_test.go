package disk_test

import (
	"bytes"
	"io"
	"io/fs"

	cfs "github.com/cfs-compose/cfs-compose/internal/composefs"
)

func ioSection(r io.ReaderAt, off, n int64) io.ReaderAt { return io.NewSectionReader(r, off, n) }

func readFS(fsys fs.FS, name string) ([]byte, error) { return fs.ReadFile(fsys, name) }

func readImage(b []byte) (*cfs.Tree, error) { return cfs.ReadImage(bytes.NewReader(b), int64(len(b))) }
