package uki

import (
	"encoding/binary"
	"io"
	"math/bits"
)

// checksummer computes the PE image checksum (the algorithm of
// imagehlp!CheckSumMappedFile): the one's-complement sum of the file as
// little-endian 16-bit words, folded to 16 bits, plus the file length.
// Callers feed it bytes whose CheckSum field is zero.
//
// Because 2^16 ≡ 1 (mod 0xffff), a little-endian 64-bit word is congruent
// to the sum of its four 16-bit halves, so the bulk is summed 8 bytes at a
// time with end-around carries and folded at the end.
type checksummer struct {
	sum     uint64
	carries uint64
	n       int64
	odd     bool
	oddByte byte
}

func (c *checksummer) add(v uint64) {
	var carry uint64
	c.sum, carry = bits.Add64(c.sum, v, 0)
	c.carries += carry
}

func (c *checksummer) Write(p []byte) (int, error) {
	n := len(p)
	c.n += int64(n)
	if c.odd && len(p) > 0 {
		c.add(uint64(c.oddByte) | uint64(p[0])<<8)
		p = p[1:]
		c.odd = false
	}
	for len(p) >= 8 {
		c.add(binary.LittleEndian.Uint64(p))
		p = p[8:]
	}
	for len(p) >= 2 {
		c.add(uint64(binary.LittleEndian.Uint16(p)))
		p = p[2:]
	}
	if len(p) == 1 {
		c.odd, c.oddByte = true, p[0]
	}
	return n, nil
}

// Sum32 returns the checksum of everything written.
func (c *checksummer) Sum32() uint32 {
	s := (c.sum & 0xffffffff) + (c.sum >> 32) + c.carries
	if c.odd {
		s += uint64(c.oddByte)
	}
	for s>>16 != 0 {
		s = (s & 0xffff) + (s >> 16)
	}
	return uint32(s) + uint32(c.n)
}

// peChecksum computes the PE checksum of the image in r (size bytes) whose
// CheckSum field is at offset off.
func peChecksum(r io.ReaderAt, size int64, off int64) (uint32, error) {
	var c checksummer
	if _, err := io.Copy(&c, io.NewSectionReader(r, 0, off)); err != nil {
		return 0, err
	}
	c.Write(make([]byte, 4))
	if _, err := io.Copy(&c, io.NewSectionReader(r, off+4, size-off-4)); err != nil {
		return 0, err
	}
	return c.Sum32(), nil
}
