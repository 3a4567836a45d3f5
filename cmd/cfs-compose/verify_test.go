package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/cfs-compose/cfs-compose/internal/gpt"
)

// signedFixture is one fully signed compose (cosign and Secure Boot),
// built once for the tests of this file.
var signedFixture struct {
	once sync.Once
	keys string
	dir  string
	err  error
}

func signedCompose(t *testing.T) (keys, dir string) {
	t.Helper()
	signedFixture.once.Do(func() {
		base, err := os.MkdirTemp("", "cfs-verify-fixture-")
		if err != nil {
			signedFixture.err = err
			return
		}
		fixtureDirs = append(fixtureDirs, base)
		keys := filepath.Join(base, "keys")
		if _, err := signingGenerate(keys); err != nil {
			signedFixture.err = err
			return
		}
		m := testManifests{"testbed": {"x86_64": variantConfig("testbed", keys, true, true)}}
		rec := buildFixture(t, m, filepath.Join(base, "cache"), filepath.Join(base, "out"))
		signedFixture.keys, signedFixture.dir = keys, rec.Dir
	})
	if signedFixture.err != nil {
		t.Fatal(signedFixture.err)
	}
	return signedFixture.keys, signedFixture.dir
}

// row finds "FILE  CHECK  RESULT  DETAIL" in a verify table.
func hasRow(table, file, check, result, detail string) bool {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(file) + ` +` + regexp.QuoteMeta(check) + ` +` + result + ` +.*` + regexp.QuoteMeta(detail))
	return re.MatchString(table)
}

