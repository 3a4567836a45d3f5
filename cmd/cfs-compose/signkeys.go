package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/compose"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
	"github.com/rs/zerolog"
)

// buildKeys are the signing keys of a build, loaded and checked before any
// stage runs (the pre-flight), so a key that cannot be read or decrypted
// stops the build at once instead of after hours of stages.
type buildKeys struct {
	pass     []byte // the cosign passphrase; set when a cosign key is configured
	havePass bool
	cosign   map[string]*signing.CosignKey  // by signing.key path
	pubOf    map[string]string              // signing.key path -> signing.pub path
	cosignOf map[string]string              // target "variant/arch" -> signing.key path
	sb       map[string]*secureboot.KeyPair // by secureboot.cert path
	sbOf     map[string]string              // target -> secureboot.cert path
}

// loadBuildKeys loads every cosign key (decrypted with the passphrase from
// CFS_SIGNING_PASSWORD, or asked for on a terminal) and every Secure Boot
// key pair that the selected targets' manifests configure. Each key file is
// loaded once; every failure is reported, naming the file and the targets
// using it. Targets whose config cannot be resolved are left to the
// planner, which reports them.
func (g *globals) loadBuildKeys(m pipeline.Manifests, variants, arches []string) (*buildKeys, error) {
	k := &buildKeys{
		cosign: map[string]*signing.CosignKey{}, pubOf: map[string]string{}, cosignOf: map[string]string{},
		sb: map[string]*secureboot.KeyPair{}, sbOf: map[string]string{},
	}
	usersOf := map[string][]string{} // key file -> targets
	sbKeyOf := map[string]string{}   // cert path -> key path
	for _, v := range m.Variants() {
		if len(variants) > 0 && !slices.Contains(variants, v) {
			continue
		}
		for _, a := range m.Arches(v) {
			if len(arches) > 0 && !slices.Contains(arches, a) {
				continue
			}
			cfg, err := m.Config(v, a)
			if err != nil {
				continue
			}
			t := pipeline.Target{Variant: v, Name: cfg.Name, Arch: a}.String()
			if key := cfg.Signing.Key; key != "" {
				k.cosignOf[t] = key
				k.pubOf[key] = cfg.Signing.Pub
				usersOf[key] = append(usersOf[key], t)
			}
			if cert := cfg.SecureBoot.Cert; cert != "" || cfg.SecureBoot.Key != "" {
				k.sbOf[t] = cert
				sbKeyOf[cert] = cfg.SecureBoot.Key
				usersOf[cert] = append(usersOf[cert], t)
			}
		}
	}
	var errs []error
	fail := func(file string, err error) {
		errs = append(errs, fmt.Errorf("%s (used by %s): %w", file, strings.Join(usersOf[file], ", "), err))
	}
	if len(k.pubOf) > 0 {
		pass, err := g.passphrase(false)
		if err != nil {
			return nil, fmt.Errorf("checking signing keys: %w", err)
		}
		k.pass, k.havePass = pass, true
	}
	for _, key := range sortedKeys(k.pubOf) {
		ck, err := signing.LoadCosignKey(key, k.pass)
		if err != nil {
			fail(key, err)
			continue
		}
		pub := k.pubOf[key]
		pk, err := signing.LoadPublicKey(pub)
		if err != nil {
			fail(key, fmt.Errorf("signing.pub: %w", err))
			continue
		}
		if hint, _ := signing.KeyHint(pk); hint != ck.Hint() {
			fail(key, fmt.Errorf("signing.pub %s (key %s) is not the public key of this key (key %s)", pub, hint, ck.Hint()))
			continue
		}
		k.cosign[key] = ck
	}
	for _, cert := range sortedKeys(sbKeyOf) {
		key := sbKeyOf[cert]
		if cert == "" || key == "" {
			fail(cert+key, errors.New("secureboot needs both key and cert"))
			continue
		}
		kp, err := secureboot.LoadKeyPair(cert, key)
		if err != nil {
			fail(cert, err)
			continue
		}
		k.sb[cert] = kp
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("checking signing keys before the build (nothing was run):\n%w", err)
	}
	return k, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// secret serves the stages' secrets: the passphrase the pre-flight used.
func (k *buildKeys) secret(name string) (string, bool) {
	if name == passwordEnv && k.havePass {
		return string(k.pass), true
	}
	return "", false
}

// signingRecord signs SHA256SUMS (see compose.SignSums for when) and
// returns what compose.json records about the keys (extra["signing"]).
func (k *buildKeys) signingRecord(ctx context.Context, dir string, targets []pipeline.TargetRecord) (*compose.Record, error) {
	r := &compose.Record{}
	signers := map[string]signing.Signer{}
	cosignUsers := map[string][]string{}
	sbUsers := map[string][]string{}
	for _, tr := range targets {
		t := tr.Target.String()
		signers[t] = nil
		if key, ok := k.cosignOf[t]; ok && k.cosign[key] != nil {
			signers[t] = k.cosign[key]
			cosignUsers[key] = append(cosignUsers[key], t)
		}
		if cert, ok := k.sbOf[t]; ok && k.sb[cert] != nil {
			sbUsers[cert] = append(sbUsers[cert], t)
		}
	}
	for _, key := range sortedKeys(cosignUsers) {
		r.Cosign = append(r.Cosign, compose.KeyRef{Pub: k.pubOf[key], Hint: k.cosign[key].Hint(), Targets: cosignUsers[key]})
	}
	for _, cert := range sortedKeys(sbUsers) {
		c := k.sb[cert].Cert
		r.SecureBoot = append(r.SecureBoot, compose.CertRef{Cert: cert, Fingerprint: secureboot.Fingerprint(c), Subject: c.Subject.String(), Targets: sbUsers[cert]})
	}
	sums, err := compose.SignSums(ctx, dir, signers)
	if err != nil {
		return nil, err
	}
	r.Sums = sums
	return r, nil
}

// finalizeCompose runs once the stages are done, before the compose is
// renamed into place: it signs SHA256SUMS when every target uses the same
// signing key, and records the keys in compose.json (extra["signing"]),
// warning when SHA256SUMS stays unsigned although some target signs.
func (g *globals) finalizeCompose(ctx context.Context, c *artifacts.Compose, rec *pipeline.ComposeRecord, keys *buildKeys, log zerolog.Logger) error {
	if keys == nil {
		return nil
	}
	r, err := keys.signingRecord(ctx, c.WorkDir(), rec.Targets)
	if err != nil {
		return err
	}
	switch {
	case r.Sums.Signed:
		log.Info().Str("key", r.Sums.Hint).Msg("signed SHA256SUMS")
	case len(r.Cosign) > 0:
		log.Warn().Str("reason", r.Sums.Reason).Msg("SHA256SUMS is not signed")
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("recording signing keys: %w", err)
	}
	if rec.Extra == nil {
		rec.Extra = map[string]json.RawMessage{}
	}
	rec.Extra[compose.ExtraKey] = b
	return nil
}
