package imagepull

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	imgmanifest "go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"

	"github.com/cfs-compose/cfs-compose/internal/arch"
)

// Sentinel errors for the failure classes a pull distinguishes. They are
// wrapped together with the underlying error, so errors.Is works and the
// message keeps the details.
var (
	ErrUnreachable    = errors.New("imagepull: registry unreachable")
	ErrUnknownImage   = errors.New("imagepull: image not found")
	ErrAuth           = errors.New("imagepull: authentication failed")
	ErrDigestMismatch = errors.New("imagepull: digest mismatch")
	ErrTruncated      = errors.New("imagepull: truncated blob")
	ErrNoInstance     = errors.New("imagepull: no image for this architecture")
	ErrRejected       = errors.New("imagepull: rejected by signature policy")
)

// Limits on the metadata blobs read into memory.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 32 << 20
)

// Layer is one layer of an image, as its manifest lists it.
type Layer struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"` // -1 when the manifest does not say
	MediaType string        `json:"mediaType,omitempty"`
}

// Image is one single-architecture image opened for reading: the manifest
// is read and the instance for the architecture chosen, nothing else yet.
// Call [Image.CheckPolicy] before [Image.ReadConfig] and
// [Image.OpenLayer], and Close when done.
type Image struct {
	// Ref is the reference the image was opened from.
	Ref *Reference
	// ManifestDigest is the digest of the manifest the reference resolves
	// to: a manifest list (image index) for multi-arch images.
	ManifestDigest digest.Digest
	// InstanceDigest is the digest of the single-arch manifest used.
	InstanceDigest digest.Digest
	// Manifest and ManifestType are the single-arch manifest.
	Manifest     []byte
	ManifestType string
	// ConfigDigest is the digest of the image configuration.
	ConfigDigest digest.Digest
	// Layers lists the layers, base first.
	Layers []Layer

	src      types.ImageSource
	instance *digest.Digest // nil for a single-manifest image
	goarch   string
	config   types.BlobInfo
}

// Open opens ref and picks the instance for archName (any spelling
// [arch.Lookup] knows); sys may be nil for the defaults (registries.conf,
// auth.json, mirrors). Reading the manifest of a docker reference uses the
// network. A pinned reference must resolve to its pin (the manifest list
// digest or the instance digest).
func Open(ctx context.Context, ref *Reference, archName string, sys *types.SystemContext) (img *Image, err error) {
	a, err := arch.Lookup(archName)
	if err != nil {
		return nil, fmt.Errorf("imagepull: %w", err)
	}
	goarch := a.GOARCH
	name := ref.String()
	src, err := ref.Ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("opening image %s: %w", name, classify(err))
	}
	defer func() {
		if err != nil {
			src.Close()
		}
	}()
	img = &Image{Ref: ref, src: src, goarch: goarch}
	raw, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("reading manifest of %s: %w", name, classify(err))
	}
	if len(raw) > maxManifestSize {
		return nil, fmt.Errorf("reading manifest of %s: %d bytes, more than %d", name, len(raw), maxManifestSize)
	}
	if img.ManifestDigest, err = imgmanifest.Digest(raw); err != nil {
		return nil, fmt.Errorf("digesting manifest of %s: %w", name, err)
	}
	if imgmanifest.MIMETypeIsMultiImage(mt) {
		list, err := imgmanifest.ListFromBlob(raw, mt)
		if err != nil {
			return nil, fmt.Errorf("parsing manifest list of %s: %w", name, err)
		}
		inst, err := list.ChooseInstance(&types.SystemContext{ArchitectureChoice: goarch, OSChoice: "linux"})
		if err != nil {
			return nil, fmt.Errorf("%w: %s has no linux/%s image (it has %s): %w", ErrNoInstance, name, goarch, platforms(list), err)
		}
		img.instance = &inst
		if raw, mt, err = src.GetManifest(ctx, &inst); err != nil {
			return nil, fmt.Errorf("reading manifest %s of %s: %w", inst, name, classify(err))
		}
		if ok, err := imgmanifest.MatchesDigest(raw, inst); err != nil || !ok {
			return nil, fmt.Errorf("%w: manifest %s of %s has different content", ErrDigestMismatch, inst, name)
		}
		if imgmanifest.MIMETypeIsMultiImage(mt) {
			return nil, fmt.Errorf("reading %s: manifest list %s nests another list", name, inst)
		}
		img.InstanceDigest = inst
	} else {
		img.InstanceDigest = img.ManifestDigest
	}
	if ref.Pin != "" && ref.Pin != img.ManifestDigest && ref.Pin != img.InstanceDigest {
		return nil, fmt.Errorf("%w: %s resolves to manifest %s, not the pinned %s", ErrDigestMismatch, name, img.ManifestDigest, ref.Pin)
	}
	img.Manifest, img.ManifestType = raw, mt
	m, err := imgmanifest.FromBlob(raw, mt)
	if err != nil {
		return nil, fmt.Errorf("parsing manifest %s of %s: %w", img.InstanceDigest, name, err)
	}
	img.config = m.ConfigInfo()
	img.ConfigDigest = img.config.Digest
	for _, l := range m.LayerInfos() {
		if l.EmptyLayer {
			continue
		}
		img.Layers = append(img.Layers, Layer{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType})
	}
	return img, nil
}

