package main

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
)

// fs-verity parameters composefs uses: SHA-256, 4096-byte blocks, no salt.
const verityBlock = 4096

// verityDigest computes the fs-verity file digest of r's contents in
// userspace (used when the filesystem cannot measure the file): the
// SHA-256 Merkle tree over 4096-byte blocks, then SHA-256 of the 256-byte
// fsverity_descriptor. It matches the kernel's FS_IOC_MEASURE_VERITY and
// `fsverity digest`. (A local copy: internal/fsverity is not on main yet.)
func verityDigest(r io.Reader) ([32]byte, error) {
	var level []byte // concatenated hashes of the current level
	var size uint64
	block := make([]byte, verityBlock)
	for {
		n, err := io.ReadFull(r, block)
		if n > 0 {
			clear(block[n:])
			h := sha256.Sum256(block)
			level = append(level, h[:]...)
			size += uint64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return [32]byte{}, err
		}
	}
	var root [32]byte
	if size > 0 {
		for len(level) > sha256.Size {
			var next []byte
			for off := 0; off < len(level); off += verityBlock {
				clear(block)
				copy(block, level[off:min(off+verityBlock, len(level))])
				h := sha256.Sum256(block)
				next = append(next, h[:]...)
			}
			level = next
		}
		copy(root[:], level)
	}
	var desc [256]byte
	desc[0] = 1  // version
	desc[1] = 1  // FS_VERITY_HASH_ALG_SHA256
	desc[2] = 12 // log2(block size)
	binary.LittleEndian.PutUint64(desc[8:], size)
	copy(desc[16:], root[:])
	return sha256.Sum256(desc[:]), nil
}
