// Package signing makes and checks cosign-compatible artifact signatures
// and generates the development keys cfs-compose signs with.
//
// # Keys
//
// Artifact keys are cosign key pairs: an ECDSA P-256 private key stored as
// PKCS#8, encrypted with scrypt + NaCl secretbox in the JSON envelope of
// go-securesystemslib's encrypted package, in a PEM block of type
// "ENCRYPTED SIGSTORE PRIVATE KEY" (the file `cosign generate-key-pair`
// writes; the legacy "ENCRYPTED COSIGN PRIVATE KEY" type is read too), and
// the public key as a PKIX "PUBLIC KEY" PEM block. [LoadCosignKey] reads
// both generations; [GenerateCosignKeyPair] writes the current one.
// [GenerateKeys] writes a complete development key set: the cosign pair and
// a Secure Boot PKI (package [github.com/cfs-compose/cfs-compose/signing/secureboot]).
// [CheckKeyFile] judges a private key file's permissions as ssh does (only
// its owner may access it, in a directory others cannot write); the build's
// key pre-flight warns when a key fails it.
//
// # Artifact signatures
//
// A signed file FILE gets two detached signatures, both over the SHA-256
// digest of FILE and both accepted by `cosign verify-blob`:
//
//   - FILE.sig: the base64 encoding of the ASN.1 DER ECDSA signature;
//   - FILE.sigstore.json: a Sigstore bundle (media type
//     application/vnd.dev.sigstore.bundle.v0.3+json) holding the digest, the
//     signature and the key hint, with no transparency log entry and no
//     certificate (key-based, offline).
//
// Signing works from a precomputed digest ([SignFile] with a non-nil
// digest), so a large disk image is read once for SHA256SUMS and its
// signatures. Only the [Signer] interface touches private keys; key
// material never appears in errors or logs, and [CosignKey] formats as its
// key hint.
package signing
