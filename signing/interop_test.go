package signing

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cfs-compose/cfs-compose/signing/internal/fixture"
)

// emptyTrustedRoot lets `cosign verify-blob --new-bundle-format` run
// offline: key-based bundles need no CA, tlog or TSA from it.
const emptyTrustedRoot = `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`

// cosignCLI runs the real cosign CLI hermetically: HOME is a temporary
// directory and the passphrase comes from COSIGN_PASSWORD.
type cosignCLI struct {
	t    *testing.T
	bin  string
	home string
}

func newCosign(t *testing.T) *cosignCLI {
	return &cosignCLI{t: t, bin: fixture.Cosign(t), home: t.TempDir()}
}

// run executes cosign in dir and returns its combined output and whether
// it exited 0.
func (c *cosignCLI) run(dir, password string, args ...string) (string, bool) {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + c.home, "PATH=" + os.Getenv("PATH"), "COSIGN_PASSWORD=" + password, "TUF_ROOT=" + filepath.Join(c.home, "tuf")}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatalf("cosign %s: %v", strings.Join(args, " "), err)
	}
	return string(out), err == nil
}

// verifyBlob runs cosign verify-blob on file with its .sig and with its
// bundle and reports each outcome.
func (c *cosignCLI) verifyBlob(dir, pub, file string) (sigOK, bundleOK bool, out string) {
	c.t.Helper()
	root := filepath.Join(dir, "trusted-root.json")
	if err := os.WriteFile(root, []byte(emptyTrustedRoot), 0o644); err != nil {
		c.t.Fatal(err)
	}
	o1, ok1 := c.run(dir, "", "verify-blob", "--key", pub, "--signature", file+SigSuffix, "--insecure-ignore-tlog=true", file)
	o2, ok2 := c.run(dir, "", "verify-blob", "--key", pub, "--bundle", file+BundleSuffix, "--new-bundle-format",
		"--trusted-root", root, "--insecure-ignore-tlog=true", file)
	return ok1 && strings.Contains(o1, "Verified OK"), ok2 && strings.Contains(o2, "Verified OK"), o1 + o2
}

// TestCosignVerifiesOurSignatures: signatures and bundles we write are
// accepted by `cosign verify-blob`, and a tampered blob is rejected.
func TestCosignVerifiesOurSignatures(t *testing.T) {
	c := newCosign(t)
	dir := t.TempDir()
	paths, err := GenerateKeys(filepath.Join(dir, "keys"), GenerateOptions{Passphrase: []byte("s3cret")})
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadCosignKey(paths[0], []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	blob := writeBlob(t, dir, "Fedora-41.x86_64.raw", []byte(strings.Repeat("disk image ", 5000)))
	if err := SignFile(context.Background(), k, blob, nil); err != nil {
		t.Fatal(err)
	}
	if sigOK, bundleOK, out := c.verifyBlob(dir, paths[1], blob); !sigOK || !bundleOK {
		t.Fatalf("cosign rejected our signatures (sig %v, bundle %v):\n%s", sigOK, bundleOK, out)
	}

	tampered := writeBlob(t, dir, "tampered.raw", append(mustRead(t, blob), '!'))
	copyFile(t, blob+SigSuffix, tampered+SigSuffix)
	copyFile(t, blob+BundleSuffix, tampered+BundleSuffix)
	if sigOK, bundleOK, out := c.verifyBlob(dir, paths[1], tampered); sigOK || bundleOK {
		t.Fatalf("cosign accepted a tampered blob (sig %v, bundle %v):\n%s", sigOK, bundleOK, out)
	}

	// cosign also reads our encrypted key file: it signs with it, and
	// we verify what it made.
	other := writeBlob(t, dir, "SHA256SUMS", []byte("abc  file\n"))
	if out, ok := c.run(dir, "s3cret", "sign-blob", "--key", paths[0], "--tlog-upload=false", "--yes",
		"--output-signature", other+SigSuffix, "--new-bundle-format", "--bundle", other+BundleSuffix, other); !ok {
		t.Fatalf("cosign sign-blob with our key:\n%s", out)
	}
	pub, err := LoadPublicKey(paths[1])
	if err != nil {
		t.Fatal(err)
	}
	if res, err := VerifyFile(pub, other, nil); err != nil || !res.Sig || !res.Bundle {
		t.Fatalf("VerifyFile on cosign's signature with our key = %+v, %v", res, err)
	}
}

// TestWeVerifyCosignSignatures: a key pair made by `cosign
// generate-key-pair` loads, and `cosign sign-blob` signatures and bundles
// verify with our code (and fail on a tampered blob).
func TestWeVerifyCosignSignatures(t *testing.T) {
	c := newCosign(t)
	dir := t.TempDir()
	if out, ok := c.run(dir, "cli-pass", "generate-key-pair"); !ok {
		t.Fatalf("cosign generate-key-pair:\n%s", out)
	}
	keyPath, pubPath := filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	k, err := LoadCosignKey(keyPath, []byte("cli-pass"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCosignKey(keyPath, []byte("wrong")); !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), keyPath) {
		t.Fatalf("wrong passphrase on a cosign CLI key: %v", err)
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(k.Public()) {
		t.Fatal("cosign.pub does not match cosign.key")
	}

	blob := writeBlob(t, dir, "uki.efi", []byte(strings.Repeat("MZ", 4000)))
	if out, ok := c.run(dir, "cli-pass", "sign-blob", "--key", keyPath, "--tlog-upload=false", "--yes",
		"--output-signature", blob+SigSuffix, "--new-bundle-format", "--bundle", blob+BundleSuffix, blob); !ok {
		t.Fatalf("cosign sign-blob:\n%s", out)
	}
	res, err := VerifyFile(pub, blob, nil)
	if err != nil || !res.Sig || !res.Bundle {
		t.Fatalf("VerifyFile on cosign's signatures = %+v, %v", res, err)
	}
	tampered := writeBlob(t, dir, "uki-tampered.efi", append(mustRead(t, blob), 0))
	copyFile(t, blob+SigSuffix, tampered+SigSuffix)
	if _, err := VerifyFile(pub, tampered, nil); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("tampered blob: err = %v, want ErrBadSignature", err)
	}

	// A key cosign generated signs through our Signer; cosign accepts it.
	mine := writeBlob(t, dir, "composefs.img", []byte("erofs"))
	if err := SignFile(context.Background(), k, mine, nil); err != nil {
		t.Fatal(err)
	}
	if sigOK, bundleOK, out := c.verifyBlob(dir, pubPath, mine); !sigOK || !bundleOK {
		t.Fatalf("cosign rejected our signatures made with its key:\n%s", out)
	}
}
