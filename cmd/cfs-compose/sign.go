package main

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/artifacts/composedir"
	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/handoff"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

type signOptions struct {
	request     bool
	apply       bool
	out         string
	requestFile string
	round       string
	key         string
	dbCert      string
}

func newSignCmd(g *globals) *cobra.Command {
	o := &signOptions{}
	c := &cobra.Command{
		Use:   "sign (--request COMPOSE_DIR [-o FILE] | --apply COMPOSE_DIR SIGNATURES)",
		Short: "Sign a compose with keys held elsewhere (HSM, air-gapped host)",
		Long: `sign hands the signing of a compose to keys that never touch the build host.

  sign --request COMPOSE_DIR [-o FILE]
      writes, as one JSON document (stdout, or FILE), what must be signed:
      per item the file, its SHA-256, the digest the key signs, and for a UKI
      its Authenticode image hash and the exact PKCS#7 attributes to sign,
      plus the public key and db certificate that must sign.
  sign --apply COMPOSE_DIR SIGNATURES
      checks the signatures made elsewhere (cfs-compose.signatures/v1 JSON)
      against the keys and the compose's files, and only when every one
      verifies writes them: FILE.sig and FILE.sigstore.json next to each
      artifact, the Authenticode signature into each UKI. No other file of
      the compose changes.

An Authenticode signature changes the UKI, and the UKI is inside the disk
images and listed in SHA256SUMS, so signing is done in two rounds:

  1. sign --request (auto: the UKIs are not signed for --db-cert, so it asks
     for Authenticode signatures), sign them, sign --apply. The signed UKI
     also becomes the uki stage's output in the cache.
  2. cfs-compose build: the uki stage is cached with the signed UKI, the disk
     images and SHA256SUMS are rebuilt around it (a new compose).
  3. sign --request on the new compose (auto: the UKIs are signed, so it asks
     for blob signatures of every artifact and SHA256SUMS), sign them,
     sign --apply. cfs-compose verify then passes.

--round forces a round. --key and --db-cert default to the keys compose.json
records. Without --request-file, --apply rebuilds the request from the
compose (requests are deterministic). "Nothing to sign" exits 0.`,
		Args: rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.request == o.apply:
				return usageError{errors.New("sign: give exactly one of --request or --apply")}
			case o.request && len(args) != 1:
				return usageError{fmt.Errorf("sign --request: want COMPOSE_DIR, got %d arguments", len(args))}
			case o.apply && len(args) != 2:
				return usageError{fmt.Errorf("sign --apply: want COMPOSE_DIR SIGNATURES, got %d arguments", len(args))}
			case o.request && o.requestFile != "":
				return usageError{errors.New("sign: --request-file goes with --apply")}
			case o.apply && (o.out != "" || cmd.Flags().Changed("round")):
				return usageError{errors.New("sign: -o and --round go with --request")}
			}
			if o.request {
				return runSignRequest(cmd, g, o, args[0])
			}
			return runSignApply(cmd, g, o, args[0], args[1])
		},
	}
	f := c.Flags()
	f.BoolVar(&o.request, "request", false, "write what must be signed")
	f.BoolVar(&o.apply, "apply", false, "verify and insert signatures made elsewhere")
	f.StringVarP(&o.out, "output", "o", "", "with --request: write the request to FILE instead of stdout")
	f.StringVar(&o.round, "round", string(composedir.RoundAuto), "with --request: auto, authenticode or blob")
	f.StringVar(&o.requestFile, "request-file", "", "with --apply: the request the signatures answer (default: rebuilt from the compose)")
	f.StringVar(&o.key, "key", "", "cosign public key (default: the one compose.json records)")
	f.StringVar(&o.dbCert, "db-cert", "", "Secure Boot db certificate (default: the one compose.json records)")
	return c
}

// signKeys resolves the public keys of the hand-off: flags, else what
// compose.json records. A key that is neither given nor recorded is nil.
func signKeys(c *composedir.Compose, o *signOptions) (handoff.Keys, error) {
	var keys handoff.Keys
	var err error
	switch {
	case o.key != "":
		keys.Cosign, err = loadPub(o.key)
	case c.Signing != nil && len(c.Signing.Cosign) == 1:
		keys.Cosign, err = loadPub(c.Signing.Cosign[0].Pub)
	case c.Signing != nil && len(c.Signing.Cosign) > 1:
		err = usageError{errors.New("--key is required: the compose was signed with several keys")}
	}
	if err != nil {
		return keys, err
	}
	switch {
	case o.dbCert != "":
		keys.SecureBoot, err = secureboot.LoadCertificate(o.dbCert)
	case c.Signing != nil && len(c.Signing.SecureBoot) == 1:
		keys.SecureBoot, err = secureboot.LoadCertificate(c.Signing.SecureBoot[0].Cert)
	case c.Signing != nil && len(c.Signing.SecureBoot) > 1:
		err = usageError{errors.New("--db-cert is required: the compose records several db certificates")}
	}
	return keys, err
}

