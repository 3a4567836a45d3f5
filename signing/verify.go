package signing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// Check names used in [Result].
const (
	CheckSHA256       = "sha256"       // digest equals the SHA256SUMS entry
	CheckSig          = "sig"          // FILE.sig verifies
	CheckBundle       = "bundle"       // FILE.sigstore.json verifies
	CheckAuthenticode = "authenticode" // PE signature verifies and chains to db
)

// Result is one row of a verification report.
type Result struct {
	Name   string // file, slash-separated, relative to the verified directory
	Check  string // CheckSHA256, CheckSig, ... (callers may add their own)
	OK     bool
	Detail string // what was found: the signer, the digest, or why it failed
	// Absent marks a check that could not be made because what it checks
	// is not there by design (an unsigned compose has no signatures); it
	// does not fail the report.
	Absent bool
}

// Report collects verification results in the order they were made.
type Report struct {
	Results []Result
}

// Add appends a result.
func (r *Report) Add(name, check string, ok bool, detail string) {
	r.Results = append(r.Results, Result{Name: name, Check: check, OK: ok, Detail: detail})
}

// AddAbsent records a check that was not made because the compose does
// not carry what it checks (OK, but shown as absent).
func (r *Report) AddAbsent(name, check, detail string) {
	r.Results = append(r.Results, Result{Name: name, Check: check, OK: true, Detail: detail, Absent: true})
}

// OK reports whether the report has results and none failed.
func (r *Report) OK() bool {
	if len(r.Results) == 0 {
		return false
	}
	for _, res := range r.Results {
		if !res.OK {
			return false
		}
	}
	return true
}

// WriteTable prints the report as an aligned table: FILE CHECK RESULT
// DETAIL, with "ok" or "FAIL" as the result.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FILE\tCHECK\tRESULT\tDETAIL")
	for _, res := range r.Results {
		status := "ok"
		switch {
		case !res.OK:
			status = "FAIL"
		case res.Absent:
			status = "absent"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Name, res.Check, status, strings.ReplaceAll(res.Detail, "\n", " "))
	}
	return tw.Flush()
}

// VerifyOptions says which signatures [VerifyDir] checks.
type VerifyOptions struct {
	// Key is the cosign public key; nil skips the detached signatures.
	// When set, every listed file and the checksum file itself must have a
	// FILE.sig or FILE.sigstore.json, and every one present must verify.
	Key *ecdsa.PublicKey
	// DB are the Secure Boot db certificates; nil skips Authenticode.
	// When set, every listed PE image must be signed by a db key.
	DB []*x509.Certificate
	// NeedSignature, when set, says which listed files (by their name in
	// the checksum file) must carry a detached signature when Key is set.
	// The others, such as the signature files themselves or test reports,
	// are checked only when a signature file exists for them. Nil means
	// every listed file needs one. The checksum file always does.
	NeedSignature func(name string) bool
}

// VerifyDir checks the directory dir against its checksum file sumsName
// (normally [SumsFile]): the checksum file's own signatures, then for each
// listed file its SHA-256, its detached signatures, and, for PE images,
// its Authenticode signature. Each file is read once for its digest (plus
// once more for the Authenticode image hash of PE files). Per-file
// problems become failed results; the error is only for a checksum file
// that cannot be read or parsed, or a cancelled context.
func VerifyDir(ctx context.Context, dir, sumsName string, opts VerifyOptions) (*Report, error) {
	sumsPath := filepath.Join(dir, sumsName)
	data, err := os.ReadFile(sumsPath)
	if err != nil {
		return nil, fmt.Errorf("reading checksums: %w", err)
	}
	sums, err := ParseSums(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", sumsPath, err)
	}
	rep := &Report{}
	if opts.Key != nil {
		d := sha256Sum(data)
		verifySignatures(rep, opts.Key, sumsName, sumsPath, d, true)
	}
	for _, s := range sums {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		path := filepath.Join(dir, filepath.FromSlash(s.Name))
		digest, err := HashFile(path)
		switch {
		case err != nil:
			rep.Add(s.Name, CheckSHA256, false, err.Error())
			continue
		case !bytes.Equal(digest, s.SHA256):
			rep.Add(s.Name, CheckSHA256, false, fmt.Sprintf("is %x, %s lists %x", digest, sumsName, s.SHA256))
			continue
		default:
			rep.Add(s.Name, CheckSHA256, true, fmt.Sprintf("%x", digest))
		}
		if opts.Key != nil {
			need := opts.NeedSignature == nil || opts.NeedSignature(s.Name)
			verifySignatures(rep, opts.Key, s.Name, path, digest, need)
		}
		if opts.DB != nil {
			isPE, err := IsPE(path)
			if err != nil {
				rep.Add(s.Name, CheckAuthenticode, false, err.Error())
			} else if isPE {
				sigs, err := secureboot.VerifyPEFile(path, opts.DB)
				if err != nil {
					rep.Add(s.Name, CheckAuthenticode, false, err.Error())
				} else {
					rep.Add(s.Name, CheckAuthenticode, true, "signed by "+sigs[0].Signer.Subject.String())
				}
			}
		}
	}
	return rep, nil
}

// verifySignatures adds the sig and bundle rows for one file; each
// signature file present is checked on its own. A file without any
// signature file fails only when need is set.
func verifySignatures(rep *Report, key *ecdsa.PublicKey, name, path string, digest []byte, need bool) {
	hint, _ := KeyHint(key)
	found := false
	for _, c := range []struct {
		check, suffix string
		verify        func([]byte) error
	}{
		{CheckSig, SigSuffix, func(data []byte) error {
			sig, err := DecodeSig(data)
			if err != nil {
				return err
			}
			return VerifyDigest(key, digest, sig)
		}},
		{CheckBundle, BundleSuffix, func(data []byte) error { return VerifyBundle(key, digest, data) }},
	} {
		data, err := os.ReadFile(path + c.suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		found = true
		if err == nil {
			err = c.verify(data)
		}
		if err != nil {
			rep.Add(name, c.check, false, fmt.Sprintf("%s: %v", filepath.Base(path)+c.suffix, err))
		} else {
			rep.Add(name, c.check, true, "key "+hint)
		}
	}
	if !found && need {
		rep.Add(name, CheckSig, false, "no "+SigSuffix+" or "+BundleSuffix)
	}
}

// IsPE reports whether the file at path starts like a PE image (an MZ
// header whose e_lfanew points at a "PE\0\0" signature).
func IsPE(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var hdr [64]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		return false, err
	}
	if hdr[0] != 'M' || hdr[1] != 'Z' {
		return false, nil
	}
	var sig [4]byte
	if _, err := f.ReadAt(sig[:], int64(binary.LittleEndian.Uint32(hdr[0x3c:]))); err != nil {
		return false, nil
	}
	return sig == [4]byte{'P', 'E', 0, 0}, nil
}
