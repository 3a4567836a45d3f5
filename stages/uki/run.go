package uki

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/uki"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/imageinput"
)

// run builds (and with Secure Boot keys, signs) the UKI.
func run(ctx context.Context, rc *pipeline.RunContext, c *Config) error {
	an, err := imageinput.Analysis(rc)
	if err != nil {
		return err
	}
	if an.Kernel == nil {
		return errors.New("the image has no kernel (no /usr/lib/modules/<version>/vmlinuz); a UKI needs one")
	}
	var digest string
	if c.Composefs {
		d, err := contract.ComposefsDigest.Get(rc)
		if err != nil {
			return err
		}
		digest = d.Digest
	}
	cmd, err := commandLine(c.Cmdline, digest)
	if err != nil {
		return err
	}
	if c.Ostree {
		// The firmware boots the deployment through the image's own
		// initramfs: ostree-prepare-root finds it by ostree=.
		d, err := contract.OstreeDeployment.Get(rc)
		if err != nil {
			return err
		}
		cmd = d.Cmdline
		if c.OstreeComposefs {
			// cfs-init (the builtin initramfs) checks the commit's
			// composefs digest and .ostree.cfs against this one.
			if d.ComposefsDigest == "" {
				return fmt.Errorf("the ostree deployment %s has no composefs digest although composefs is enabled", d.Dir)
			}
			cmd += " composefs=" + d.ComposefsDigest
		}
	}
	fsys, closeFS, err := imageinput.FS(rc)
	if err != nil {
		return err
	}
	defer closeFS()

	kernel, err := fs.ReadFile(fsys, strings.TrimPrefix(an.Kernel.Vmlinuz, "/"))
	if err != nil {
		return fmt.Errorf("reading the kernel %s from the image: %w", an.Kernel.Vmlinuz, err)
	}
	stub, stubFrom, err := readRunStub(c, fsys, an)
	if err != nil {
		return err
	}
	var osrel []byte
	if an.OSReleasePath != "" {
		if osrel, err = fs.ReadFile(fsys, strings.TrimPrefix(an.OSReleasePath, "/")); err != nil {
			return fmt.Errorf("reading the image's %s: %w", an.OSReleasePath, err)
		}
	} else {
		rc.Log.Warn().Msg("the image has no os-release; the UKI gets no .osrel section")
	}
	initrdPath, err := contract.InitramfsArchive.Path(rc)
	if err != nil {
		return err
	}
	initrd, err := os.Open(initrdPath)
	if err != nil {
		return fmt.Errorf("opening the initramfs: %w", err)
	}
	defer initrd.Close()
	fi, err := initrd.Stat()
	if err != nil {
		return fmt.Errorf("opening the initramfs: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	out := filepath.Join(rc.TempDir(), "uki.efi")
	if err := build(out, stub, uki.Sections{
		Linux:   bytes.NewReader(kernel),
		Initrd:  io.NewSectionReader(initrd, 0, fi.Size()),
		Cmdline: cmd,
		OSRel:   string(osrel),
		Uname:   an.Kernel.Version,
		SBAT:    c.SBAT,
	}); err != nil {
		return fmt.Errorf("building the UKI from stub %s and kernel %s: %w", stubFrom, an.Kernel.Vmlinuz, err)
	}
	if sb := c.SecureBoot; sb != nil {
		kp, err := secureboot.LoadKeyPair(sb.Cert, sb.Key)
		if err != nil {
			return fmt.Errorf("secureboot { key, cert }: %w", err)
		}
		if fp := secureboot.Fingerprint(kp.Cert); fp != sb.CertFingerprint {
			return fmt.Errorf("secureboot: certificate %s changed since planning (fingerprint %s, planned %s); plan again", sb.Cert, fp, sb.CertFingerprint)
		}
		signed := filepath.Join(rc.TempDir(), "uki.signed.efi")
		if err := secureboot.SignPE(ctx, kp, out, signed); err != nil {
			return fmt.Errorf("secureboot { key, cert }: %w", err)
		}
		out = signed
	}
	sections, size, err := inspect(out)
	if err != nil {
		return err
	}
	if err := contract.UKIImage.AddFile(rc, out, &artifacts.Publish{Filename: c.Filename}); err != nil {
		return err
	}
	ev := rc.Log.Info().Str("cmdline", cmd).Str("uname", an.Kernel.Version).Str("stub", stubFrom).
		Bool("signed", c.SecureBoot != nil).Int64("bytes", size)
	if c.SecureBoot != nil {
		ev = ev.Str("db_cert_sha256", c.SecureBoot.CertFingerprint)
	}
	ev.Msg("built the UKI")
	meta := map[string]any{
		"cmdline": cmd, "composefs_digest": digest, "signed": c.SecureBoot != nil, "sections": sections,
		"uname": an.Kernel.Version, "stub": stubFrom, "size": size,
	}
	if c.SecureBoot != nil {
		meta["db_cert_sha256"] = c.SecureBoot.CertFingerprint
	}
	for k, v := range meta {
		if err := rc.SetMeta(k, v); err != nil {
			return err
		}
	}
	return nil
}

// build writes the UKI to out.
func build(out string, stub []byte, s uki.Sections) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = uki.Build(bw, bytes.NewReader(stub), int64(len(stub)), s)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// inspect reads the finished UKI back: section payload sizes by name and
// the file size.
func inspect(p string) (map[string]uint32, int64, error) {
	f, err := uki.Open(p)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the UKI back: %w", err)
	}
	defer f.Close()
	sizes := map[string]uint32{}
	for _, s := range f.Sections {
		sizes[s.Name] = s.VirtualSize
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the UKI back: %w", err)
	}
	return sizes, fi.Size(), nil
}

// readRunStub returns the EFI stub and where it came from: the image's
// (found by the source stage's analysis) or the host file planned, whose
// content must not have changed since.
func readRunStub(c *Config, fsys fs.FS, an *artifacts.ImageAnalysis) ([]byte, string, error) {
	if c.Stub != StubFromImage {
		data, err := readStub(c.Stub)
		if err != nil {
			return nil, "", err
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != c.StubSHA256 {
			return nil, "", fmt.Errorf("uki.stub %s changed since planning (sha256 %s, planned %s); plan again", c.Stub, got, c.StubSHA256)
		}
		return data, c.Stub, nil
	}
	name := c.Arch.EFIStub
	if an.Stub == nil {
		return nil, "", fmt.Errorf("uki { stub = %q }: the image has no EFI stub for %s (/usr/lib/systemd/boot/efi/%s); install systemd's EFI stub in the image or set uki { stub = \"/path/to/%s\" }",
			StubFromImage, c.Arch, name, name)
	}
	data, err := fs.ReadFile(fsys, strings.TrimPrefix(an.Stub.Path, "/"))
	if err != nil {
		return nil, "", fmt.Errorf("reading the image's EFI stub %s: %w", an.Stub.Path, err)
	}
	if err := checkStubMachine(data, c.Arch); err != nil {
		return nil, "", fmt.Errorf("the image's EFI stub %s: %w", an.Stub.Path, err)
	}
	return data, "image:" + path.Clean(an.Stub.Path), nil
}
