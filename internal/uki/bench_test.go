package uki

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"
)

// BenchmarkBuild assembles a real x86_64 UKI (trixie stub, cloud kernel, a
// 16 MiB initrd) into a memory buffer and reports the time against copying
// the same input bytes into that buffer once (copy-ratio): Build reads
// every payload twice, once for the PE checksum and once to write.
func BenchmarkBuild(b *testing.B) {
	in := fetchInputs(b, "amd64")
	stub, err := os.ReadFile(in.stub)
	if err != nil {
		b.Fatal(err)
	}
	kernel, err := os.ReadFile(in.kernel)
	if err != nil {
		b.Fatal(err)
	}
	initrd := bytes.Repeat([]byte("initramfs"), 16<<20/9)
	s := Sections{Linux: bytes.NewReader(kernel), Initrd: bytes.NewReader(initrd), Cmdline: "console=ttyS0 composefs=" + testDigest, OSRel: testOSRel, Uname: in.uname}

	var sink bytes.Buffer
	sink.Grow(len(stub) + len(kernel) + len(initrd) + 1<<20)
	// Reference: copy the inputs into the buffer once.
	start := time.Now()
	const refRounds = 20
	for i := 0; i < refRounds; i++ {
		sink.Reset()
		for _, p := range [][]byte{stub, kernel, initrd} {
			io.Copy(&sink, bytes.NewReader(p))
		}
	}
	ref := time.Since(start) / refRounds

	b.SetBytes(int64(len(stub) + len(kernel) + len(initrd)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sink.Reset()
		if err := Build(&sink, bytes.NewReader(stub), int64(len(stub)), s); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(ref), "copy-ratio")
}
