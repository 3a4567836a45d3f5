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

	"github.com/cfs-compose/cfs-compose/internal/cmdline"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// Kind is the stage kind.
const Kind = "uki"

// Version is the stage implementation version (part of every cache key).
const Version = "1"

// Output is the name of the stage's output: the UKI.
const Output = "uki"

// maxStubSize bounds a host stub read at Plan time (systemd's stubs are
// under 200 KiB; internal/uki refuses more than 64 MiB).
const maxStubSize = 64 << 20

// Stage is the uki stage.
type Stage struct{}

// New returns the uki stage.
func New() *Stage { return &Stage{} }

// Kind implements pipeline.Stage.
func (s *Stage) Kind() string { return Kind }

// Version implements pipeline.Stage.
func (s *Stage) Version() string { return Version }

// Inputs implements pipeline.Stage: the source stage's tree and analysis,
// the initramfs, and the composefs digest when composefs is enabled.
func (s *Stage) Inputs() []pipeline.Dep {
	return []pipeline.Dep{{Kind: "source"}, {Kind: "composefs", Optional: true}, {Kind: "initramfs"}}
}

// Plan implements pipeline.Stage (see [Resolve]).
func (s *Stage) Plan(_ context.Context, pc *pipeline.PlanContext) (any, error) {
	return Resolve(pc.Config, pc.Compose)
}

// Resolve is Plan on a manifest config: [pipeline.ErrSkip] when the UKI is
// disabled; otherwise it checks the command line, fingerprints a host
// stub, and loads the Secure Boot key pair (certificate parsed, private
// key readable, parsable and matching), so key problems surface before
// anything runs. Key material never enters the config or an error.
func Resolve(mc *manifest.Config, compose manifest.Compose) (*Config, error) {
	if !mc.UKI.Enabled {
		return nil, pipeline.ErrSkip
	}
	c := &Config{
		Arch: mc.Arch, Cmdline: append([]string{}, mc.Kernel.Cmdline...), Composefs: mc.Composefs.Enabled,
		Stub: mc.UKI.Stub, SBAT: mc.UKI.SBAT,
		Filename: fmt.Sprintf("%s-%s-%s.%s.efi", compose.Product, mc.Name, compose.Release, mc.Arch),
	}
	if c.Stub == "" {
		c.Stub = StubFromImage
	}
	if _, err := stubName(c.Arch); err != nil {
		return nil, err
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
	sb := mc.SecureBoot
	switch {
	case sb.Key == "" && sb.Cert == "":
	case sb.Key == "" || sb.Cert == "":
		return nil, errors.New("secureboot needs both key and cert (the db key and its certificate), or neither")
	default:
		kp, err := secureboot.LoadKeyPair(sb.Cert, sb.Key)
		if err != nil {
			return nil, fmt.Errorf("secureboot { key, cert }: %w", err)
		}
		c.SecureBoot = &SecureBoot{Key: sb.Key, Cert: sb.Cert, CertFingerprint: secureboot.Fingerprint(kp.Cert)}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// peMachine is the PE machine of each architecture's EFI binaries.
var peMachine = map[string]uint16{
	manifest.ArchX86_64:  pe.IMAGE_FILE_MACHINE_AMD64,
	manifest.ArchAarch64: pe.IMAGE_FILE_MACHINE_ARM64,
}

// checkHostStub reads a stub on the build host, checks that it is a PE32+
// image for arch, and returns its hex SHA-256.
func checkHostStub(path, arch string) (string, error) {
	data, err := readStub(path)
	if err != nil {
		return "", err
	}
	if err := checkStubMachine(data, arch); err != nil {
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

// checkStubMachine checks that data is a PE32+ EFI image for arch.
func checkStubMachine(data []byte, arch string) error {
	f, err := pe.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a PE image: %w", err)
	}
	defer f.Close()
	if _, ok := f.OptionalHeader.(*pe.OptionalHeader64); !ok {
		return errors.New("not a PE32+ image")
	}
	if want := peMachine[arch]; f.Machine != want {
		return fmt.Errorf("PE machine %#x, want %#x for %s", f.Machine, want, arch)
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
