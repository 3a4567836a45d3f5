package boottest

import (
	"encoding/json"
	"fmt"
	"time"
)

// Version is the stage implementation version (part of every cache key).
const Version = "1"

// Config is the boottest stage's resolved configuration.
type Config struct {
	Arch string `json:"arch"` // "x86_64" or "aarch64"
	// Name names the boot target in reports and is the base of the
	// published file names: <Product>-<Name>-<Release>.<arch>.
	Name string `json:"name"`
	// Checks are check name globs or "tag:T" (testbed.Select); empty
	// means every registered check that applies to the target.
	Checks []string `json:"checks"`
	// Timeout bounds the whole boot.
	Timeout Seconds `json:"timeout_s"`
	// MemoryMiB is the guest RAM.
	MemoryMiB int `json:"memory_mib"`
	// Firmware is the UEFI firmware the disk boots with.
	Firmware Firmware `json:"firmware"`
	// SecureBoot, when set, boots with Secure Boot enforced.
	SecureBoot *SecureBoot `json:"secureboot,omitempty"`
	// Expect says what the booted system must be.
	Expect Expect `json:"expect"`
	// ExtraDirs are the root-level directories the manifest declares
	// (rootfs.extra_dirs), which the booted root must have.
	ExtraDirs []string `json:"extra_dirs,omitempty"`
	// AgentSHA256 is the digest of the agent delivered at boot into a
	// systemd image (agentbin; "" when cfs-compose was built without it),
	// so that a changed agent boots again.
	AgentSHA256 string `json:"agent_sha256,omitempty"`
	// Reboot boots the disk twice through one overlay (test.reboot,
	// testbed.FeatureReboot): the checks see the second boot.
	Reboot bool `json:"reboot,omitempty"`
}

// Firmware is a UEFI code file and the variable store template copied for
// each boot, with their SHA-256 digests (which enter the cache key instead
// of the paths).
type Firmware struct {
	Code       string `json:"code"`
	CodeSHA256 string `json:"code_sha256"`
	Vars       string `json:"vars"`
	VarsSHA256 string `json:"vars_sha256"`
	// SMM marks an x86_64 Secure Boot build that needs SMM and a secure
	// code flash.
	SMM bool `json:"smm"`
}

// SecureBoot is the Secure Boot setup of the boot: the db certificate
// enrolled (the manifest's secureboot.cert, the certificate the UKI is
// signed with) next to a PK and KEK generated for each run.
type SecureBoot struct {
	DBCert string `json:"db_cert"`
	// DBCertSHA256 is the SHA-256 of the certificate's DER encoding.
	DBCertSHA256 string `json:"db_cert_sha256"`
}

// Expect is what the image must turn out to be when booted.
type Expect struct {
	// Composefs: the root is composefs (true) or the plain deployment
	// tree (false; the composefs checks are then skipped and plain-root
	// runs instead).
	Composefs bool `json:"composefs"`
	// Verity is the composefs verity mode ("none", "enable", "require");
	// empty without composefs.
	Verity string `json:"verity"`
	// Signed: the initramfs must have verified the composefs digest's
	// signature.
	Signed bool `json:"signed"`
	// SecureBoot: the guest must report Secure Boot enabled.
	SecureBoot bool `json:"secureboot"`
	// Ostree: the disk is an ostree sysroot (deploy.backend = "ostree");
	// the guest must have booted the ostree stage's deployment.
	Ostree bool `json:"ostree,omitempty"`
	// ImageInitramfs: the disk boots the image's own initramfs
	// (initramfs.source = "image"), which the guest must show ran.
	ImageInitramfs bool `json:"image_initramfs,omitempty"`
}

// keyConfig is what of a Config enters the cache key: everything but the
// host paths.
type keyConfig struct {
	Arch       string   `json:"arch"`
	Name       string   `json:"name"`
	Checks     []string `json:"checks"`
	Timeout    Seconds  `json:"timeout_s"`
	MemoryMiB  int      `json:"memory_mib"`
	CodeSHA256 string   `json:"firmware_code_sha256"`
	VarsSHA256 string   `json:"firmware_vars_sha256"`
	SMM        bool     `json:"smm"`
	DBCert     string   `json:"secureboot_db_cert_sha256,omitempty"`
	Expect     Expect   `json:"expect"`
	Reboot     bool     `json:"reboot,omitempty"`
	// AgentSHA256: a changed agent (new checks) boots again.
	AgentSHA256 string `json:"agent_sha256,omitempty"`
}

// CacheKey implements pipeline.Keyer: the firmware files and the db
// certificate are identified by their digests, not their paths.
func (c *Config) CacheKey() any {
	k := keyConfig{Arch: c.Arch, Name: c.Name, Checks: c.Checks, Timeout: c.Timeout, MemoryMiB: c.MemoryMiB,
		CodeSHA256: c.Firmware.CodeSHA256, VarsSHA256: c.Firmware.VarsSHA256, SMM: c.Firmware.SMM, Expect: c.Expect, Reboot: c.Reboot, AgentSHA256: c.AgentSHA256}
	if c.SecureBoot != nil {
		k.DBCert = c.SecureBoot.DBCertSHA256
	}
	return k
}

// minMemoryMiB is the least guest RAM the testbed kernels boot with.
const minMemoryMiB = 128

// Validate checks a decoded config for consistency.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("boottest: invalid config: %s", fmt.Sprintf(format, a...))
	}
	switch {
	case c.Name == "":
		return bad("no target name")
	case c.Timeout <= 0:
		return bad("timeout %s is not positive", time.Duration(c.Timeout))
	case c.MemoryMiB < minMemoryMiB:
		return bad("guest memory %d MiB is below %d MiB", c.MemoryMiB, minMemoryMiB)
	case c.Firmware.Code == "" || c.Firmware.Vars == "":
		return bad("firmware code and variable template are both required")
	case c.Firmware.CodeSHA256 == "" || c.Firmware.VarsSHA256 == "":
		return bad("firmware digests missing")
	case c.SecureBoot != nil && (c.SecureBoot.DBCert == "" || c.SecureBoot.DBCertSHA256 == ""):
		return bad("secure boot without a db certificate")
	case c.Expect.SecureBoot != (c.SecureBoot != nil):
		return bad("expect.secureboot %v disagrees with the secure boot setup", c.Expect.SecureBoot)
	case !c.Expect.Composefs && (c.Expect.Verity != "" || c.Expect.Signed):
		return bad("verity or signed expected without composefs")
	}
	return nil
}

// Seconds is a duration that JSON (plan, compose.json) shows as a number
// of seconds, under a field name that says so.
type Seconds time.Duration

// MarshalJSON encodes the duration in seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(s).Seconds())
}

// UnmarshalJSON decodes a number of seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = Seconds(f * float64(time.Second))
	return nil
}
