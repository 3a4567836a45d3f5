package artifacts

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// Compose status values, as Pungi writes them to STATUS.
const (
	StatusFinished   = "FINISHED"
	StatusIncomplete = "FINISHED_INCOMPLETE" // --keep-going and some stages failed
	StatusDoomed     = "DOOMED"              // the compose failed
)

// ComposeSpec names a compose.
type ComposeSpec struct {
	Product string // "Fedora"
	Release string // "41"
	Type    string // production, nightly, test, ci
	Date    time.Time
	// Pinned means Date was fixed by the caller (a compose unit of a
	// scale-out compose, a reproducible build): published images then
	// carry it as their images.json mtime instead of the files' own, so
	// composes made at different times from the same results agree.
	Pinned bool
}

// typeSuffix maps productmd compose types to their id suffix.
var typeSuffix = map[string]string{"production": "", "nightly": ".n", "test": ".t", "ci": ".ci"}

// ID returns the compose id for a respin number: Fedora-41-20261127.n.0.
func (c ComposeSpec) ID(respin int) (string, error) {
	suf, ok := typeSuffix[c.Type]
	if !ok {
		return "", fmt.Errorf("unknown compose type %q (want production, nightly, test or ci)", c.Type)
	}
	return fmt.Sprintf("%s-%s-%s%s.%d", c.Product, c.Release, c.Date.UTC().Format("20060102"), suf, respin), nil
}

// Compose is a compose directory being written. Everything goes to a
// hidden working directory which [Compose.Finish] renames to the final
// name; [Compose.Discard] removes it.
type Compose struct {
	Spec   ComposeSpec
	ID     string
	Respin int
	final  string
	work   string
	images []imageEntry
	files  map[string]Digest // relative path -> sha256, for SHA256SUMS
	lk     *fileLock         // held on <work>.lock while the compose is written
}

type imageEntry struct {
	variant, arch string
	path          string
	pub           Publish
	size          int64
	digest        Digest
	mtime         int64
}

// NewCompose reserves the next free respin of spec under outDir and creates
// its working directory.
func NewCompose(outDir string, spec ComposeSpec) (*Compose, error) {
	return newCompose(outDir, spec, 0, 10000)
}

// NewComposeRespin creates the working directory of the given respin of
// spec under outDir: the compose ID the caller fixed (all units of a
// scale-out compose share it). It fails when that compose exists or is
// being written.
func NewComposeRespin(outDir string, spec ComposeSpec, respin int) (*Compose, error) {
	if respin < 0 {
		return nil, fmt.Errorf("invalid respin %d", respin)
	}
	c, err := newCompose(outDir, spec, respin, respin+1)
	if err != nil {
		return nil, err
	}
	if c == nil {
		id, _ := spec.ID(respin)
		return nil, fmt.Errorf("compose %s already exists (or is being written) in %s", id, outDir)
	}
	return c, nil
}

// newCompose reserves the first free respin in [from, to); nil when none
// of them is free and to-from == 1.
func newCompose(outDir string, spec ComposeSpec, from, to int) (*Compose, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating output directory: %w", err)
	}
	if err := removeStalePartials(outDir); err != nil {
		return nil, err
	}
	for respin := from; respin < to; respin++ {
		id, err := spec.ID(respin)
		if err != nil {
			return nil, err
		}
		final := filepath.Join(outDir, id)
		if _, err := os.Lstat(final); err == nil {
			continue
		}
		work := filepath.Join(outDir, "."+id+".partial")
		if err := os.Mkdir(work, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				// Another compose holds this respin, or a crashed one left
				// its working directory: skip it either way.
				continue
			}
			return nil, fmt.Errorf("creating compose directory: %w", err)
		}
		lk, ok, err := tryLock(work+".lock", true)
		if err != nil || !ok {
			os.Remove(work)
			if err == nil {
				continue
			}
			return nil, err
		}
		return &Compose{Spec: spec, ID: id, Respin: respin, final: final, work: work, files: map[string]Digest{}, lk: lk}, nil
	}
	if to-from == 1 {
		return nil, nil
	}
	return nil, fmt.Errorf("no free respin for %s in %s", spec.Release, outDir)
}

