package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/initramfs"
	"github.com/cfs-compose/cfs-compose/internal/kmod"
	"github.com/cfs-compose/cfs-compose/internal/ostree"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/imageinput"
)

// run writes the builtin initramfs, or copies the image's own.
func (s *stage) run(ctx context.Context, rc *pipeline.RunContext, c *Config) error {
	an, err := imageinput.Analysis(rc)
	if err != nil {
		return err
	}
	k := an.Kernel
	if k == nil {
		return errors.New("the image has no kernel (no /usr/lib/modules/<version>/vmlinuz); an initramfs needs one")
	}
	if c.Kernel != "" && k.Version != c.Kernel {
		return fmt.Errorf("the source stage chose kernel %s, but source.kernel is %s", k.Version, c.Kernel)
	}
	fsys, closeFS, err := imageinput.FS(rc)
	if err != nil {
		return err
	}
	defer closeFS()
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.Source == manifest.InitramfsImage {
		return copyImageInitramfs(rc, fsys, an, c.RootBindingKey)
	}
	return s.writeBuiltin(ctx, rc, c, fsys, k)
}

// copyImageInitramfs copies the image's initramfs.img verbatim and, for a
// signed ostree commit, appends an uncompressed cpio archive holding the
// commit's public key ([ostree.RootBindingKeyPath]), zero-padded to a
// 4-byte boundary first as the kernel expects of a following archive.
func copyImageInitramfs(rc *pipeline.RunContext, fsys fs.FS, an *artifacts.ImageAnalysis, rootBindingKey string) error {
	k := an.Kernel
	name := path.Join(strings.TrimPrefix(k.ModulesDir, "/"), "initramfs.img")
	f, err := fsys.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("initramfs { source = %q }: the image has no /%s for kernel %s; build the image with its initramfs or use source = %q",
			manifest.InitramfsImage, name, k.Version, manifest.InitramfsBuiltin)
	}
	if err != nil {
		return fmt.Errorf("opening the image's /%s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading the image's /%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return fmt.Errorf("initramfs { source = %q }: the image's /%s is not a non-empty regular file (%s, %d bytes)", manifest.InitramfsImage, name, fi.Mode().Type(), fi.Size())
	}
	if an.PrepareRoot.Override {
		rc.Log.Warn().Str("path", an.PrepareRoot.Path).
			Msg("the manifest's composefs setting differs from the image's prepare-root.conf, which the image's own initramfs follows")
	}
	w, err := contract.InitramfsArchive.Create(rc, nil)
	if err != nil {
		return err
	}
	defer w.Abort()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), f)
	if err != nil {
		return fmt.Errorf("copying the image's /%s: %w", name, err)
	}
	if n != fi.Size() {
		return fmt.Errorf("copying the image's /%s: read %d bytes, want %d", name, n, fi.Size())
	}
	if rootBindingKey != "" {
		pad := make([]byte, (4-n%4)%4)
		var key bytes.Buffer
		if err := writeKeyArchive(&key, rootBindingKey); err != nil {
			return err
		}
		if _, err := io.MultiWriter(w, h).Write(append(pad, key.Bytes()...)); err != nil {
			return fmt.Errorf("appending the commit key: %w", err)
		}
		n += int64(len(pad) + key.Len())
		rc.Log.Info().Str("path", "/"+ostree.RootBindingKeyPath).Str("key", rootBindingKey).
			Msg("appended the signed commit's public key to the image's initramfs")
	}
	if _, err := w.Commit(); err != nil {
		return err
	}
	rc.Log.Info().Str("path", "/"+name).Int64("bytes", n).Msg("copied the image's initramfs")
	return setMeta(rc, map[string]any{
		"source": manifest.InitramfsImage, "kernel": k.Version, "path": "/" + name, "size": n,
		"sha256": hex.EncodeToString(h.Sum(nil)),
	})
}

