package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fs-verity parameters used by composefs: SHA-256, 4096-byte blocks, no salt.
const (
	verityBlockSize = 4096
	verityHashAlgo  = 1 // FS_VERITY_HASH_ALG_SHA256
)

// verityDigest computes the fs-verity file digest (the value
// FS_IOC_MEASURE_VERITY returns and `fsverity digest` prints) of the
// content read from r, in userspace: a Merkle tree of SHA-256 over
// 4096-byte blocks, whose root hash goes into an fsverity_descriptor that
// is hashed once more.
func verityDigest(r io.Reader) ([32]byte, error) {
	var level [][32]byte // hashes of the current level's blocks
	var size uint64
	buf := make([]byte, verityBlockSize)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			size += uint64(n)
			clear(buf[n:])
			level = append(level, sha256.Sum256(buf))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return [32]byte{}, fmt.Errorf("reading data for fs-verity: %w", err)
		}
	}
	var root [32]byte
	switch len(level) {
	case 0: // empty file: the root hash is all zeros
	case 1:
		root = level[0]
	default:
		const perBlock = verityBlockSize / sha256.Size
		for len(level) > 1 {
			var next [][32]byte
			for i := 0; i < len(level); i += perBlock {
				clear(buf)
				end := min(i+perBlock, len(level))
				for j := i; j < end; j++ {
					copy(buf[(j-i)*sha256.Size:], level[j][:])
				}
				next = append(next, sha256.Sum256(buf))
			}
			level = next
		}
		root = level[0]
	}
	// struct fsverity_descriptor (256 bytes)
	var desc [256]byte
	desc[0] = 1 // version
	desc[1] = verityHashAlgo
	desc[2] = 12 // log2(block size)
	desc[3] = 0  // salt size
	// desc[4:8] sig_size: 0 in the digested descriptor
	binary.LittleEndian.PutUint64(desc[8:16], size)
	copy(desc[16:], root[:])
	return sha256.Sum256(desc[:]), nil
}

// fsverityDigest mirrors struct fsverity_digest with room for SHA-512.
type fsverityDigest struct {
	Algorithm uint16
	Size      uint16
	Digest    [64]byte
}

const fsIocMeasureVerity = 0xc0046686 // _IOWR('f', 134, struct fsverity_digest)

// measureVerity asks the kernel for the fs-verity digest of an open file.
// It fails (ENODATA, ENOTTY, EOPNOTSUPP) when the file has no fs-verity.
func measureVerity(f *os.File) (string, error) {
	d := fsverityDigest{Size: 64}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocMeasureVerity, uintptr(unsafe.Pointer(&d)))
	if errno != 0 {
		return "", errno
	}
	if d.Algorithm != verityHashAlgo || d.Size != sha256.Size {
		return "", fmt.Errorf("fs-verity algorithm %d size %d, want SHA-256", d.Algorithm, d.Size)
	}
	return hex.EncodeToString(d.Digest[:d.Size]), nil
}

// fileVerityDigest returns the fs-verity digest of the file at p: measured
// by the kernel when the file has fs-verity enabled, else computed in
// userspace. how says which.
func fileVerityDigest(p string) (digest, how string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	if d, err := measureVerity(f); err == nil {
		return d, "measured by the kernel", nil
	}
	sum, err := verityDigest(f)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", p, err)
	}
	return hex.EncodeToString(sum[:]), "computed in userspace", nil
}