// removeStalePartials removes working directories of composes whose
// process died (their lock is free).
func removeStalePartials(outDir string) error {
	ents, err := os.ReadDir(outDir)
	if err != nil {
		return fmt.Errorf("reading output directory: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".partial") {
			continue
		}
		lp := filepath.Join(outDir, n+".lock")
		lk, ok, err := tryLock(lp, true)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		rerr := os.RemoveAll(filepath.Join(outDir, n))
		os.Remove(lp)
		lk.Unlock()
		if rerr != nil {
			return fmt.Errorf("removing stale %s: %w", n, rerr)
		}
	}
	return nil
}

// Dir returns the directory the compose will have once finished.
func (c *Compose) Dir() string { return c.final }

// WorkDir returns the working directory (valid until Finish or Discard).
func (c *Compose) WorkDir() string { return c.work }

// ImagesDir returns the relative images directory of a variant and arch.
func ImagesDir(variant, arch string) string { return filepath.Join(variant, arch, "images") }

// PublishedPath returns where an output published as p appears in a
// compose, relative to the compose directory and slash-separated:
// <variant>/<arch>/<p.Dir>/<p.Filename>, with Dir "images" (the default)
// or "tests". It is the one place that spells this layout; [Compose.Publish]
// writes there and readers of a compose find artifacts there.
func PublishedPath(variant, arch string, p *Publish) (string, error) {
	if strings.ContainsRune(p.Filename, '/') || p.Filename == "" || p.Filename == "." || p.Filename == ".." {
		return "", fmt.Errorf("bad file name %q", p.Filename)
	}
	sub := p.Dir
	if sub == "" {
		sub = "images"
	}
	if sub != "images" && sub != "tests" {
		return "", fmt.Errorf("bad directory %q", sub)
	}
	return path.Join(variant, arch, sub, p.Filename), nil
}

// Publish places a stored artifact at [PublishedPath], hard-linking it
// from the store when possible (store files are read-only) and copying it
// (sparse-aware) otherwise.
func (c *Compose) Publish(st *Store, variant, arch string, out Output) error {
	if out.Publish == nil {
		return nil
	}
	slash, err := PublishedPath(variant, arch, out.Publish)
	if err != nil {
		return fmt.Errorf("publishing %s: %w", out.Digest.Short(), err)
	}
	rel := filepath.FromSlash(slash)
	if _, dup := c.files[rel]; dup {
		return fmt.Errorf("publishing %s: two artifacts named %s", out.Digest.Short(), rel)
	}
	dst := filepath.Join(c.work, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("publishing %s: %w", rel, err)
	}
	src := st.Path(out.Descriptor)
	if err := os.Link(src, dst); err != nil {
		if err := copySparse(src, dst); err != nil {
			return fmt.Errorf("publishing %s: %w", rel, err)
		}
	}
	info, err := os.Stat(dst)
	if err != nil {
		return fmt.Errorf("publishing %s: %w", rel, err)
	}
	c.files[rel] = out.Digest
	if out.Publish.Type != "" {
		c.images = append(c.images, imageEntry{variant: variant, arch: arch, path: rel, pub: *out.Publish,
			size: out.Size, digest: out.Digest, mtime: c.mtime(info)})
	}
	return nil
}

func (c *Compose) mtime(info fs.FileInfo) int64 {
	if c.Spec.Pinned {
		return c.Spec.Date.Unix()
	}
	return info.ModTime().Unix()
}

// ImportedImage is an images.json entry of a file [Compose.Import] brings
// in from another compose.
type ImportedImage struct {
	Variant, Arch string
	Publish       Publish
	Mtime         int64
}

// Import brings the file rel of the compose directory srcDir into this
// compose at the same place (hard link, else sparse copy), checking that
// its content has digest d; with sum it is listed in SHA256SUMS and with
// img in images.json. It is how a merge of compose units takes their
// published files.
func (c *Compose) Import(srcDir, rel string, d Digest, sum bool, img *ImportedImage) error {
	if !filepath.IsLocal(rel) {
		return fmt.Errorf("importing %s: path escapes the compose", rel)
	}
	if _, dup := c.files[rel]; dup {
		return fmt.Errorf("importing %s: two files of that name", rel)
	}
	src := filepath.Join(srcDir, rel)
	got, n, err := HashFile(src)
	if err != nil {
		return fmt.Errorf("importing %s: %w", rel, err)
	}
	if d != "" && got != d {
		return fmt.Errorf("importing %s from %s: content has digest %s, its compose.json says %s", rel, srcDir, got, d)
	}
	dst := filepath.Join(c.work, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("importing %s: %w", rel, err)
	}
	if err := os.Link(src, dst); err != nil {
		if err := copySparse(src, dst); err != nil {
			return fmt.Errorf("importing %s: %w", rel, err)
		}
	}
	if sum {
		c.files[rel] = got
	}
	if img != nil {
		c.images = append(c.images, imageEntry{variant: img.Variant, arch: img.Arch, path: rel, pub: img.Publish,
			size: n, digest: got, mtime: img.Mtime})
	}
	return nil
}

