package secureboot

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// KeyPair is a Secure Boot certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	// Key signs with the certificate's key. For files it is an
	// *rsa.PrivateKey; a hardware token may supply any crypto.Signer.
	Key crypto.Signer
}

// String identifies the key pair by its certificate subject; it never
// prints the key.
func (kp *KeyPair) String() string {
	if kp == nil || kp.Cert == nil {
		return "secureboot.KeyPair(nil)"
	}
	return "secureboot key " + kp.Cert.Subject.String()
}

// GoString is String, for %#v.
func (kp *KeyPair) GoString() string { return kp.String() }

// PKI is the Secure Boot key hierarchy: the platform key, the key exchange
// key and the signature database (db) key that signs boot images.
type PKI struct {
	PK, KEK, DB *KeyPair
}

// PKIOptions controls [GeneratePKI]. The zero value is valid.
type PKIOptions struct {
	// Bits is the RSA modulus size: 2048 (default) or 3072 or 4096.
	Bits int
	// CommonName prefixes the subjects: "<CommonName> PK", "... KEK",
	// "... db". Default "cfs-compose test".
	CommonName string
	// Validity is the certificate lifetime; default 10 years.
	Validity time.Duration
	// Now is the start of the validity period; zero means time.Now().
	Now time.Time
}

// GeneratePKI creates a PK (self-signed CA), a KEK (CA issued by PK) and a
// self-signed db certificate (code signing), each with its own RSA key
// and a random 127-bit serial number.
func GeneratePKI(opts PKIOptions) (*PKI, error) {
	if opts.Bits == 0 {
		opts.Bits = 2048
	}
	if opts.Bits != 2048 && opts.Bits != 3072 && opts.Bits != 4096 {
		return nil, fmt.Errorf("secureboot: RSA size %d not supported (want 2048, 3072 or 4096)", opts.Bits)
	}
	if opts.CommonName == "" {
		opts.CommonName = "cfs-compose test"
	}
	if opts.Validity == 0 {
		opts.Validity = 10 * 365 * 24 * time.Hour
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	notBefore := opts.Now.Add(-time.Hour).UTC().Truncate(time.Second) // tolerate clock skew
	notAfter := notBefore.Add(opts.Validity)
	mk := func(role string, isCA bool, parent *KeyPair) (*KeyPair, error) {
		key, err := rsa.GenerateKey(rand.Reader, opts.Bits)
		if err != nil {
			return nil, fmt.Errorf("secureboot: generating %s key: %w", role, err)
		}
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return nil, fmt.Errorf("secureboot: generating %s serial: %w", role, err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial.Add(serial, big.NewInt(1)),
			Subject:               pkix.Name{CommonName: opts.CommonName + " " + role},
			NotBefore:             notBefore,
			NotAfter:              notAfter,
			BasicConstraintsValid: true,
			IsCA:                  isCA,
			KeyUsage:              x509.KeyUsageDigitalSignature,
		}
		if isCA {
			tmpl.KeyUsage |= x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		} else {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
		}
		parentCert, parentKey := tmpl, crypto.Signer(key)
		if parent != nil {
			parentCert, parentKey = parent.Cert, parent.Key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, parentKey)
		if err != nil {
			return nil, fmt.Errorf("secureboot: creating %s certificate: %w", role, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("secureboot: parsing %s certificate: %w", role, err)
		}
		return &KeyPair{Cert: cert, Key: key}, nil
	}
	var p PKI
	var err error
	if p.PK, err = mk("PK", true, nil); err != nil {
		return nil, err
	}
	if p.KEK, err = mk("KEK", true, p.PK); err != nil {
		return nil, err
	}
	// db is self-signed: firmware only needs it in the db variable, and a
	// self-signed db certificate is a complete chain for verifiers given
	// just db.crt (`osslsigncode verify -CAfile db.crt`, `sbverify --cert`).
	if p.DB, err = mk("db", false, nil); err != nil {
		return nil, err
	}
	return &p, nil
}

// File is one file of a key set: its name (no directory), its content and
// its permission bits.
type File struct {
	Name string
	Data []byte
	Mode os.FileMode
}

// Files returns the files that represent p, in a fixed order: for each of
// PK, KEK and db, NAME.key (PKCS#8 "PRIVATE KEY" PEM, mode 0600), NAME.crt
// (certificate PEM) and NAME.cer (certificate DER, for firmware menus and
// enrollment tools). Only file-based keys can be written; a KeyPair whose
// key is not an *rsa.PrivateKey is an error.
func (p *PKI) Files() ([]File, error) {
	var out []File
	for _, e := range []struct {
		name string
		kp   *KeyPair
	}{{"PK", p.PK}, {"KEK", p.KEK}, {"db", p.DB}} {
		key, ok := e.kp.Key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("secureboot: %s key is a %T, not a file-based RSA key", e.name, e.kp.Key)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("secureboot: encoding %s key: %w", e.name, err)
		}
		out = append(out,
			File{e.name + ".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600},
			File{e.name + ".crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.kp.Cert.Raw}), 0o644},
			File{e.name + ".cer", e.kp.Cert.Raw, 0o644},
		)
	}
	return out, nil
}

// Errors returned when loading Secure Boot keys; wrapped with the file name.
var (
	ErrCertFormat  = errors.New("secureboot: not an X.509 certificate (PEM or DER)")
	ErrKeyFormat   = errors.New("secureboot: not a supported private key (PEM PKCS#8, PKCS#1 RSA or SEC 1 EC, unencrypted)")
	ErrKeyMismatch = errors.New("secureboot: private key does not match the certificate")
)

// LoadCertificate reads an X.509 certificate from a PEM ("CERTIFICATE") or
// DER file.
func LoadCertificate(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	cert, err := ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s: %w", path, err)
	}
	return cert, nil
}

// ParseCertificate parses the first certificate of PEM data, or DER data.
func ParseCertificate(data []byte) (*x509.Certificate, error) {
	if block, _ := pem.Decode(data); block != nil {
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block type %q", ErrCertFormat, block.Type)
		}
		data = block.Bytes
	}
	cert, err := x509.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCertFormat, err)
	}
	return cert, nil
}

// LoadKeyPair reads a certificate (PEM or DER) and its unencrypted PEM
// private key, and checks that they match. Errors name the file at fault and
// never contain key bytes.
func LoadKeyPair(certPath, keyPath string) (*KeyPair, error) {
	cert, err := LoadCertificate(certPath)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("loading private key %s: %w", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("loading %s with %s: %w", keyPath, certPath, ErrKeyMismatch)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}

func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrKeyFormat)
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block type %q", ErrKeyFormat, block.Type)
	}
	if err != nil {
		// x509's parse errors describe the structure, not the key bytes.
		return nil, fmt.Errorf("%w: %w", ErrKeyFormat, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrKeyFormat, key)
	}
	return s, nil
}

// Fingerprint returns the lower-case hex SHA-256 of a certificate's DER
// encoding, the identifier signing requests use for db certificates.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}