// platforms lists the platforms of a manifest list, for error messages.
func platforms(list imgmanifest.List) string {
	var out []string
	for _, d := range list.Instances() {
		inst, err := list.Instance(d)
		if err != nil || inst.ReadOnly.Platform == nil {
			continue
		}
		p := inst.ReadOnly.Platform
		s := p.OS + "/" + p.Architecture
		if p.Variant != "" {
			s += "/" + p.Variant
		}
		out = append(out, s)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return "no platforms"
	}
	return strings.Join(out, ", ")
}

// Close releases the image source.
func (img *Image) Close() error { return img.src.Close() }

// Name returns the image reference for messages.
func (img *Image) Name() string { return img.Ref.String() }

// ReadConfig fetches the image configuration and checks its digest and
// architecture.
func (img *Image) ReadConfig(ctx context.Context) (*imgspecv1.Image, error) {
	rc, _, err := img.src.GetBlob(ctx, img.config, none.NoCache)
	if err != nil {
		return nil, fmt.Errorf("reading config %s of %s: %w", img.ConfigDigest, img.Name(), classify(err))
	}
	defer rc.Close()
	vr := newVerifier(io.LimitReader(rc, maxConfigSize+1), img.config.Digest, img.config.Size, "config "+img.config.Digest.String()+" of "+img.Name())
	b, err := io.ReadAll(vr)
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("reading config of %s: more than %d bytes", img.Name(), maxConfigSize)
	}
	var cfg imgspecv1.Image
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("parsing config %s of %s: %w", img.ConfigDigest, img.Name(), err)
	}
	if cfg.Architecture != "" && cfg.Architecture != img.goarch {
		return nil, fmt.Errorf("%w: %s is a %s image, not %s", ErrNoInstance, img.Name(), cfg.Architecture, img.goarch)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return nil, fmt.Errorf("%w: %s is a %s image, not linux", ErrNoInstance, img.Name(), cfg.OS)
	}
	return &cfg, nil
}

// OpenLayer returns a reader of the compressed bytes of layer i, checked
// against the digest and size the manifest gives: a read that reaches the
// end of wrong content fails with [ErrDigestMismatch] or [ErrTruncated],
// so callers must read to io.EOF before trusting what they read.
//
// With a non-nil cache, a layer already cached (under its sha256 digest)
// is read from the cache without touching the source, and a fetched layer
// is written to the cache as it is read: it is committed when the reader
// reaches a verified end and discarded otherwise (also when the reader is
// closed early). cached reports a cache hit. Local transports (oci:,
// oci-archive:, dir:) are never copied into the cache.
func (img *Image) OpenLayer(ctx context.Context, i int, c Cache) (r io.ReadCloser, cached bool, err error) {
	l := img.Layers[i]
	what := fmt.Sprintf("layer %d (%s) of %s", i+1, l.Digest, img.Name())
	if c != nil && l.Digest.Algorithm() == digest.SHA256 {
		f, ok, err := c.OpenLayer(l.Digest)
		if err != nil {
			return nil, false, fmt.Errorf("reading cached %s: %w", what, err)
		}
		if ok {
			return &layerReader{verifier: newVerifier(f, l.Digest, l.Size, what), c: f}, true, nil
		}
	}
	rc, _, err := img.src.GetBlob(ctx, types.BlobInfo{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType}, none.NoCache)
	if err != nil {
		return nil, false, fmt.Errorf("fetching %s: %w", what, classify(err))
	}
	lr := &layerReader{verifier: newVerifier(rc, l.Digest, l.Size, what), c: rc}
	if c != nil && !img.Ref.Local() && l.Digest.Algorithm() == digest.SHA256 {
		w, err := c.NewLayer()
		if err != nil {
			rc.Close()
			return nil, false, fmt.Errorf("caching %s: %w", what, err)
		}
		lr.verifier.tee = w
	}
	return lr, false, nil
}