// AddFile writes a file (a log, a report) into the compose at rel. Files
// added this way are listed in SHA256SUMS only when sum is true.
func (c *Compose) AddFile(rel string, r io.Reader, sum bool) error {
	if !filepath.IsLocal(rel) {
		return fmt.Errorf("adding %s: path escapes the compose", rel)
	}
	dst := filepath.Join(c.work, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("adding %s: %w", rel, err)
	}
	f, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("adding %s: %w", rel, err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("adding %s: %w", rel, err)
	}
	if sum {
		d, _, err := HashFile(dst)
		if err != nil {
			return err
		}
		c.files[rel] = d
	}
	return nil
}

// Files returns the checksummed files published so far (relative path ->
// digest).
func (c *Compose) Files() map[string]Digest {
	m := make(map[string]Digest, len(c.files))
	for k, v := range c.files {
		m[k] = v
	}
	return m
}

// WriteChecksums writes SHA256SUMS (sha256sum -c format, paths relative to
// the compose directory) and returns its path in the working directory.
func (c *Compose) WriteChecksums() (string, error) {
	paths := make([]string, 0, len(c.files))
	for p := range c.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "%s  %s\n", c.files[p].Hex(), filepath.ToSlash(p))
	}
	dst := filepath.Join(c.work, "SHA256SUMS")
	if err := os.WriteFile(dst, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("writing SHA256SUMS: %w", err)
	}
	return dst, nil
}

// Variant describes one variant for composeinfo.json.
type Variant struct {
	UID    string   // "CoreOS"
	Name   string   // human name
	Arches []string // sorted
}

// WriteMetadata writes metadata/composeinfo.json and metadata/images.json
// in productmd 1.2 format.
func (c *Compose) WriteMetadata(variants []Variant) error {
	if err := os.MkdirAll(filepath.Join(c.work, "metadata"), 0o755); err != nil {
		return fmt.Errorf("writing metadata: %w", err)
	}
	ci := composeInfo(c, variants)
	im := imagesJSON(c)
	for name, v := range map[string]any{"composeinfo.json": ci, "images.json": im} {
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return fmt.Errorf("writing metadata/%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(c.work, "metadata", name), append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("writing metadata/%s: %w", name, err)
		}
	}
	return nil
}

