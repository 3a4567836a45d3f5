package main

import (
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/artifacts/composedir"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/cfs-compose/cfs-compose/stages/contract"
)

// composeOutputs names the stage outputs that are a target's artifacts,
// for package composedir (which lies below the stages and cannot name them).
var composeOutputs = composedir.Outputs{
	Composefs: outputRef(contract.ComposefsImage),
	UKI:       outputRef(contract.UKIImage),
	Raw:       outputRef(contract.DiskRaw),
	Qcow2:     outputRef(contract.DiskQcow2),
}

func outputRef(o pipeline.Output) composedir.OutputRef {
	return composedir.OutputRef{Kind: o.Kind, Name: o.Name}
}

// openCompose opens a finished compose directory.
func openCompose(dir string) (*composedir.Compose, error) {
	return composedir.Open(dir, composeOutputs)
}

type verifyOptions struct {
	key         string
	dbCert      []string
	format      string
	requireSigs bool
}

func newVerifyCmd(g *globals) *cobra.Command {
	o := &verifyOptions{}
	c := &cobra.Command{
		Use:   "verify COMPOSE_DIR",
		Short: "Check a compose's checksums, signatures, Secure Boot signature and disk contents",
		Long: `verify checks a compose directory end to end and prints one row per check:

  SHA256SUMS  sig, bundle      SHA256SUMS.sig / .sigstore.json verify with --key
  each file   sha256           the file matches its SHA256SUMS entry
              sig, bundle      FILE.sig / FILE.sigstore.json verify with --key
                               (required for the composefs image, the UKI, the
                               disk images and every file SHA256SUMS lists a
                               signature of)
              authenticode     a PE image (the UKI) is signed for --db-cert
              listed           an artifact compose.json publishes is in SHA256SUMS
  the UKI     composefs-digest the composefs digest on its command line is the
                               composefs image's fs-verity digest
  raw disk    disk-uki         the UKIs on the ESP are the published UKI
              disk-image       composefs/images/<digest> on the root partition
              disk-objects     every object the composefs image references is in
                               composefs/objects on the root partition

The root partition is read without mounting it, with e2fsprogs' debugfs.
--key and --db-cert default to the keys the build recorded in compose.json.
A compose that records none is unsigned (what make demo builds): its
checksums, composefs digests and disk contents are verified and the
signatures are reported as absent; --require-signatures makes missing keys
a usage error. --db-cert may be repeated. Exit status 1 when any check
fails.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.format != "text" && o.format != "json" {
				return usageError{fmt.Errorf("invalid --format %q (want text or json)", o.format)}
			}
			c, err := openCompose(args[0])
			if err != nil {
				return err
			}
			key, err := verifyKey(c, o.key, o.requireSigs)
			if err != nil {
				return err
			}
			db, err := verifyDB(c, o.dbCert, o.requireSigs && len(c.UKIs()) > 0)
			if err != nil {
				return err
			}
			rep, err := c.Verify(cmd.Context(), composedir.VerifyOptions{Key: key, DB: db})
			if err != nil {
				return err
			}
			if key == nil {
				rep.AddAbsent("SHA256SUMS", signing.CheckSig, "the compose is unsigned: no --key given and compose.json records no signing key; checksums, composefs digests and disk contents were verified (--require-signatures makes this a failure)")
			}
			if db == nil {
				for _, u := range c.UKIs() {
					rep.AddAbsent(u, signing.CheckAuthenticode, "not checked: no --db-cert given and compose.json records no Secure Boot certificate")
				}
			}
			if err := writeReport(g, o.format, args[0], rep); err != nil {
				return err
			}
			if !rep.OK() {
				return errReported
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.key, "key", "", "cosign public key (default: the one compose.json records)")
	f.BoolVar(&o.requireSigs, "require-signatures", false, "fail when the compose carries no signatures (default: required only when compose.json records a key)")
	f.StringArrayVar(&o.dbCert, "db-cert", nil, "Secure Boot db certificate, PEM or DER (repeatable; default: the ones compose.json records)")
	f.StringVar(&o.format, "format", "text", "output format: text or json")
	return c
}

// verifyKey returns the cosign public key: --key, else the one key
// compose.json records, else nil (an unsigned compose) unless signatures
// are required.
func verifyKey(c *composedir.Compose, flag string, require bool) (*ecdsa.PublicKey, error) {
	if flag != "" {
		return signing.LoadPublicKey(flag)
	}
	var refs []composedir.KeyRef
	if c.Signing != nil {
		refs = c.Signing.Cosign
	}
	switch len(refs) {
	case 0:
		if !require {
			return nil, nil
		}
		return nil, usageError{errors.New("--key is required with --require-signatures: compose.json records no signing key")}
	case 1:
		pk, err := signing.LoadPublicKey(refs[0].Pub)
		if err != nil {
			return nil, fmt.Errorf("compose.json names %s as the signing key; give --key: %w", refs[0].Pub, err)
		}
		return pk, nil
	default:
		var names []string
		for _, r := range refs {
			names = append(names, fmt.Sprintf("%s (%s)", r.Pub, strings.Join(r.Targets, ", ")))
		}
		return nil, usageError{fmt.Errorf("--key is required: the compose was signed with %d keys: %s", len(refs), strings.Join(names, "; "))}
	}
}

// verifyDB returns the db certificates: --db-cert, else the ones
// compose.json records; required only when the compose has a UKI.
func verifyDB(c *composedir.Compose, flags []string, need bool) ([]*x509.Certificate, error) {
	paths := flags
	recorded := false
	if len(paths) == 0 && c.Signing != nil {
		for _, r := range c.Signing.SecureBoot {
			paths = append(paths, r.Cert)
			recorded = true
		}
	}
	if len(paths) == 0 {
		if need {
			return nil, usageError{errors.New("--db-cert is required with --require-signatures: the compose has a UKI and compose.json records no db certificate")}
		}
		return nil, nil
	}
	var db []*x509.Certificate
	for _, p := range paths {
		cert, err := secureboot.LoadCertificate(p)
		if err != nil {
			if recorded {
				return nil, fmt.Errorf("compose.json names %s as the db certificate; give --db-cert: %w", p, err)
			}
			return nil, err
		}
		db = append(db, cert)
	}
	return db, nil
}

// reportJSON is the --format json form of a verification report.
type reportJSON struct {
	Compose string       `json:"compose"`
	OK      bool         `json:"ok"`
	Results []resultJSON `json:"results"`
}

type resultJSON struct {
	File   string `json:"file"`
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Absent bool   `json:"absent,omitempty"`
	Detail string `json:"detail"`
}

// writeReport prints a report as a table with a summary line, or as JSON.
func writeReport(g *globals, format, dir string, rep *signing.Report) error {
	if format == "json" {
		out := reportJSON{Compose: dir, OK: rep.OK(), Results: []resultJSON{}}
		for _, r := range rep.Results {
			out.Results = append(out.Results, resultJSON{File: r.Name, Check: r.Check, OK: r.OK, Absent: r.Absent, Detail: r.Detail})
		}
		return writeJSON(g.stdout, out)
	}
	if err := rep.WriteTable(g.stdout); err != nil {
		return err
	}
	failed := 0
	for _, r := range rep.Results {
		if !r.OK {
			failed++
		}
	}
	var err error
	if failed == 0 && len(rep.Results) > 0 {
		_, err = fmt.Fprintf(g.stdout, "\nOK: all %d checks passed\n", len(rep.Results))
	} else {
		_, err = fmt.Fprintf(g.stdout, "\nFAILED: %d of %d checks failed\n", failed, len(rep.Results))
	}
	return err
}