func TestVerifyGoodCompose(t *testing.T) {
	keys, dir := signedCompose(t)
	c, err := openCompose(dir)
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Targets[0]
	if tg.Composefs == "" || tg.UKI == "" || tg.Raw == "" {
		t.Fatalf("fixture target %+v", tg)
	}
	// With the keys compose.json records, and with explicit ones.
	for _, args := range [][]string{
		{"verify", dir},
		{"verify", dir, "--key", filepath.Join(keys, "cosign.pub"), "--db-cert", filepath.Join(keys, "db.crt")},
	} {
		code, out, errOut := runCLI(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
		for _, r := range [][3]string{
			{"SHA256SUMS", "sig", "key "},
			{"SHA256SUMS", "bundle", "key "},
			{tg.Composefs, "sha256", ""},
			{tg.Composefs, "sig", ""},
			{tg.Composefs, "bundle", ""},
			{tg.UKI, "authenticode", "signed by CN=cfs-compose test db"},
			{tg.UKI, "composefs-digest", "composefs="},
			{tg.Raw, "bundle", ""},
			{tg.Raw, "disk-uki", "EFI/BOOT/BOOTX64.EFI, EFI/Linux/testbed.efi match"},
			{tg.Raw, "disk-image", "composefs/images/"},
			{tg.Raw, "disk-objects", "all 3 objects"},
			{tg.Raw + ".sig", "sha256", ""},
		} {
			if !hasRow(out, r[0], r[1], "ok", r[2]) {
				t.Errorf("%v: no ok row %q:\n%s", args, r, out)
			}
		}
		if !strings.Contains(out, "OK: all ") {
			t.Errorf("no summary:\n%s", out)
		}
	}
	code, out, _ := runCLI("verify", dir, "--format", "json")
	var rep struct {
		OK      bool `json:"ok"`
		Results []struct {
			File, Check, Detail string
			OK                  bool
		} `json:"results"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || !rep.OK || len(rep.Results) < 15 {
		t.Fatalf("json: exit %d, %+v\n%s", code, rep, out)
	}
}

func TestVerifyTampered(t *testing.T) {
	keys, dir := signedCompose(t)
	c, err := openCompose(dir)
	if err != nil {
		t.Fatal(err)
	}
	tg := c.Targets[0]
	other := testKeys(t)
	tests := []struct {
		name   string
		change func(t *testing.T, dir string)
		args   []string
		file   string // the failed row
		check  string
		detail string
	}{
		{"artifact byte changed", func(t *testing.T, d string) { flipByte(t, filepath.Join(d, tg.Composefs), 100) }, nil,
			tg.Composefs, "sha256", "SHA256SUMS lists"},
		{"signature removed", func(t *testing.T, d string) { remove(t, d, tg.UKI+".sig") }, nil,
			tg.UKI + ".sig", "sha256", "no such file"},
		{"both signatures removed", func(t *testing.T, d string) { remove(t, d, tg.Raw+".sig", tg.Raw+".sigstore.json") }, nil,
			tg.Raw, "sig", "no .sig or .sigstore.json"},
		{"SHA256SUMS signature removed", func(t *testing.T, d string) { remove(t, d, "SHA256SUMS.sig", "SHA256SUMS.sigstore.json") }, nil,
			"SHA256SUMS", "sig", "no .sig or .sigstore.json"},
		{"signature of another file", func(t *testing.T, d string) {
			copyFileT(t, filepath.Join(d, tg.Raw+".sig"), filepath.Join(d, tg.Composefs+".sig"))
		}, nil, tg.Composefs, "sig", "signature does not verify"},
		{"UKI cmdline digest edited", func(t *testing.T, d string) { editCmdlineDigest(t, filepath.Join(d, tg.UKI)) }, nil,
			tg.UKI, "composefs-digest", "has fs-verity digest"},
		{"object missing from the disk", func(t *testing.T, d string) { removeObject(t, filepath.Join(d, tg.Raw)) }, nil,
			tg.Raw, "disk-objects", "1 of 3 objects of " + filepath.Base(tg.Composefs) + " not in composefs/objects"},
		{"wrong cosign key", nil, []string{"--key", filepath.Join(other, "cosign.pub")},
			"SHA256SUMS", "sig", "signature does not verify"},
		{"wrong db certificate", nil, []string{"--db-cert", filepath.Join(other, "db.crt")},
			tg.UKI, "authenticode", "signer is not in the db"},
		// issue 13 item 18: these made relic panic.
		// The UKI is damaged and SHA256SUMS (whose signature then fails)
		// made to list it, so the Authenticode check reads it.
		{"UKI with an empty optional header", func(t *testing.T, d string) {
			setOptHeaderSize(t, filepath.Join(d, tg.UKI), 0)
			relist(t, d, tg.UKI)
		}, []string{"--db-cert", filepath.Join(keys, "db.crt")}, tg.UKI, "authenticode", "malformed PE image"},
		{"UKI truncated", func(t *testing.T, d string) {
			truncateFile(t, filepath.Join(d, tg.UKI), 300)
			relist(t, d, tg.UKI)
		}, []string{"--db-cert", filepath.Join(keys, "db.crt")}, tg.UKI, "authenticode", "malformed PE image"},
	}
	_ = keys
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := copyTree(t, dir)
			if tc.change != nil {
				tc.change(t, d)
			}
			code, out, errOut := runCLI(append([]string{"verify", d}, tc.args...)...)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
			}
			if !hasRow(out, tc.file, tc.check, "FAIL", tc.detail) {
				t.Fatalf("no FAIL row %s %s %q:\n%s", tc.file, tc.check, tc.detail, out)
			}
			if !strings.Contains(out, "FAILED: ") {
				t.Errorf("no summary:\n%s", out)
			}
		})
	}
}

// setOptHeaderSize sets SizeOfOptionalHeader in a PE file's COFF header.
func setOptHeaderSize(t *testing.T, p string, n uint16) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	pe := int(b[0x3c]) | int(b[0x3d])<<8 | int(b[0x3e])<<16 | int(b[0x3f])<<24
	b[pe+4+16], b[pe+4+17] = byte(n), byte(n>>8)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// relist rewrites the SHA256SUMS line of rel to its current digest.
func relist(t *testing.T, dir, rel string) {
	t.Helper()
	sums := filepath.Join(dir, "SHA256SUMS")
	b, err := os.ReadFile(sums)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	found := false
	for i, l := range lines {
		if strings.HasSuffix(strings.TrimSpace(l), " "+rel) || strings.HasSuffix(strings.TrimSpace(l), "*"+rel) {
			lines[i] = fmt.Sprintf("%x  %s\n", sha256.Sum256(data), rel)
			found = true
		}
	}
	if !found {
		t.Fatalf("SHA256SUMS does not list %s:\n%s", rel, b)
	}
	if err := os.WriteFile(sums, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func truncateFile(t *testing.T, p string, size int64) {
	t.Helper()
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, dir string, rels ...string) {
	t.Helper()
	for _, r := range rels {
		if err := os.Remove(filepath.Join(dir, filepath.FromSlash(r))); err != nil {
			t.Fatal(err)
		}
	}
}

func copyFileT(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// editCmdlineDigest changes one hex digit of composefs=<hex> in a UKI's
// .cmdline section (the bytes, in place).
func editCmdlineDigest(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("composefs="))
	if i < 0 {
		t.Fatal("no composefs= in the UKI")
	}
	j := i + len("composefs=") + 10
	if b[j] == '0' {
		b[j] = '1'
	} else {
		b[j] = '0'
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// removeObject deletes one object from the root partition of a raw disk
// with debugfs -w (the file system is changed in place, not mounted).
func removeObject(t *testing.T, raw string) {
	t.Helper()
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	tbl, err := gpt.Read(f, st.Size(), 512)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var off int64 = -1
	for _, p := range tbl.Partitions {
		if p.Name == "root" {
			off = int64(p.FirstLBA) * 512
		}
	}
	dev := fmt.Sprintf("%s?offset=%d", raw, off)
	out, err := exec.Command("debugfs", "-R", "ls -p /composefs/objects", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v: %s", err, out)
	}
	m := regexp.MustCompile(`/040755/0/0/([0-9a-f]{2})//`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no object directory:\n%s", out)
	}
	sub := "/composefs/objects/" + string(m[1])
	out, err = exec.Command("debugfs", "-R", "ls -p "+sub, dev).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	n := regexp.MustCompile(`/100644/0/0/([0-9a-f]{62})/`).FindSubmatch(out)
	if n == nil {
		t.Fatalf("no object in %s:\n%s", sub, out)
	}
	if out, err := exec.Command("debugfs", "-w", "-R", "rm "+sub+"/"+string(n[1]), dev).CombinedOutput(); err != nil || bytes.Contains(out, []byte("rm:")) {
		t.Fatalf("debugfs rm: %v: %s", err, out)
	}
}
