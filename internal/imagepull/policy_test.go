package imagepull

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/signature/sigstore"

	ti "github.com/cfs-compose/cfs-compose/testbed/fixtures/testimage"
)

// signedDir copies an oci: image to a dir: image signed with a fresh
// sigstore key (identity quay.io/example/os:latest) and returns the dir,
// the signing key's public half and an unrelated public key.
func signedDir(t *testing.T, src string) (dir, goodPub, otherPub string) {
	t.Helper()
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, err := sigstore.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := sigstore.GenerateKeyPair([]byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	key := write("good.key", good.PrivateKey)
	goodPub, otherPub = write("good.pub", good.PublicKey), write("other.pub", other.PublicKey)
	dir = filepath.Join(tmp, "signed")
	srcRef, err := ParseReference(src)
	if err != nil {
		t.Fatal(err)
	}
	dstRef, err := ParseReference("dir:" + dir)
	if err != nil {
		t.Fatal(err)
	}
	named, _ := reference.ParseNormalizedNamed("quay.io/example/os:latest")
	pc, _ := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	defer pc.Destroy()
	if _, err := copy.Image(context.Background(), pc, dstRef.Ref, srcRef.Ref, &copy.Options{
		SignBySigstorePrivateKeyFile: key, SignSigstorePrivateKeyPassphrase: []byte("pw"), SignIdentity: named,
	}); err != nil {
		t.Fatalf("signing into dir: %v", err)
	}
	return dir, goodPub, otherPub
}

func TestPolicy(t *testing.T) {
	layout := ti.Build(t, ti.Image{Architecture: "amd64", Layers: []ti.Layer{{Compression: ti.Gzip, Entries: ti.BootableEntries("x86_64")}}})
	ociRef := "oci:" + layout + ":" + ti.Tag
	signed, goodPub, otherPub := signedDir(t, ociRef)
	unsignedDir := filepath.Join(t.TempDir(), "unsigned")
	{
		src, _ := ParseReference(ociRef)
		dst, _ := ParseReference("dir:" + unsignedDir)
		pc, _ := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
		if _, err := copy.Image(context.Background(), pc, dst.Ref, src.Ref, nil); err != nil {
			t.Fatal(err)
		}
		pc.Destroy()
	}
	tmp := t.TempDir()
	policyFile := func(name, body string) string {
		p := filepath.Join(tmp, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	sigPolicy := func(pub string) string {
		return `{"default":[{"type":"reject"}],"transports":{"dir":{"":[{"type":"sigstoreSigned","keyPath":"` + pub +
			`","signedIdentity":{"type":"exactReference","dockerReference":"quay.io/example/os:latest"}}]}}}`
	}
	goodPolicy := policyFile("good.json", sigPolicy(goodPub))
	otherPolicy := policyFile("other.json", sigPolicy(otherPub))
	rejectAll := policyFile("reject.json", `{"default":[{"type":"reject"}]}`)
	acceptAll := policyFile("accept.json", `{"default":[{"type":"insecureAcceptAnything"}]}`)

	tests := []struct {
		name     string
		ref      string
		policy   string
		signedBy string
		wantErr  string // "" accepts
	}{
		{name: "policy.json with the signing key accepts", ref: "dir:" + signed, policy: goodPolicy},
		{name: "policy.json with another key rejects", ref: "dir:" + signed, policy: otherPolicy, wantErr: "signature"},
		{name: "policy.json rejecting everything", ref: "dir:" + signed, policy: rejectAll, wantErr: "rejected by policy"},
		{name: "unsigned image under a signature policy", ref: "dir:" + unsignedDir, policy: goodPolicy, wantErr: "signature"},
		{name: "signed_by the signing key accepts", ref: "dir:" + signed, signedBy: goodPub},
		{name: "signed_by another key rejects", ref: "dir:" + signed, signedBy: otherPub, wantErr: "signature"},
		{name: "signed_by on an unsigned image", ref: "dir:" + unsignedDir, signedBy: goodPub, wantErr: "no sigstore signature"},
		{name: "signed_by on an oci: layout", ref: ociRef, signedBy: goodPub, wantErr: "oci: images cannot carry signatures"},
		{name: "policy accepts but signed_by rejects", ref: "dir:" + signed, policy: acceptAll, signedBy: otherPub, wantErr: "signature"},
		{name: "policy rejects though signed_by accepts", ref: "dir:" + signed, policy: rejectAll, signedBy: goodPub, wantErr: "rejected by policy"},
		{name: "both accept", ref: "dir:" + signed, policy: goodPolicy, signedBy: goodPub},
		{name: "no policy: local images accepted", ref: ociRef},
		{name: "no policy: docker images rejected", ref: "docker://127.0.0.1:1/x:1", wantErr: "no containers policy.json found (looked in [" + filepath.Join(tmp, "absent.json") + "])"},
	}
	// The default places are pinned to a file that does not exist, so
	// the host's /etc/containers/policy.json cannot decide (issue 13 item 12).
	noDefault := []string{filepath.Join(tmp, "absent.json")}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := ResolvePolicyIn(tc.policy, tc.signedBy, noDefault)
			if err != nil {
				t.Fatal(err)
			}
			if tc.policy == "" && ps.Path != "" {
				t.Fatalf("unexpected default policy %s", ps.Path)
			}
			r, err := ParseReference(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			var img *Image
			if r.Local() {
				if img, err = Open(context.Background(), r, "x86_64", nil); err != nil {
					t.Fatal(err)
				}
				defer img.Close()
			} else {
				img = &Image{Ref: r}
			}
			err = ps.Check(context.Background(), img)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			t.Log(err)
			if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrRejected with %q", err, tc.wantErr)
			}
		})
	}
}

