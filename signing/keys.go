package signing

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// Names of the cosign key files [GenerateKeys] writes.
const (
	CosignKeyFile = "cosign.key"
	CosignPubFile = "cosign.pub"
)

// ErrExists means a key file is already there and overwriting was not
// asked for.
var ErrExists = errors.New("signing: key file exists")

// GenerateOptions controls [GenerateKeys].
type GenerateOptions struct {
	// Passphrase encrypts cosign.key (may be empty, as with cosign).
	Passphrase []byte
	// Force overwrites existing key files.
	Force bool
	// PKI sets the Secure Boot key sizes, names and lifetimes.
	PKI secureboot.PKIOptions
}

// GenerateKeys writes a development key set to dir (created with mode 0700
// if missing): cosign.key and cosign.pub (see [GenerateCosignKeyPair]) and
// the Secure Boot PKI of [secureboot.GeneratePKI] (PK, KEK and db, each as
// .key, .crt and .cer). Private keys get mode 0600, the rest 0644. Without
// opts.Force, an existing file is an error wrapping [ErrExists] and
// nothing is written. All files are written to temporary names first and
// renamed into place only when every one is complete. It returns the paths
// written, in a fixed order.
func GenerateKeys(dir string, opts GenerateOptions) ([]string, error) {
	priv, pub, err := GenerateCosignKeyPair(opts.Passphrase)
	if err != nil {
		return nil, err
	}
	pki, err := secureboot.GeneratePKI(opts.PKI)
	if err != nil {
		return nil, err
	}
	sbFiles, err := pki.Files()
	if err != nil {
		return nil, err
	}
	files := append([]secureboot.File{
		{Name: CosignKeyFile, Data: priv, Mode: 0o600},
		{Name: CosignPubFile, Data: pub, Mode: 0o644},
	}, sbFiles...)

	if !opts.Force {
		for _, f := range files {
			p := filepath.Join(dir, f.Name)
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("%w: %s (use --force to overwrite)", ErrExists, p)
			} else if !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("checking key file: %w", err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating key directory: %w", err)
	}
	staged := make([]*atomicfile.File, 0, len(files))
	defer func() {
		for _, s := range staged {
			s.Abort()
		}
	}()
	for _, f := range files {
		tmp, err := atomicfile.Create(filepath.Join(dir, f.Name), f.Mode)
		if err != nil {
			return nil, err
		}
		staged = append(staged, tmp)
		if _, err := tmp.Write(f.Data); err != nil {
			return nil, fmt.Errorf("writing %s: %w", tmp.Name(), err)
		}
	}
	paths := make([]string, 0, len(files))
	for i, s := range staged {
		if err := s.Commit(); err != nil {
			return paths, err
		}
		paths = append(paths, filepath.Join(dir, files[i].Name))
	}
	return paths, nil
}
