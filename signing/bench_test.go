package signing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/signing/internal/fixture"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// BenchmarkSignCompose measures what signing adds to a compose beyond the
// hashing it needs anyway. Each iteration does, on the same files:
//
//   - reference: SHA-256 of the composefs image, the UKI, a 512 MiB disk
//     image and SHA256SUMS (what writing SHA256SUMS costs);
//   - signing: load both keys (cosign.key is scrypt-encrypted), Authenticode
//     -sign the UKI (its PE hash, PKCS#7, a rewritten copy, verification),
//     hash everything (the signed UKI included), write SHA256SUMS and write
//     .sig + .sigstore.json for all four from the digests.
//
// Reported: hash-ms/op, sign-ms/op, overhead-ms/op (sign - hash; target
// < 1000) and sign/hash (ratio).
func BenchmarkSignCompose(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	keys := filepath.Join(dir, "keys")
	if _, err := GenerateKeys(keys, GenerateOptions{Passphrase: []byte("bench")}); err != nil {
		b.Fatal(err)
	}
	block := make([]byte, 1<<20)
	if _, err := rand.Read(block); err != nil {
		b.Fatal(err)
	}
	writeMiB := func(name string, prefix []byte, mib int) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(prefix); err != nil {
			b.Fatal(err)
		}
		for range mib {
			if _, err := f.Write(block); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		return p
	}
	composefs := writeMiB("fedora.composefs", nil, 24)
	// A UKI-sized PE: the real systemd stub followed by 40 MiB that the
	// Authenticode hash covers like the .linux and .initrd sections.
	ukiUnsigned := writeMiB("fedora.unsigned.efi", fixture.EFIStub(b), 40)
	uki := filepath.Join(dir, "fedora.efi")
	disk := writeMiB("fedora.x86_64.raw", nil, 512)
	sums := filepath.Join(dir, "SHA256SUMS")
	artifacts := []string{composefs, uki, disk}

	hashAll := func(paths []string) [][]byte {
		out := make([][]byte, len(paths))
		for i, p := range paths {
			d, err := HashFile(p)
			if err != nil {
				b.Fatal(err)
			}
			out[i] = d
		}
		return out
	}
	copyFile := func(from, to string) {
		in, err := os.Open(from)
		if err != nil {
			b.Fatal(err)
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			b.Fatal(err)
		}
		if err := out.Close(); err != nil {
			b.Fatal(err)
		}
	}
	// The reference run hashes the same set: an unsigned UKI in place and
	// an existing SHA256SUMS.
	copyFile(ukiUnsigned, uki)
	if err := os.WriteFile(sums, []byte(strings.Repeat("0", 64)+"  x\n"), 0o644); err != nil {
		b.Fatal(err)
	}

	var hashDur, signDur time.Duration
	for b.Loop() {
		t0 := time.Now()
		hashAll(append(artifacts, sums))
		t1 := time.Now()

		k, err := LoadCosignKey(filepath.Join(keys, CosignKeyFile), []byte("bench"))
		if err != nil {
			b.Fatal(err)
		}
		kp, err := secureboot.LoadKeyPair(filepath.Join(keys, "db.crt"), filepath.Join(keys, "db.key"))
		if err != nil {
			b.Fatal(err)
		}
		if err := secureboot.SignPE(ctx, kp, ukiUnsigned, uki); err != nil {
			b.Fatal(err)
		}
		digests := hashAll(artifacts)
		var sb strings.Builder
		for i, p := range artifacts {
			fmt.Fprintf(&sb, "%s  %s\n", hex.EncodeToString(digests[i]), filepath.Base(p))
		}
		if err := os.WriteFile(sums, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		sumsDigest, err := HashFile(sums)
		if err != nil {
			b.Fatal(err)
		}
		for i, p := range append(artifacts, sums) {
			d := sumsDigest
			if i < len(artifacts) {
				d = digests[i]
			}
			if err := SignFile(ctx, k, p, d); err != nil {
				b.Fatal(err)
			}
		}
		t2 := time.Now()
		hashDur += t1.Sub(t0)
		signDur += t2.Sub(t1)
	}
	n := float64(b.N)
	hashMs := hashDur.Seconds() * 1000 / n
	signMs := signDur.Seconds() * 1000 / n
	b.ReportMetric(hashMs, "hash-ms/op")
	b.ReportMetric(signMs, "sign-ms/op")
	b.ReportMetric(signMs-hashMs, "overhead-ms/op")
	b.ReportMetric(signMs/hashMs, "sign/hash")
}
