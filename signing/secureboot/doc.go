// Package secureboot makes and checks UEFI Secure Boot signatures:
// Authenticode signatures of PE images (UKIs, EFI stubs) and the PK/KEK/db
// key hierarchy that development firmware is enrolled with.
//
// # Authenticode
//
// [SignPE] hashes a PE image with the Authenticode SHA-256 image hash, wraps
// the hash in a SpcIndirectDataContent, signs it as PKCS#7 SignedData with
// a db key (RSA PKCS#1 v1.5 + SHA-256, the signer certificate embedded, no
// countersignature or timestamp, so signing works offline) using
// github.com/sassoftware/relic/v7/lib/authenticode, appends the
// WIN_CERTIFICATE to the attribute certificate table, fixes the PE
// checksum and verifies the result before it replaces the output file.
// Page hashes are not generated (UEFI firmware does not use them).
//
// For keys held elsewhere (an HSM, an air-gapped host) the same signature
// is made in two steps: [Prepare] computes the authenticated attributes the
// key must sign (deterministic: there is no signing-time attribute), and
// [AttachSignature] inserts the raw RSA signature made over them.
//
// [VerifyPE] checks every signature in a PE image against the image and
// checks that its signer chains to one of the given db certificates, as
// firmware does: validity periods and key usages are not checked (UEFI
// ignores them), an embedded intermediate may link the signer to a db
// certificate.
//
// # Keys
//
// [GeneratePKI] makes a self-signed PK, a KEK issued by PK and a
// self-signed db certificate, all RSA; [PKI.Files] gives their PEM and DER
// encodings under the file names firmware enrollment tools expect.
//
// # Security
//
// PE images given to [VerifyPE] may be hostile. relic's parser takes some
// header fields for granted (it slices the optional header by its declared
// size and divides by FileAlignment), so the PE structure is checked first
// (DOS and COFF headers, optional header size and magic, data directories,
// FileAlignment, section table and certificate table within the file;
// failures wrap [ErrMalformed]), and every call into relic recovers a panic
// as an [ErrMalformed] error. FuzzVerifyPE fuzzes the verifier. Signatures
// are only trusted after the image hash and the chain both check out.
package secureboot
