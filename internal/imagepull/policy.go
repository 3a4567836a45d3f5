package imagepull

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/signature"
)

// PolicySpec is the resolved signature policy of a source: which
// policy.json applies and which key, if any, must have signed the image.
// Plan resolves it (finding the default file, hashing contents); Run
// enforces it with [PolicySpec.Check].
type PolicySpec struct {
	// Path is the containers-policy.json used; empty when there is none.
	Path string `json:"path,omitempty"`
	// Digest is the sha256 of the policy file's content.
	Digest string `json:"digest,omitempty"`
	// SignedBy is a cosign/sigstore public key the image must be signed
	// with (the manifest's source.signed_by shortcut).
	SignedBy string `json:"signed_by,omitempty"`
	// SignedByDigest is the sha256 of the key file's content.
	SignedByDigest string `json:"signed_by_digest,omitempty"`

	searched []string // where ResolvePolicyIn looked, for Check's message
}

// SystemPolicyPath is the system-wide containers-policy.json.
const SystemPolicyPath = "/etc/containers/policy.json"

// DefaultPolicyPaths returns where the user's policy.json is looked for:
// $CONTAINERS_POLICY_JSON alone when it is set (it pins the policy, present
// or not: tests and callers that must not depend on the host set it);
// otherwise $XDG_CONFIG_HOME/containers/policy.json (or
// ~/.config/containers/policy.json), then [SystemPolicyPath].
func DefaultPolicyPaths() []string {
	if p := os.Getenv("CONTAINERS_POLICY_JSON"); p != "" {
		return []string{p}
	}
	var out []string
	if d, err := os.UserConfigDir(); err == nil {
		out = append(out, filepath.Join(d, "containers", "policy.json"))
	}
	return append(out, SystemPolicyPath)
}

// ResolvePolicy is [ResolvePolicyIn] with the [DefaultPolicyPaths].
func ResolvePolicy(explicit, signedBy string) (PolicySpec, error) {
	return ResolvePolicyIn(explicit, signedBy, DefaultPolicyPaths())
}

// ResolvePolicyIn finds the policy file (explicit, or else the first of
// defaults that exists; none is no policy) and fingerprints it and the
// signed-by key.
func ResolvePolicyIn(explicit, signedBy string, defaults []string) (PolicySpec, error) {
	ps := PolicySpec{searched: defaults}
	path := explicit
	if path == "" {
		for _, p := range defaults {
			if fileExists(p) {
				path = p
				break
			}
		}
	}
	if path != "" {
		d, err := fileSHA256(path)
		if err != nil {
			return ps, fmt.Errorf("reading signature policy: %w", err)
		}
		if _, err := signature.NewPolicyFromFile(path); err != nil {
			return ps, fmt.Errorf("signature policy %s: %w", path, err)
		}
		ps.Path, ps.Digest = path, d
	}
	if signedBy != "" {
		d, err := fileSHA256(signedBy)
		if err != nil {
			return ps, fmt.Errorf("reading signed_by key: %w", err)
		}
		ps.SignedBy, ps.SignedByDigest = signedBy, d
	}
	return ps, nil
}

func fileSHA256(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:]), nil
}

// Check evaluates the policy for img: the policy file's requirements for
// the image's transport and scope, and the signed-by key, both of which
// must accept. Without any policy file, local images are accepted and
// docker images rejected (there is nothing to say which registries to
// trust). A rejection wraps [ErrRejected] with the policy's reason.
func (ps PolicySpec) Check(ctx context.Context, img *Image) error {
	// Each group must accept; within a group one alternative suffices.
	type group struct {
		name string
		alts []*signature.Policy
	}
	var groups []group
	if ps.Path != "" {
		d, err := fileSHA256(ps.Path)
		if err != nil {
			return fmt.Errorf("reading signature policy: %w", err)
		}
		if d != ps.Digest {
			return fmt.Errorf("signature policy %s changed since the plan was made (digest %s, planned %s)", ps.Path, d, ps.Digest)
		}
		pol, err := signature.NewPolicyFromFile(ps.Path)
		if err != nil {
			return fmt.Errorf("signature policy %s: %w", ps.Path, err)
		}
		groups = append(groups, group{"policy " + ps.Path, []*signature.Policy{pol}})
	} else if ps.SignedBy == "" && !img.Ref.Local() {
		searched := ps.searched
		if searched == nil {
			searched = DefaultPolicyPaths()
		}
		return fmt.Errorf("%w: %s: no containers policy.json found (looked in %v); create one or set source.policy or source.signed_by",
			ErrRejected, img.Name(), searched)
	}
	if ps.SignedBy != "" {
		d, err := fileSHA256(ps.SignedBy)
		if err != nil {
			return fmt.Errorf("reading signed_by key: %w", err)
		}
		if d != ps.SignedByDigest {
			return fmt.Errorf("signed_by key %s changed since the plan was made", ps.SignedBy)
		}
		alts, err := signedByPolicies(img, ps.SignedBy)
		if err != nil {
			return err
		}
		groups = append(groups, group{"signed_by " + ps.SignedBy, alts})
	}
	unparsed := image.UnparsedInstance(img.src, img.instance)
	for _, g := range groups {
		var errs []error
		for _, pol := range g.alts {
			pc, err := signature.NewPolicyContext(pol)
			if err != nil {
				return fmt.Errorf("%s: %w", g.name, err)
			}
			allowed, err := pc.IsRunningImageAllowed(ctx, unparsed)
			pc.Destroy()
			if err == nil && !allowed {
				err = errors.New("not allowed")
			}
			if err == nil {
				errs = nil
				break
			}
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: %s (%s): %w", ErrRejected, img.Name(), g.name, errors.Join(errs...))
		}
	}
	return nil
}