func TestPolicyResolve(t *testing.T) {
	tmp := t.TempDir()
	p := filepath.Join(tmp, "policy.json")
	os.WriteFile(p, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	t.Setenv("CONTAINERS_POLICY_JSON", p)
	ps, err := ResolvePolicy("", "")
	if err != nil || ps.Path != p || !strings.HasPrefix(ps.Digest, "sha256:") {
		t.Fatalf("default policy = %+v, %v", ps, err)
	}
	// A policy edited after planning is refused at run time.
	os.WriteFile(p, []byte(`{"default":[{"type":"reject"}]}`), 0o644)
	layout := ti.Build(t, ti.Sample(ti.Gzip))
	r, _ := ParseReference("oci:" + layout + ":" + ti.Tag)
	img, err := Open(context.Background(), r, "x86_64", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := ps.Check(context.Background(), img); err == nil || !strings.Contains(err.Error(), "changed since the plan") {
		t.Fatalf("err = %v", err)
	}
	// Errors: unreadable or invalid files.
	for _, tc := range []struct{ policy, key, want string }{
		{filepath.Join(tmp, "missing.json"), "", "no such file"},
		{p + ".bad", "", "invalid policy"},
		{"", filepath.Join(tmp, "missing.pub"), "signed_by key"},
	} {
		os.WriteFile(p+".bad", []byte(`{"default":[{"type":"nonsense"}]}`), 0o644)
		if _, err := ResolvePolicy(tc.policy, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ResolvePolicy(%q, %q) err = %v, want %q", tc.policy, tc.key, err, tc.want)
		}
	}
}

// TestDefaultPolicyPaths pins where the default policy is looked for: a
// set $CONTAINERS_POLICY_JSON is the only place, so a host's system policy
// cannot leak into tests that pin theirs (issue 13 item 12).
func TestDefaultPolicyPaths(t *testing.T) {
	tmp := t.TempDir()
	present := filepath.Join(tmp, "present.json")
	os.WriteFile(present, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	absent := filepath.Join(tmp, "absent.json")
	tests := []struct {
		name     string
		env      string
		want     []string
		defaults []string // for ResolvePolicyIn
		wantPath string
	}{
		{name: "env pins an absent file", env: absent, want: []string{absent}, defaults: []string{absent}, wantPath: ""},
		{name: "env pins a present file", env: present, want: []string{present}, defaults: []string{absent, present}, wantPath: present},
		{name: "unset: user then system", env: "", want: []string{filepath.Join(tmp, "containers", "policy.json"), SystemPolicyPath}, defaults: nil, wantPath: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CONTAINERS_POLICY_JSON", tc.env)
			t.Setenv("XDG_CONFIG_HOME", tmp)
			if got := DefaultPolicyPaths(); !slices.Equal(got, tc.want) {
				t.Errorf("DefaultPolicyPaths() = %v, want %v", got, tc.want)
			}
			ps, err := ResolvePolicyIn("", "", tc.defaults)
			if err != nil || ps.Path != tc.wantPath {
				t.Errorf("ResolvePolicyIn(%v) = %q, %v; want %q", tc.defaults, ps.Path, err, tc.wantPath)
			}
		})
	}
}