// writeBuiltin resolves the modules and writes the builtin initramfs.
func (s *stage) writeBuiltin(ctx context.Context, rc *pipeline.RunContext, c *Config, fsys fs.FS, k *artifacts.ImageKernel) error {
	initBin, err := s.binary(c.GOARCH)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(initBin)
	if got := hex.EncodeToString(sum[:]); got != c.InitSHA256 {
		return fmt.Errorf("the embedded cfs-init for %s changed since planning (sha256 %s, planned %s); plan again", c.GOARCH, got, c.InitSHA256)
	}
	ix, err := kmod.Load(fsys, k.Version)
	if err != nil {
		return err
	}
	mods, err := resolveModules(ix, c.BaseModules, c.Modules)
	if err != nil {
		return err
	}
	b := initramfs.Builtin{Init: initBin, Config: c.initConfig()}
	var files []string
	for _, m := range mods {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := ix.Read(m)
		if err != nil {
			return fmt.Errorf("reading module %s of kernel %s: %w", m.Path, k.Version, err)
		}
		b.Modules = append(b.Modules, initramfs.Module{File: m.File(), Data: data})
		files = append(files, m.File())
	}
	var builtin []string
	for _, n := range append(append([]string(nil), c.BaseModules...), c.Modules...) {
		if ix.Builtin(n) {
			builtin = append(builtin, n)
		}
	}
	w, err := contract.InitramfsArchive.Create(rc, nil)
	if err != nil {
		return err
	}
	defer w.Abort()
	cw := &countWriter{w: w}
	if err := initramfs.WriteBuiltin(cw, initramfs.Gzip, b); err != nil {
		return fmt.Errorf("writing the builtin initramfs: %w", err)
	}
	if c.RootBindingKey != "" {
		// The same appended archive as for the image's initramfs.
		if _, err := cw.Write(make([]byte, (4-cw.n%4)%4)); err != nil {
			return err
		}
		if err := writeKeyArchive(cw, c.RootBindingKey); err != nil {
			return err
		}
	}
	if _, err := w.Commit(); err != nil {
		return err
	}
	rc.Log.Info().Str("kernel", k.Version).Strs("modules", files).Strs("built_in", builtin).
		Bool("composefs", c.Composefs).Str("verity", c.Verity).Bool("signed", c.Signed).Int64("bytes", cw.n).
		Msg("wrote the builtin initramfs")
	return setMeta(rc, map[string]any{
		"source": manifest.InitramfsBuiltin, "kernel": k.Version, "modules": nonNil(files), "built_in": nonNil(builtin),
		"composefs": c.Composefs, "verity": c.Verity, "signed": c.Signed, "root_label": c.RootLabel,
		"init_sha256": c.InitSHA256, "compression": initramfs.Gzip.String(), "size": cw.n,
	})
}

// resolveModules returns the modules to load, dependencies first. A module
// that cannot be found is reported as a base module or as one of
// initramfs.modules.
func resolveModules(ix *kmod.Index, base, extra []string) ([]kmod.Module, error) {
	for _, n := range base {
		if _, err := ix.Resolve(n); err != nil {
			return nil, fmt.Errorf("module %s, which the builtin initramfs needs to mount the root: %w", n, err)
		}
	}
	for _, n := range extra {
		if _, err := ix.Resolve(n); err != nil {
			return nil, fmt.Errorf("initramfs.modules: %w", err)
		}
	}
	return ix.Resolve(append(append([]string(nil), base...), extra...)...)
}

func setMeta(rc *pipeline.RunContext, m map[string]any) error {
	for k, v := range m {
		if err := rc.SetMeta(k, v); err != nil {
			return err
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeKeyArchive writes an uncompressed initramfs archive holding the
// public key of a signed ostree commit at [ostree.RootBindingKeyPath].
func writeKeyArchive(w io.Writer, key string) error {
	iw := initramfs.NewWriter(w, initramfs.None)
	for _, d := range []string{"etc", "etc/ostree"} {
		if err := iw.AddDir(d, 0o755); err != nil {
			return err
		}
	}
	if err := iw.AddFile(ostree.RootBindingKeyPath, []byte(key+"\n"), 0o644); err != nil {
		return err
	}
	if err := iw.Close(); err != nil {
		return fmt.Errorf("writing the commit key archive: %w", err)
	}
	return nil
}
