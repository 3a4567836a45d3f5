// Package filehash computes the SHA-256 digest of a file in one streaming
// pass. It is the project's one file-digest helper: the artifact store,
// the signing code, the stages and the fixture cache all hash files
// through it.
package filehash

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
)

// SHA256 returns the SHA-256 digest of the file name and its size in
// bytes, read once in a streaming pass. An error opening the file is
// returned as is (an [*fs.PathError] naming it).
func SHA256(name string) (sum [sha256.Size]byte, size int64, err error) {
	f, err := os.Open(name)
	if err != nil {
		return sum, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return sum, 0, fmt.Errorf("reading %s: %w", name, err)
	}
	h.Sum(sum[:0])
	return sum, n, nil
}
