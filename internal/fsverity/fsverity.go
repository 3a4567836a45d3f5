// Package fsverity computes fs-verity file digests: the SHA-256 Merkle-tree
// digest the Linux kernel reports for a file with fs-verity enabled
// (FS_IOC_MEASURE_VERITY) and that `fsverity digest` prints.
//
// Only the parameters composefs uses are supported: hash algorithm SHA-256,
// 4096-byte Merkle-tree blocks and no salt. The digest of empty input follows
// the kernel (an all-zero root hash), not libcomposefs 1.0.8, which hashed one
// zero block instead.
//
// The algorithm: the data is split into 4096-byte blocks, the last one
// zero-padded, and every block is hashed with SHA-256. The concatenated hashes
// are split into blocks again (128 hashes per block, the last block
// zero-padded) and hashed, level by level, until one hash remains: the root
// hash (for data of at most one block it is the hash of that block). The digest
// is the SHA-256 of a 256-byte descriptor holding the version (1), the
// algorithm (1 = SHA-256), log2 of the block size (12), the salt size (0), the
// data size and the root hash.
//
// [Digest] is a streaming io.Writer; it hashes large writes on all CPUs.
package fsverity

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"runtime"
	"sync"
)

const (
	// BlockSize is the Merkle-tree block size in bytes.
	BlockSize = 4096
	// Size is the size of a digest in bytes.
	Size = sha256.Size

	// parallelBlocks is the number of whole data blocks in one Write from
	// which the level-0 hashing is spread over several goroutines.
	parallelBlocks = 64
	// copyBufferSize is the read size of ReadFrom.
	copyBufferSize = 1 << 20
)

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

var (
	zeroBlock     [BlockSize]byte
	zeroBlockHash = sha256.Sum256(zeroBlock[:])
)

// level is one level of the Merkle tree under construction: the hashes
// of the current, not yet complete tree block, and how many hashes the level
// has received in total.
type level struct {
	buf   [BlockSize]byte
	n     int
	count int64
}

// Digest computes the fs-verity digest of the bytes written to it. The zero
// value is not usable; call [New]. A Digest is not safe for concurrent use.
type Digest struct {
	size   int64
	buf    [BlockSize]byte // partial data block
	nbuf   int
	levels []*level
	// hashes is scratch space for the level-0 hashes of a large Write.
	hashes []byte
}

// New returns a Digest of empty input.
func New() *Digest {
	return &Digest{}
}

// Reset discards everything written so far.
func (d *Digest) Reset() {
	d.size = 0
	d.nbuf = 0
	d.levels = nil
}

// Len returns the number of bytes written so far.
func (d *Digest) Len() int64 { return d.size }

// Write adds p to the data. It never returns an error.
func (d *Digest) Write(p []byte) (int, error) {
	n := len(p)
	d.size += int64(n)
	if d.nbuf > 0 {
		c := copy(d.buf[d.nbuf:], p)
		d.nbuf += c
		p = p[c:]
		if d.nbuf < BlockSize {
			return n, nil
		}
		d.addHash(0, hashDataBlock(d.buf[:]))
		d.nbuf = 0
	}
	full := len(p) / BlockSize
	if full >= parallelBlocks && runtime.GOMAXPROCS(0) > 1 {
		d.hashParallel(p[:full*BlockSize])
	} else {
		for i := 0; i < full; i++ {
			d.addHash(0, hashDataBlock(p[i*BlockSize:(i+1)*BlockSize]))
		}
	}
	p = p[full*BlockSize:]
	d.nbuf = copy(d.buf[:], p)
	return n, nil
}

// ReadFrom writes all of r to d in large chunks (so that io.Copy uses all
// CPUs for large inputs) and returns the number of bytes read.
func (d *Digest) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			d.Write(buf[:n])
			total += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// hashParallel hashes whole data blocks on all CPUs and adds the hashes to
// level 0 in order.
func (d *Digest) hashParallel(p []byte) {
	blocks := len(p) / BlockSize
	if cap(d.hashes) < blocks*Size {
		d.hashes = make([]byte, blocks*Size)
	}
	hashes := d.hashes[:blocks*Size]
	workers := runtime.GOMAXPROCS(0)
	if workers > blocks/16 {
		workers = blocks / 16
	}
	per := (blocks + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*per, (w+1)*per
		if hi > blocks {
			hi = blocks
		}
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				h := hashDataBlock(p[i*BlockSize : (i+1)*BlockSize])
				copy(hashes[i*Size:], h[:])
			}
		}()
	}
	wg.Wait()
	for i := 0; i < blocks; i++ {
		d.addHash(0, [Size]byte(hashes[i*Size:(i+1)*Size]))
	}
}

// hashDataBlock hashes one full data block; all-zero blocks (sparse files)
// use a precomputed hash.
func hashDataBlock(b []byte) [Size]byte {
	if b[0] == 0 && bytes.Equal(b, zeroBlock[:]) {
		return zeroBlockHash
	}
	return sha256.Sum256(b)
}

// addHash appends a hash to a tree level, hashing the level's block into the
// next level when it is full.
func (d *Digest) addHash(l int, h [Size]byte) {
	for {
		if l == len(d.levels) {
			d.levels = append(d.levels, &level{})
		}
		lv := d.levels[l]
		copy(lv.buf[lv.n:], h[:])
		lv.n += Size
		lv.count++
		if lv.n < BlockSize {
			return
		}
		h = sha256.Sum256(lv.buf[:])
		lv.n = 0
		l++
	}
}

// Sum returns the digest of the data written so far. It does not change the
// state: writing may continue afterwards.
func (d *Digest) Sum() [Size]byte {
	var root [Size]byte
	if d.size > 0 {
		root = d.rootHash()
	}
	var desc [256]byte
	desc[0] = 1  // version
	desc[1] = 1  // FS_VERITY_HASH_ALG_SHA256
	desc[2] = 12 // log2(BlockSize)
	desc[3] = 0  // salt size
	binary.LittleEndian.PutUint64(desc[8:], uint64(d.size))
	copy(desc[16:], root[:])
	return sha256.Sum256(desc[:])
}

// rootHash finishes a copy of the tree and returns its root hash.
func (d *Digest) rootHash() [Size]byte {
	c := &Digest{levels: make([]*level, len(d.levels))}
	for i, lv := range d.levels {
		cp := *lv
		c.levels[i] = &cp
	}
	if d.nbuf > 0 {
		var block [BlockSize]byte
		copy(block[:], d.buf[:d.nbuf])
		c.addHash(0, sha256.Sum256(block[:]))
	}
	for l := 0; ; l++ {
		lv := c.levels[l]
		if l == len(c.levels)-1 && lv.count == 1 {
			return [Size]byte(lv.buf[:Size])
		}
		if lv.n > 0 {
			clear(lv.buf[lv.n:])
			h := sha256.Sum256(lv.buf[:])
			lv.n = 0
			c.addHash(l+1, h)
		}
	}
}

// Sum returns the fs-verity digest of data.
func Sum(data []byte) [Size]byte {
	d := New()
	d.Write(data)
	return d.Sum()
}

// SumReader returns the fs-verity digest of everything r yields and the
// number of bytes read.
func SumReader(r io.Reader) ([Size]byte, int64, error) {
	d := New()
	n, err := d.ReadFrom(r)
	if err != nil {
		return [Size]byte{}, n, err
	}
	return d.Sum(), n, nil
}

// Hex returns the lower-case hexadecimal form of a digest.
func Hex(d [Size]byte) string { return hex.EncodeToString(d[:]) }
