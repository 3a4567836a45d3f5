package diskimage

import (
	"fmt"
	"os"
)

// sparseChunk is the granularity at which sparseWriter skips zeros.
const sparseChunk = 4096

// sparseWriter writes to a freshly truncated (all-zero, sparse) file and
// skips every 4 KiB-aligned chunk that is all zeros, so those regions stay
// holes. It is only correct on regions that still read as zeros.
type sparseWriter struct {
	f *os.File
}

// WriteAt implements io.WriterAt. Consecutive non-zero chunks go out in
// one write.
func (w *sparseWriter) WriteAt(p []byte, off int64) (int, error) {
	runStart := -1 // start of the pending run of non-zero chunks in p
	flush := func(end int) error {
		if runStart < 0 {
			return nil
		}
		if _, err := w.f.WriteAt(p[runStart:end], off+int64(runStart)); err != nil {
			return fmt.Errorf("writing %s at offset %d: %w", w.f.Name(), off+int64(runStart), err)
		}
		runStart = -1
		return nil
	}
	for n := 0; n < len(p); {
		// Chunk boundaries follow file offsets, not the buffer.
		end := min(len(p), n+int(sparseChunk-(off+int64(n))%sparseChunk))
		if allZero(p[n:end]) {
			if err := flush(n); err != nil {
				return n, err
			}
		} else if runStart < 0 {
			runStart = n
		}
		n = end
	}
	if err := flush(len(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