func loadPub(path string) (*ecdsa.PublicKey, error) { return signing.LoadPublicKey(path) }

func runSignRequest(cmd *cobra.Command, g *globals, o *signOptions, dir string) error {
	round := composedir.Round(o.round)
	switch round {
	case composedir.RoundAuto, composedir.RoundAuthenticode, composedir.RoundBlob:
	default:
		return usageError{fmt.Errorf("invalid --round %q (want auto, authenticode or blob)", o.round)}
	}
	c, err := openCompose(dir)
	if err != nil {
		return err
	}
	keys, err := signKeys(c, o)
	if err != nil {
		return err
	}
	if keys.Cosign == nil && keys.SecureBoot == nil {
		return usageError{errors.New("--key or --db-cert is required: compose.json records no keys")}
	}
	req, round, err := c.Request(cmd.Context(), keys, round)
	if errors.Is(err, composedir.ErrNothingToSign) {
		fmt.Fprintf(g.stderr, "Nothing to sign: %v\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	b, err := req.Marshal()
	if err != nil {
		return err
	}
	if o.out == "" || o.out == "-" {
		_, err = g.stdout.Write(b)
		return err
	}
	if err := atomicfile.WriteFile(o.out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "Wrote a %s signing request for %d item(s) to %s\n", round, len(req.Items), o.out)
	return nil
}

func runSignApply(cmd *cobra.Command, g *globals, o *signOptions, dir, sigFile string) error {
	ctx := cmd.Context()
	c, err := openCompose(dir)
	if err != nil {
		return err
	}
	sigs, err := readSignatures(sigFile)
	if err != nil {
		return err
	}
	keys, err := signKeys(c, o)
	if err != nil {
		return err
	}
	for _, s := range sigs.Signatures {
		switch {
		case s.Kind == handoff.KindBlob && keys.Cosign == nil:
			return usageError{fmt.Errorf("--key is required: %s has a blob signature and compose.json records no signing key", s.Path)}
		case s.Kind == handoff.KindAuthenticode && keys.SecureBoot == nil:
			return usageError{fmt.Errorf("--db-cert is required: %s has an Authenticode signature and compose.json records no db certificate", s.Path)}
		}
	}
	var req *handoff.Request
	if o.requestFile != "" {
		f, err := os.Open(o.requestFile)
		if err != nil {
			return fmt.Errorf("reading request: %w", err)
		}
		req, err = handoff.ReadRequest(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("reading request %s: %w", o.requestFile, err)
		}
	} else if req, err = c.RequestFor(ctx, sigs, keys); err != nil {
		return err
	}
	unsigned := composedir.UnsignedDigests(req)
	// Open the cache before anything is written: a signed UKI must become
	// the uki stage's output for the rebuild of round 2.
	var adopt func() ([]composedir.Adopted, error)
	if len(unsigned) > 0 {
		st, err := g.openStore(ctx, false)
		if err != nil {
			return err
		}
		defer st.Close()
		adopt = func() ([]composedir.Adopted, error) { return c.AdoptSignedUKIs(st, unsigned, keys.SecureBoot) }
	}
	res, err := c.Apply(ctx, req, sigs, keys)
	if err != nil {
		return err
	}
	for _, p := range res.Written {
		fmt.Fprintln(g.stdout, filepath.Join(dir, filepath.FromSlash(p)))
	}
	if adopt == nil {
		return nil
	}
	adopted, err := adopt()
	if err != nil {
		return fmt.Errorf("the signatures are applied, but recording the signed UKIs in the cache failed: %w", err)
	}
	var stale []string
	for _, a := range adopted {
		if a.Err != nil {
			stale = append(stale, fmt.Sprintf("%s: %v", a.Path, a.Err))
			continue
		}
		fmt.Fprintf(g.stderr, "Cache: the uki stage %s now outputs the signed %s\n", a.Key[:min(12, len(a.Key))], filepath.Base(a.Path))
	}
	if len(stale) > 0 {
		fmt.Fprintf(g.stderr, "Warning: not recorded in the cache, a rebuild will not pick these up:\n  %s\n", strings.Join(stale, "\n  "))
	}
	fmt.Fprintln(g.stderr, "Next: rebuild (cfs-compose build) so the disk images and SHA256SUMS carry the signed UKI, then run cfs-compose sign --request on the new compose.")
	return nil
}

func readSignatures(path string) (*handoff.Signatures, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading signatures: %w", err)
	}
	defer f.Close()
	s, err := handoff.ReadSignatures(f)
	if err != nil {
		return nil, fmt.Errorf("reading signatures %s: %w", path, err)
	}
	return s, nil
}
