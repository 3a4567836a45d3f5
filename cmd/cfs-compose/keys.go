package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cfs-compose/cfs-compose/signing"
)

// passwordEnv holds the cosign key passphrase for non-interactive use
// (the same role as cosign's COSIGN_PASSWORD).
const passwordEnv = "CFS_SIGNING_PASSWORD"

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage signing keys",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{errors.New("keys: missing subcommand (generate)")}
		},
	}
	cmd.AddCommand(newKeysGenerateCmd(g))
	return cmd
}

type keysGenerateOptions struct {
	dir   string
	force bool
}

func newKeysGenerateCmd(g *globals) *cobra.Command {
	var o keysGenerateOptions
	cmd := &cobra.Command{
		Use:   "generate --dir DIR",
		Short: "Generate a development cosign key pair and Secure Boot PKI",
		Long: `Generate, in DIR, the keys a development compose signs with:

  cosign.key, cosign.pub   cosign-compatible artifact signing key pair (ECDSA P-256;
                           cosign.key is encrypted with the passphrase from
                           ` + passwordEnv + `, or asked for on the terminal)
  PK, KEK, db              Secure Boot certificates and RSA keys, each as .key
                           (PKCS#8 PEM, mode 0600), .crt (PEM) and .cer (DER)

Existing files are never overwritten without --force.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dir == "" {
				return usageError{errors.New("keys generate: --dir is required")}
			}
			pass, err := g.passphrase(true)
			if err != nil {
				return err
			}
			paths, err := signing.GenerateKeys(o.dir, signing.GenerateOptions{Passphrase: pass, Force: o.force})
			if err != nil {
				return err
			}
			for _, p := range paths {
				if _, err := fmt.Fprintln(g.stdout, p); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&o.dir, "dir", "", "directory to write the keys to (created if missing)")
	cmd.Flags().BoolVar(&o.force, "force", false, "overwrite existing key files")
	return cmd
}

// getenv looks a variable up in the injected environment; ok reports
// whether it is set (possibly empty).
func (g *globals) getenv(name string) (string, bool) {
	for i := len(g.environ) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(g.environ[i], name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// passphrase returns the cosign key passphrase: $CFS_SIGNING_PASSWORD if
// set (an empty value means an empty passphrase), else read from the
// terminal without echo (twice when confirm is set). It refuses to prompt
// when stdin is not a terminal.
func (g *globals) passphrase(confirm bool) ([]byte, error) {
	if v, ok := g.getenv(passwordEnv); ok {
		return []byte(v), nil
	}
	f, ok := g.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, fmt.Errorf("no passphrase: set %s (standard input is not a terminal, so cannot prompt)", passwordEnv)
	}
	read := func(prompt string) ([]byte, error) {
		if _, err := io.WriteString(g.stderr, prompt); err != nil {
			return nil, err
		}
		p, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(g.stderr)
		if err != nil {
			return nil, fmt.Errorf("reading passphrase: %w", err)
		}
		return p, nil
	}
	p, err := read("Passphrase for cosign.key: ")
	if err != nil {
		return nil, err
	}
	if confirm {
		again, err := read("Repeat passphrase: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, again) {
			return nil, errors.New("passphrases do not match")
		}
	}
	return p, nil
}
