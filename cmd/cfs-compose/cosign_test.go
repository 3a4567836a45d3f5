package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cosignBin returns the cosign CLI: $CFS_COSIGN, bin/cosign of the
// repository (`make cosign`, a prerequisite of `make test`), or cosign on
// $PATH. Without one the test is skipped loudly, except under CI.
func cosignBin(t *testing.T) string {
	t.Helper()
	cands := []string{os.Getenv("CFS_COSIGN"), filepath.Join("..", "..", "bin", "cosign")}
	if p, err := exec.LookPath("cosign"); err == nil {
		cands = append(cands, p)
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			abs, _ := filepath.Abs(c)
			return abs
		}
	}
	msg := "cosign CLI not found (no $CFS_COSIGN, bin/cosign or cosign on $PATH): run `make cosign`"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPING cosign interoperability: " + msg)
	return ""
}

// cosign runs the CLI hermetically (private HOME and TUF root).
func cosign(t *testing.T, bin, dir, password string, args ...string) (string, bool) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "COSIGN_PASSWORD=" + password, "TUF_ROOT=" + filepath.Join(home, "tuf")}
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("cosign %s: %v", strings.Join(args, " "), err)
	}
	return string(out), err == nil
}

// emptyTrustedRoot lets `cosign verify-blob --new-bundle-format` run
// offline with key-based bundles (docs/signing.md).
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

// TestCosignVerifiesCompose: the cosign CLI accepts the .sig and the
// bundle of every artifact of a signed compose and of its SHA256SUMS.
func TestCosignVerifiesCompose(t *testing.T) {
	bin := cosignBin(t)
	keys, dir := signedCompose(t)
	c, err := openCompose(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "trusted-root.json")
	if err := os.WriteFile(root, []byte(emptyTrustedRoot), 0o644); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(keys, "cosign.pub")
	files := append(c.Artifacts(), "SHA256SUMS")
	if len(files) != 4 {
		t.Fatalf("files %v", files)
	}
	for _, f := range files {
		out, ok := cosign(t, bin, dir, "", "verify-blob", "--key", pub, "--signature", f+".sig", "--insecure-ignore-tlog=true", f)
		if !ok || !strings.Contains(out, "Verified OK") {
			t.Errorf("cosign verify-blob --signature %s.sig:\n%s", f, out)
		}
		out, ok = cosign(t, bin, dir, "", "verify-blob", "--key", pub, "--bundle", f+".sigstore.json", "--new-bundle-format",
			"--trusted-root", root, "--insecure-ignore-tlog=true", f)
		if !ok || !strings.Contains(out, "Verified OK") {
			t.Errorf("cosign verify-blob --bundle %s.sigstore.json:\n%s", f, out)
		}
	}
	// A changed artifact is refused by cosign too.
	d := copyTree(t, dir)
	flipByte(t, filepath.Join(d, c.Targets[0].Raw), 4096)
	if out, ok := cosign(t, bin, d, "", "verify-blob", "--key", pub, "--signature", c.Targets[0].Raw+".sig", "--insecure-ignore-tlog=true", c.Targets[0].Raw); ok {
		t.Errorf("cosign accepted a changed disk image:\n%s", out)
	}
}

// TestVerifyAcceptsCosignSignatures: a compose signed by the cosign CLI
// (its own key pair, sign-blob with both outputs) passes cfs-compose
// verify.
func TestVerifyAcceptsCosignSignatures(t *testing.T) {
	bin := cosignBin(t)
	keys := testKeys(t)
	base := t.TempDir()
	m := testManifests{"testbed": {"x86_64": variantConfig("testbed", keys, false, true)}}
	rec := buildFixture(t, m, filepath.Join(base, "cache"), filepath.Join(base, "out"))
	dir := copyTree(t, rec.Dir)
	c, err := openCompose(dir)
	if err != nil {
		t.Fatal(err)
	}
	kd := t.TempDir()
	if out, ok := cosign(t, bin, kd, "cosign-pass", "generate-key-pair"); !ok {
		t.Fatalf("cosign generate-key-pair:\n%s", out)
	}
	for _, f := range append(c.Artifacts(), "SHA256SUMS") {
		out, ok := cosign(t, bin, dir, "cosign-pass", "sign-blob", "--key", filepath.Join(kd, "cosign.key"), "--tlog-upload=false", "--yes",
			"--output-signature", f+".sig", "--new-bundle-format", "--bundle", f+".sigstore.json", f)
		if !ok {
			t.Fatalf("cosign sign-blob %s:\n%s", f, out)
		}
	}
	code, out, errOut := runCLI("verify", dir, "--key", filepath.Join(kd, "cosign.pub"))
	if code != 0 {
		t.Fatalf("verify of a cosign-signed compose: exit %d\n%s%s", code, out, errOut)
	}
	if !hasRow(out, "SHA256SUMS", "bundle", "ok", "key ") || !hasRow(out, c.Targets[0].Raw, "sig", "ok", "key ") {
		t.Errorf("rows missing:\n%s", out)
	}
}
