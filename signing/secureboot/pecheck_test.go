package secureboot

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/uki/ukitest"
)

var (
	signedStubOnce sync.Once
	signedStubData []byte
	signedStubErr  error
)

// signedStub is a small synthetic PE32+ image signed with the test db key.
func signedStub(t testing.TB) (signed, unsigned []byte, db *x509.Certificate) {
	t.Helper()
	p, _ := pkis(t)
	unsigned = ukitest.Stub(4, 0x400, 0x1000, 0x200, nil)
	signedStubOnce.Do(func() {
		dir, err := os.MkdirTemp("", "signed-stub")
		if err != nil {
			signedStubErr = err
			return
		}
		defer os.RemoveAll(dir)
		in, out := filepath.Join(dir, "stub.efi"), filepath.Join(dir, "stub.signed.efi")
		if signedStubErr = os.WriteFile(in, unsigned, 0o644); signedStubErr != nil {
			return
		}
		if signedStubErr = SignPE(context.Background(), &KeyPair{Cert: p.DB.Cert, Key: p.DB.Key}, in, out); signedStubErr != nil {
			return
		}
		signedStubData, signedStubErr = os.ReadFile(out)
	})
	if signedStubErr != nil {
		t.Fatal(signedStubErr)
	}
	return signedStubData, unsigned, p.DB.Cert
}

// PE offsets of ukitest.Stub's headers.
const (
	stubPE      = 0x40
	stubOptSize = stubPE + 4 + 16
	stubOpt     = stubPE + 4 + 20
	stubRvaN    = stubOpt + 108
	stubCertDir = stubOpt + 112 + 4*8
)

// TestVerifyPEMalformed: truncated and damaged images are errors wrapping
// ErrMalformed (or the signature errors), never panics (issue 13 item 18:
// a SizeOfOptionalHeader below 2 made relic slice past its buffer).
func TestVerifyPEMalformed(t *testing.T) {
	signed, unsigned, db := signedStub(t)
	if _, err := VerifyPE(bytes.NewReader(signed), []*x509.Certificate{db}); err != nil {
		t.Fatalf("the intact image: %v", err)
	}
	set16 := func(off int, v uint16) []byte {
		b := bytes.Clone(signed)
		binary.LittleEndian.PutUint16(b[off:], v)
		return b
	}
	set32 := func(off int, v uint32) []byte {
		b := bytes.Clone(signed)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	tests := []struct {
		name string
		data []byte
		is   error
	}{
		{"empty", nil, ErrMalformed},
		{"truncated in the DOS header", signed[:10], ErrMalformed},
		{"truncated before the PE header", signed[:stubPE+2], ErrMalformed},
		{"truncated in the optional header", signed[:stubOpt+100], ErrMalformed},
		{"truncated in the section table", signed[:stubOpt+240+50], ErrMalformed},
		{"truncated in the section data", signed[:0x600], ErrMalformed},
		{"truncated in the signature", signed[:len(signed)-10], ErrMalformed},
		{"optional header of 0 bytes", set16(stubOptSize, 0), ErrMalformed},
		{"optional header of 1 byte", set16(stubOptSize, 1), ErrMalformed},
		{"optional header of 100 bytes", set16(stubOptSize, 100), ErrMalformed},
		{"bad optional header magic", set16(stubOpt, 0x999), ErrMalformed},
		{"4 data directories", set32(stubRvaN, 4), ErrMalformed},
		{"FileAlignment 0", set32(stubOpt+36, 0), ErrMalformed},
		{"PE header beyond the end", set32(0x3c, 0xFFFFFFF0), ErrMalformed},
		{"no MZ", set16(0, 0), ErrMalformed},
		{"certificate table beyond the end", set32(stubCertDir, uint32(len(signed))), ErrMalformed},
		{"certificate table too long", set32(stubCertDir+4, 0x7FFFFFFF), ErrMalformed},
		{"unsigned", unsigned, ErrNotSigned},
		{"a changed byte in a section", func() []byte { b := bytes.Clone(signed); b[0x410] ^= 1; return b }(), ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyPE(bytes.NewReader(tc.data), []*x509.Certificate{db})
			if !errors.Is(err, tc.is) {
				t.Fatalf("VerifyPE = %v, want %v", err, tc.is)
			}
			if errors.Is(err, errLibraryFailed) {
				t.Fatalf("reached the library, which panicked: %v", err)
			}
			if _, err := ImageDigest(bytes.NewReader(tc.data)); err == nil && tc.is == ErrMalformed {
				t.Errorf("ImageDigest accepts it")
			}
		})
	}
}

// TestGuard: a panic at the library boundary becomes an ErrMalformed error.
func TestGuard(t *testing.T) {
	err := guard("testing", func() error {
		var b []byte
		_ = b[:2]
		return nil
	})
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, errLibraryFailed) {
		t.Fatalf("guard = %v", err)
	}
}

// FuzzVerifyPE feeds arbitrary images to the Authenticode verification
// entry point: it must not panic, must not reach a panic inside relic
// (which checkPE exists to prevent), and must fail only with its
// documented errors.
func FuzzVerifyPE(f *testing.F) {
	signed, unsigned, db := signedStub(f)
	f.Add(signed)
	f.Add(unsigned)
	for _, n := range []int{0, 64, stubOpt + 1, stubOpt + 240, 0x600, len(signed) - 1} {
		f.Add(signed[:n])
	}
	f.Add([]byte("MZ"))
	// The real systemd stub, unsigned and signed.
	p, _ := pkis(f)
	dir := f.TempDir()
	realStub := stubFile(f, dir, "stub.efi")
	realSigned := filepath.Join(dir, "signed.efi")
	if err := SignPE(context.Background(), p.DB, realStub, realSigned); err != nil {
		f.Fatal(err)
	}
	for _, path := range []string{realStub, realSigned} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sigs, err := VerifyPE(bytes.NewReader(data), []*x509.Certificate{db})
		if errors.Is(err, errLibraryFailed) {
			t.Fatalf("checkPE let through an image relic panics on: %v", err)
		}
		if err == nil {
			if len(sigs) == 0 {
				t.Fatal("verified without signatures")
			}
			return
		}
		for _, e := range []error{ErrMalformed, ErrNotSigned, ErrBadSignature, ErrUntrusted} {
			if errors.Is(err, e) {
				return
			}
		}
		t.Fatalf("undocumented error %v", err)
	})
}
