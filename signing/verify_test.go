package signing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cfs-compose/cfs-compose/signing/internal/fixture"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

var keyDirs sync.Map // name -> key directory, generated once per test run

// TestMain removes the shared key directories after the run.
func TestMain(m *testing.M) {
	code := m.Run()
	keyDirs.Range(func(_, d any) bool {
		os.RemoveAll(d.(string))
		return true
	})
	os.Exit(code)
}

// keySet returns a key directory made by GenerateKeys, one per name.
func keySet(t *testing.T, name string) string {
	t.Helper()
	if d, ok := keyDirs.Load(name); ok {
		return d.(string)
	}
	d, err := os.MkdirTemp("", "signing-keys-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateKeys(d, GenerateOptions{Passphrase: []byte("pw"), Force: true}); err != nil {
		t.Fatal(err)
	}
	keyDirs.Store(name, d)
	return d
}

// signedDir makes a compose-like directory signed with key set keyName:
// a composefs image, a signed UKI and a disk image, SHA256SUMS, and
// detached signatures for all.
func signedDir(t *testing.T, keyName string) (dir string, pub *ecdsa.PublicKey, db *x509.Certificate) {
	t.Helper()
	ctx := context.Background()
	dir = t.TempDir()
	keys := keySet(t, keyName)
	k, err := LoadCosignKey(filepath.Join(keys, CosignKeyFile), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := secureboot.LoadKeyPair(filepath.Join(keys, "db.crt"), filepath.Join(keys, "db.key"))
	if err != nil {
		t.Fatal(err)
	}
	writeBlob(t, dir, "image.composefs", bytes.Repeat([]byte("erofs"), 1000))
	if err := os.MkdirAll(filepath.Join(dir, "EFI/Linux"), 0o755); err != nil {
		t.Fatal(err)
	}
	uki := writeBlob(t, dir, "EFI/Linux/fedora.efi", fixture.EFIStub(t))
	if err := secureboot.SignPE(ctx, kp, uki, uki); err != nil {
		t.Fatal(err)
	}
	writeBlob(t, dir, "disk.raw", bytes.Repeat([]byte{0}, 1<<20))
	var sums []Checksum
	for _, name := range []string{"image.composefs", "EFI/Linux/fedora.efi", "disk.raw"} {
		p := filepath.Join(dir, name)
		d, err := HashFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, Checksum{Name: name, SHA256: d})
		if err := SignFile(ctx, k, p, d); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := WriteSums(&buf, sums); err != nil {
		t.Fatal(err)
	}
	sp := writeBlob(t, dir, SumsFile, buf.Bytes())
	if err := SignFile(ctx, k, sp, nil); err != nil {
		t.Fatal(err)
	}
	return dir, k.Public().(*ecdsa.PublicKey), kp.Cert
}

func TestVerifyDir(t *testing.T) {
	ctx := context.Background()
	dir, pub, db := signedDir(t, "main")
	rep, err := VerifyDir(ctx, dir, SumsFile, VerifyOptions{Key: pub, DB: []*x509.Certificate{db}})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("report not OK:\n%s", table.String())
	}
	// 2 rows for SHA256SUMS, 3 for each artifact, 1 for the UKI's Authenticode.
	if len(rep.Results) != 2+3*3+1 {
		t.Errorf("%d results:\n%s", len(rep.Results), table.String())
	}
	if !strings.Contains(table.String(), "EFI/Linux/fedora.efi  authenticode  ok      signed by CN=cfs-compose test db") {
		t.Errorf("table:\n%s", table.String())
	}

	_, otherPub, otherDB := signedDir(t, "other")
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
		opts   VerifyOptions
		fail   string // "name check" of the failing row
		detail string
	}{
		{"tampered disk", func(t *testing.T, dir string) { appendTo(t, filepath.Join(dir, "disk.raw"), "x") }, VerifyOptions{Key: pub}, "disk.raw sha256", "SHA256SUMS lists"},
		{"missing file", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "disk.raw")) }, VerifyOptions{}, "disk.raw sha256", "no such file"},
		{"missing signatures", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "image.composefs.sig"))
			os.Remove(filepath.Join(dir, "image.composefs.sigstore.json"))
		}, VerifyOptions{Key: pub}, "image.composefs sig", "no .sig or .sigstore.json"},
		{"bad bundle only", func(t *testing.T, dir string) {
			copyFile(t, filepath.Join(dir, "disk.raw.sigstore.json"), filepath.Join(dir, "image.composefs.sigstore.json"))
		}, VerifyOptions{Key: pub}, "image.composefs bundle", "image.composefs.sigstore.json"},
		{"wrong key", nil, VerifyOptions{Key: otherPub}, "SHA256SUMS sig", "does not verify"},
		{"wrong db", nil, VerifyOptions{DB: []*x509.Certificate{otherDB}}, "EFI/Linux/fedora.efi authenticode", "not in the db"},
		{"unsigned UKI", func(t *testing.T, dir string) {
			// Re-list the unsigned stub so only Authenticode fails.
			writeBlob(t, dir, "EFI/Linux/fedora.efi", fixture.EFIStub(t))
			d, _ := HashFile(filepath.Join(dir, "EFI/Linux/fedora.efi"))
			var buf bytes.Buffer
			WriteSums(&buf, []Checksum{{Name: "EFI/Linux/fedora.efi", SHA256: d}})
			writeBlob(t, dir, SumsFile, buf.Bytes())
		}, VerifyOptions{DB: []*x509.Certificate{db}}, "EFI/Linux/fedora.efi authenticode", "not signed"},
		{"tampered SHA256SUMS", func(t *testing.T, dir string) { appendTo(t, filepath.Join(dir, SumsFile), "# x\n") }, VerifyOptions{Key: pub}, "SHA256SUMS sig", "does not verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _, _ := signedDir(t, "main")
			if tc.change != nil {
				tc.change(t, d)
			}
			rep, err := VerifyDir(ctx, d, SumsFile, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatal("report OK despite the damage")
			}
			var found bool
			for _, r := range rep.Results {
				if !r.OK && r.Name+" "+r.Check == tc.fail && strings.Contains(r.Detail, tc.detail) {
					found = true
				}
			}
			if !found {
				var table strings.Builder
				rep.WriteTable(&table)
				t.Fatalf("no failed row %q with %q:\n%s", tc.fail, tc.detail, table.String())
			}
		})
	}

	t.Run("NeedSignature", func(t *testing.T) {
		d, _, _ := signedDir(t, "main")
		os.Remove(filepath.Join(d, "disk.raw.sig"))
		os.Remove(filepath.Join(d, "disk.raw.sigstore.json"))
		tests := []struct {
			name string
			need func(string) bool
			ok   bool
			rows int
		}{
			// SHA256SUMS: sig, bundle; composefs and UKI: sha256, sig,
			// bundle; disk.raw: sha256 (+ a failed sig row when needed).
			{"nil means every file", nil, false, 2 + 3 + 3 + 2},
			{"disk.raw exempt", func(n string) bool { return n != "disk.raw" }, true, 2 + 3 + 3 + 1},
			{"nothing needed, present ones still checked", func(string) bool { return false }, true, 2 + 3 + 3 + 1},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				rep, err := VerifyDir(ctx, d, SumsFile, VerifyOptions{Key: pub, NeedSignature: tc.need})
				if err != nil {
					t.Fatal(err)
				}
				var table strings.Builder
				rep.WriteTable(&table)
				if rep.OK() != tc.ok || len(rep.Results) != tc.rows {
					t.Fatalf("OK %v (want %v), %d rows (want %d):\n%s", rep.OK(), tc.ok, len(rep.Results), tc.rows, table.String())
				}
			})
		}
		// Exempt files with a signature file present are still checked.
		copyFile(t, filepath.Join(d, "image.composefs.sigstore.json"), filepath.Join(d, "disk.raw.sigstore.json"))
		rep, err := VerifyDir(ctx, d, SumsFile, VerifyOptions{Key: pub, NeedSignature: func(string) bool { return false }})
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			t.Fatal("a wrong bundle on an exempt file passed")
		}
	})

	t.Run("bad checksum file", func(t *testing.T) {
		d := t.TempDir()
		writeBlob(t, d, SumsFile, []byte("garbage\n"))
		if _, err := VerifyDir(ctx, d, SumsFile, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "SHA256SUMS: signing: malformed checksum file: line 1") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("empty report is not OK", func(t *testing.T) {
		if (&Report{}).OK() {
			t.Fatal("empty report OK")
		}
	})
}

func TestIsPE(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{"stub", fixture.EFIStub(t), true},
		{"empty", nil, false},
		{"MZ only", []byte("MZ"), false},
		{"MZ bad offset", append([]byte("MZ"), make([]byte, 100)...), false},
		{"text", []byte(strings.Repeat("hello ", 20)), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := IsPE(writeBlob(t, dir, "f", tc.data))
			if err != nil || got != tc.want {
				t.Fatalf("IsPE = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