// Finish writes STATUS and renames the working directory to its final name.
func (c *Compose) Finish(status string) error {
	if err := os.WriteFile(filepath.Join(c.work, "STATUS"), []byte(status+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing STATUS: %w", err)
	}
	if err := syncTree(c.work); err != nil {
		return fmt.Errorf("syncing compose: %w", err)
	}
	if err := atomicfile.PublishKeep(c.work, c.final); err != nil {
		return fmt.Errorf("finishing compose %s: %w", c.ID, err)
	}
	c.release()
	return nil
}

func (c *Compose) release() {
	if c.lk != nil {
		os.Remove(c.work + ".lock")
		c.lk.Unlock()
		c.lk = nil
	}
}

// Discard removes the working directory (used when a compose is
// cancelled: nothing half-written stays in the output).
func (c *Compose) Discard() error {
	err := os.RemoveAll(c.work)
	c.release()
	return err
}

// syncTree flushes the filesystem holding dir once (syncfs), instead of
// one fsync per file.
func syncTree(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// copySparse copies src to dst keeping holes (SEEK_DATA/SEEK_HOLE).
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	// No fsync: the compose is synced once (syncfs) when it is finished.
	out, err := atomicfile.CreateWith(dst, 0o444, &atomicfile.Options{NoSync: true})
	if err != nil {
		return err
	}
	defer out.Abort()
	if err := copyData(in, out.File, info.Size()); err != nil {
		return err
	}
	if err := out.Truncate(info.Size()); err != nil {
		return err
	}
	return out.Commit()
}

func copyData(in, out *os.File, size int64) error {
	fd := int(in.Fd())
	var off int64
	for off < size {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				return nil // only a hole remains
			}
			// No SEEK_DATA support: plain copy.
			if _, err := in.Seek(0, io.SeekStart); err != nil {
				return err
			}
			_, err = io.Copy(out, in)
			return err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return err
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// productmd structures (schema 1.2).

type pmdHeader struct {
	Type    string `json:"type"`
	Version string `json:"version"`
}

type pmdCompose struct {
	Date   string `json:"date"`
	ID     string `json:"id"`
	Respin int    `json:"respin"`
	Type   string `json:"type"`
}

func (c *Compose) pmdCompose() pmdCompose {
	return pmdCompose{Date: c.Spec.Date.UTC().Format("20060102"), ID: c.ID, Respin: c.Respin, Type: c.Spec.Type}
}

func composeInfo(c *Compose, variants []Variant) any {
	type paths struct {
		Images map[string]string `json:"images"`
	}
	type variant struct {
		Arches []string `json:"arches"`
		ID     string   `json:"id"`
		Name   string   `json:"name"`
		Paths  paths    `json:"paths"`
		Type   string   `json:"type"`
		UID    string   `json:"uid"`
	}
	vs := map[string]variant{}
	for _, v := range variants {
		p := paths{Images: map[string]string{}}
		for _, a := range v.Arches {
			p.Images[a] = filepath.ToSlash(ImagesDir(v.UID, a))
		}
		vs[v.UID] = variant{Arches: v.Arches, ID: v.UID, Name: v.Name, Paths: p, Type: "variant", UID: v.UID}
	}
	return map[string]any{
		"header": pmdHeader{"productmd.composeinfo", "1.2"},
		"payload": map[string]any{
			"compose": c.pmdCompose(),
			"release": map[string]any{
				"internal": false, "name": c.Spec.Product, "short": c.Spec.Product,
				"type": "ga", "version": c.Spec.Release,
			},
			"variants": vs,
		},
	}
}

func imagesJSON(c *Compose) any {
	type image struct {
		Arch       string            `json:"arch"`
		Bootable   bool              `json:"bootable"`
		Checksums  map[string]string `json:"checksums"`
		DiscCount  int               `json:"disc_count"`
		DiscNumber int               `json:"disc_number"`
		Format     string            `json:"format"`
		ImplantMD5 *string           `json:"implant_md5"`
		Mtime      int64             `json:"mtime"`
		Path       string            `json:"path"`
		Size       int64             `json:"size"`
		Subvariant string            `json:"subvariant"`
		Type       string            `json:"type"`
		VolumeID   *string           `json:"volume_id"`
	}
	out := map[string]map[string][]image{}
	for _, e := range c.images {
		if out[e.variant] == nil {
			out[e.variant] = map[string][]image{}
		}
		out[e.variant][e.arch] = append(out[e.variant][e.arch], image{
			Arch: e.arch, Bootable: e.pub.Bootable, Checksums: map[string]string{"sha256": e.digest.Hex()},
			DiscCount: 1, DiscNumber: 1, Format: e.pub.Format, Mtime: e.mtime, Path: filepath.ToSlash(e.path),
			Size: e.size, Subvariant: e.variant, Type: e.pub.Type,
		})
	}
	for _, arches := range out {
		for _, list := range arches {
			sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
		}
	}
	return map[string]any{
		"header":  pmdHeader{"productmd.images", "1.2"},
		"payload": map[string]any{"compose": c.pmdCompose(), "images": out},
	}
}

// Basename is the published base name of a target's artifacts:
// <Product>-<Name>-<Release>.<arch> (Fedora-CoreOS-43.x86_64).
func Basename(product, name, release, arch string) string {
	return product + "-" + name + "-" + release + "." + arch
}

// Filename is [Basename] with an extension: Fedora-CoreOS-43.x86_64.efi.
func Filename(product, name, release, arch, ext string) string {
	return Basename(product, name, release, arch) + "." + ext
}