// layerReader is a verified layer stream with its closer.
type layerReader struct {
	*verifier
	c io.Closer
}

// Close releases the source and discards an uncommitted cache entry.
func (r *layerReader) Close() error {
	if r.tee != nil {
		r.tee.Abort()
	}
	return r.c.Close()
}

// verifier checks a blob's digest and size while it is read, optionally
// copying it into a store blob that is committed at a verified end. Its
// error is sticky.
type verifier struct {
	r    io.Reader
	h    hash.Hash
	want digest.Digest
	size int64 // -1: unknown
	n    int64
	what string
	tee  LayerWriter
	err  error
}

func newVerifier(r io.Reader, want digest.Digest, size int64, what string) *verifier {
	v := &verifier{r: r, want: want, size: size, what: what}
	if want.Validate() == nil && want.Algorithm().Available() {
		v.h = want.Algorithm().Hash()
	} else {
		v.h = sha256.New()
		v.err = fmt.Errorf("%s: unsupported digest %q", what, want)
	}
	return v
}

// Read implements io.Reader.
func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	if n > 0 {
		v.h.Write(p[:n])
		v.n += int64(n)
		if v.size >= 0 && v.n > v.size {
			v.err = fmt.Errorf("%w: %s: more than the %d bytes the manifest gives", ErrDigestMismatch, v.what, v.size)
			return 0, v.err
		}
		if v.tee != nil {
			if _, werr := v.tee.Write(p[:n]); werr != nil {
				v.err = fmt.Errorf("caching %s: %w", v.what, werr)
				return 0, v.err
			}
		}
	}
	switch {
	case err == io.EOF:
		if err := v.finish(); err != nil {
			v.err = err
			return n, err
		}
		v.err = io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		v.err = fmt.Errorf("%w: %s: connection ended after %d of %d bytes: %w", ErrTruncated, v.what, v.n, v.size, err)
		return n, v.err
	case err != nil:
		v.err = fmt.Errorf("reading %s: %w", v.what, classify(err))
		return n, v.err
	}
	return n, err
}

// finish checks size and digest at the end and commits the cache entry.
func (v *verifier) finish() error {
	if v.size >= 0 && v.n < v.size {
		return fmt.Errorf("%w: %s: %d of %d bytes", ErrTruncated, v.what, v.n, v.size)
	}
	if got := digest.NewDigest(v.want.Algorithm(), v.h); got != v.want {
		return fmt.Errorf("%w: %s: content has digest %s", ErrDigestMismatch, v.what, got)
	}
	if v.tee != nil {
		w := v.tee
		v.tee = nil
		if err := w.Commit(); err != nil {
			return fmt.Errorf("caching %s: %w", v.what, err)
		}
	}
	return nil
}

// classify wraps err with the sentinel of its failure class.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, s := range []error{ErrUnreachable, ErrUnknownImage, ErrAuth, ErrDigestMismatch, ErrTruncated} {
		if errors.Is(err, s) {
			return err
		}
	}
	var unauth docker.ErrUnauthorizedForCredentials
	if errors.As(err, &unauth) {
		return fmt.Errorf("%w (check auth.json / registry credentials): %w", ErrAuth, err)
	}
	var ec errcode.ErrorCoder
	if errors.As(err, &ec) {
		switch ec.ErrorCode() {
		case v2.ErrorCodeManifestUnknown, v2.ErrorCodeNameUnknown, v2.ErrorCodeBlobUnknown:
			return fmt.Errorf("%w: %w", ErrUnknownImage, err)
		case errcode.ErrorCodeUnauthorized, errcode.ErrorCodeDenied:
			return fmt.Errorf("%w (check auth.json / registry credentials): %w", ErrAuth, err)
		}
	}
	var st docker.UnexpectedHTTPStatusError
	if errors.As(err, &st) {
		switch st.StatusCode {
		case 404:
			return fmt.Errorf("%w: %w", ErrUnknownImage, err)
		case 401, 403:
			return fmt.Errorf("%w (check auth.json / registry credentials): %w", ErrAuth, err)
		}
	}
	var dnsErr *net.DNSError
	var opErr *net.OpError
	if errors.As(err, &dnsErr) || errors.As(err, &opErr) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) {
		return fmt.Errorf("%w (no network, or the registry is down): %w", ErrUnreachable, err)
	}
	if errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), "no descriptor found for reference") {
		return fmt.Errorf("%w: %w", ErrUnknownImage, err)
	}
	if strings.Contains(err.Error(), "manifest unknown") {
		return fmt.Errorf("%w: %w", ErrUnknownImage, err)
	}
	return err
}

// fileExists reports whether path names an existing file.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
