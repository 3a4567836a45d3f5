// Package sign is the pipeline stage that makes the cosign-compatible
// detached signatures of a variant's published artifacts: the composefs
// image, the UKI and the disk images.
//
// The parts follow the stage shape of the repository:
//
//   - [Config] (config.go): the signing key, identified by its key hint
//     (base64 SHA-256 of the public key's PKIX DER) in the cache key and by
//     its file paths outside it ([Config.CacheKey]).
//   - [New] (plan.go): the stage runs when the target's facts say it signs
//     (signing.key is set); [Plan] reads signing.pub to pin the key hint.
//     Plan never sees the passphrase.
//   - run (run.go): decrypts signing.key with the passphrase from
//     the CFS_SIGNING_PASSWORD secret, checks it matches the planned hint,
//     and for every present input X writes the outputs "X.sig" (base64 DER
//     ECDSA signature, what `cosign verify-blob --signature` reads) and
//     "X.sigstore.json" (a key-based Sigstore bundle), published next to X
//     as X's file name plus ".sig" / ".sigstore.json".
//
// Signatures are made from the digest the artifact store already knows for
// each input (its content SHA-256), so a multi-gigabyte disk image is not
// read again: each signature costs one ECDSA operation. The signature
// formats are those of package [github.com/cfs-compose/cfs-compose/signing];
// docs/signing.md has the user-facing reference.
package sign
