package main

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"
)

// BenchmarkVerityDigest hashes a 16 MiB image the way cfs-init does when
// the filesystem cannot measure it, and reports the time against one plain
// SHA-256 pass over the same bytes (sha256-ratio; the Merkle tree adds
// padding per block and 1/128 more hashing).
func BenchmarkVerityDigest(b *testing.B) {
	data := bytes.Repeat([]byte("composefs image "), 1<<20)
	start := time.Now()
	const refRounds = 10
	for i := 0; i < refRounds; i++ {
		sha256.Sum256(data)
	}
	ref := time.Since(start) / refRounds
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := verityDigest(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(ref), "sha256-ratio")
}
