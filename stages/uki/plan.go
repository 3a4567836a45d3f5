package uki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/pe"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/internal/cmdline"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// Version is the stage implementation version (part of every cache key).
const Version = "1"

// maxStubSize bounds a host stub read at Plan time (systemd's stubs are
// under 200 KiB; internal/uki refuses more than 64 MiB).
const maxStubSize = 64 << 20

// New returns the uki stage. A target runs it when uki { enabled }.
func New() pipeline.Stage {
	return pipeline.Define(pipeline.Spec[Config]{
		Kind: contract.UKI, Version: Version,
		Inputs: []pipeline.Dep{{Kind: contract.Source}, {Kind: contract.Composefs, Optional: true}, {Kind: contract.Initramfs}, {Kind: contract.Ostree, Optional: true}},
		When:   func(f *pipeline.Facts) bool { return f.UKI },
		Plan:   Plan, Run: run,
	})
}

// Plan checks the command line, fingerprints a host stub, and loads the
// Secure Boot key pair (certificate parsed, private key readable,
// parsable and matching), so key problems surface before anything runs.
// Key material never enters the config or an error.
func Plan(_ context.Context, pc *pipeline.PlanContext) (*Config, error) {
	mc, f := pc.Config, pc.Facts
	c := &Config{
		Arch: f.Arch, Cmdline: append([]string{}, mc.Kernel.Cmdline...), Composefs: f.Composefs && !f.Ostree(), Ostree: f.Ostree(),
		OstreeComposefs: f.Ostree() && f.Composefs && f.Initramfs == manifest.InitramfsBuiltin,
		Stub:            mc.UKI.Stub, SBAT: mc.UKI.SBAT,
		Filename: artifacts.Filename(pc.Compose.Product, mc.Name, pc.Compose.Release, f.Arch.Name, "efi"),
	}
	if _, err := commandLine(c.Cmdline, ""); err != nil {
		return nil, err
	}
	if c.Stub != StubFromImage {
		sum, err := checkHostStub(c.Stub, c.Arch)
		if err != nil {
			return nil, err
		}
		c.StubSHA256 = sum
	}
	if sb := mc.SecureBoot; sb.Key != "" {
		kp, err := secureboot.LoadKeyPair(sb.Cert, sb.Key)
		if err != nil {
			return nil, fmt.Errorf("secureboot { key, cert }: %w", err)
		}
		c.SecureBoot = &SecureBoot{Key: sb.Key, Cert: sb.Cert, CertFingerprint: secureboot.Fingerprint(kp.Cert)}
	}
	return c, nil
}

// checkHostStub reads a stub on the build host, checks that it is a PE32+
// image for arch, and returns its hex SHA-256.
func checkHostStub(path string, a *arch.Arch) (string, error) {
	data, err := readStub(path)
	if err != nil {
		return "", err
	}
	if err := checkStubMachine(data, a); err != nil {
		return "", fmt.Errorf("uki.stub %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// readStub reads a host stub with a size limit.
func readStub(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("uki.stub: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxStubSize {
		return nil, fmt.Errorf("uki.stub %s: not a regular file of at most %d bytes (%s, %d bytes)", path, maxStubSize, fi.Mode().Type(), fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("uki.stub: %w", err)
	}
	return data, nil
}

// checkStubMachine checks that data is a PE32+ EFI image for a.
func checkStubMachine(data []byte, a *arch.Arch) error {
	f, err := pe.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a PE image: %w", err)
	}
	defer f.Close()
	if _, ok := f.OptionalHeader.(*pe.OptionalHeader64); !ok {
		return errors.New("not a PE32+ image")
	}
	if f.Machine != a.PEMachine {
		return fmt.Errorf("PE machine %#x, want %#x for %s", f.Machine, a.PEMachine, a)
	}
	return nil
}

// commandLine checks the manifest's kernel arguments and joins them,
// adding composefs=<digest> when digest is set: at the end, or before a
// "--" that starts init's arguments.
func commandLine(args []string, digest string) (string, error) {
	words := make([]string, 0, len(args)+1)
	initAt := -1
	for i, a := range args {
		switch {
		case strings.TrimSpace(a) == "":
			return "", fmt.Errorf("kernel.cmdline[%d] is empty", i)
		case strings.ContainsAny(a, "\n\r\x00"):
			return "", fmt.Errorf("kernel.cmdline[%d] = %q holds a newline or NUL byte", i, a)
		case a == "--":
			if initAt < 0 {
				initAt = len(words)
			}
		case strings.Count(a, `"`)%2 != 0:
			return "", fmt.Errorf("kernel.cmdline[%d] = %q has an unbalanced double quote", i, a)
		default:
			ps := cmdline.Parse(a)
			if len(ps) != 1 || ps[0].Init {
				return "", fmt.Errorf("kernel.cmdline[%d] = %q is not one kernel argument (quote whitespace as key=\"a b\")", i, a)
			}
			if k := ps[0].Key; initAt < 0 && (k == "composefs" || k == "composefs.digest") {
				return "", fmt.Errorf("kernel.cmdline[%d] = %q: the pipeline sets %s= itself (from the composefs stage's digest)", i, a, k)
			}
		}
		words = append(words, a)
	}
	if digest != "" {
		arg := "composefs=" + digest
		if initAt < 0 {
			words = append(words, arg)
		} else {
			words = append(words[:initAt], append([]string{arg}, words[initAt:]...)...)
		}
	}
	return strings.Join(words, " "), nil
}