// signedByPolicies builds policies (alternatives) requiring a sigstore signature by key for
// img's transport. Docker images must be signed for their repository
// (matchRepoDigestOrExact); dir: images have no registry name, so the
// identity the signature claims is accepted as long as the key verifies
// it. oci: layouts and archives cannot store signatures.
func signedByPolicies(img *Image, key string) ([]*signature.Policy, error) {
	var reqs []signature.PolicyRequirement
	switch img.Ref.Transport {
	case TransportDocker:
		r, err := signature.NewPRSigstoreSigned(signature.PRSigstoreSignedWithKeyPath(key),
			signature.PRSigstoreSignedWithSignedIdentity(signature.NewPRMMatchRepoDigestOrExact()))
		if err != nil {
			return nil, fmt.Errorf("signed_by %s: %w", key, err)
		}
		reqs = append(reqs, r)
	case TransportDir:
		ids, err := claimedIdentities(img)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("%w: %s: signed_by %s: the image has no sigstore signature", ErrRejected, img.Name(), key)
		}
		// Any one identity whose signature verifies is enough: each
		// becomes its own alternative policy.
		for _, id := range ids {
			prm, err := signature.NewPRMExactReference(id)
			if err != nil {
				continue
			}
			r, err := signature.NewPRSigstoreSigned(signature.PRSigstoreSignedWithKeyPath(key), signature.PRSigstoreSignedWithSignedIdentity(prm))
			if err != nil {
				return nil, fmt.Errorf("signed_by %s: %w", key, err)
			}
			reqs = append(reqs, r)
		}
		if len(reqs) == 0 {
			return nil, fmt.Errorf("%w: %s: signed_by %s: no signature names a valid image reference", ErrRejected, img.Name(), key)
		}
	default:
		return nil, fmt.Errorf("%w: %s: signed_by needs a docker:// or dir: source; %s: images cannot carry signatures", ErrRejected, img.Name(), img.Ref.Transport)
	}
	var out []*signature.Policy
	for _, r := range reqs {
		out = append(out, &signature.Policy{
			Default:    signature.PolicyRequirements{signature.NewPRReject()},
			Transports: map[string]signature.PolicyTransportScopes{img.Ref.Transport: {"": {r}}},
		})
	}
	return out, nil
}

// claimedIdentities reads the docker references that the sigstore
// signatures stored in a dir: image claim (untrusted; the key check
// decides).
func claimedIdentities(img *Image) ([]string, error) {
	dir := img.Ref.Ref.StringWithinTransport()
	var ids []string
	for i := 1; ; i++ {
		name := fmt.Sprintf("signature-%d", i)
		if img.instance != nil {
			name = img.instance.Encoded() + "." + name
			if img.instance.Algorithm() != digest.Canonical {
				name = img.instance.Algorithm().String() + "-" + name
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading signatures of %s: %w", img.Name(), err)
		}
		rest, ok := bytes.CutPrefix(b, []byte("\x00sigstore-json\n"))
		if !ok {
			continue
		}
		var sig struct {
			Payload []byte `json:"payload"`
		}
		var payload struct {
			Critical struct {
				Identity struct {
					DockerReference string `json:"docker-reference"`
				} `json:"identity"`
			} `json:"critical"`
		}
		if json.Unmarshal(rest, &sig) != nil || json.Unmarshal(sig.Payload, &payload) != nil {
			continue
		}
		if id := payload.Critical.Identity.DockerReference; id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
