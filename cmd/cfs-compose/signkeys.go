package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/rs/zerolog"

	"github.com/cfs-compose/cfs-compose/artifacts"
	"github.com/cfs-compose/cfs-compose/artifacts/composedir"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/signing"
	"github.com/cfs-compose/cfs-compose/signing/secureboot"
)

// buildKeys are the signing keys of a build, loaded and checked before any
// stage runs (the pre-flight), so a key that cannot be read or decrypted
// stops the build at once instead of after hours of stages.
type buildKeys struct {
	pass     []byte // the cosign passphrase; set when a cosign key is configured
	havePass bool
	cosign   map[cosignRef]*signing.CosignKey // loaded and checked key pairs
	cosignOf map[string]cosignRef             // target "variant/arch" -> its key pair
	sb       map[string]*secureboot.KeyPair   // by secureboot.cert path
	sbOf     map[string]string                // target -> secureboot.cert path
}

// warnKeyFile warns, as ssh does, when a private key file is open to
// other users (signing.CheckKeyFile); the build goes on.
func (g *globals) warnKeyFile(setting, path string, users []string) {
	var ke *signing.KeyFileError
	if err := signing.CheckKeyFile(path); errors.As(err, &ke) {
		g.log.Warn().Str("setting", setting).Str("targets", strings.Join(users, ", ")).Msg("unprotected private key: " + ke.Error())
	}
}

// cosignRef is a configured cosign key pair (signing.key, signing.pub).
type cosignRef struct{ key, pub string }

// loadBuildKeys loads every cosign key (decrypted with the passphrase from
// CFS_SIGNING_PASSWORD, or asked for on a terminal, and checked against
// its signing.pub) and every Secure Boot key pair that the selected
// targets' manifests configure. Each key is loaded once; every failure is
// reported, naming the setting, the targets using it and (in the wrapped
// error) the file. Targets whose config cannot be resolved are left to the
// planner, which reports them.
func (g *globals) loadBuildKeys(m pipeline.Manifests, variants, arches []string) (*buildKeys, error) {
	k := &buildKeys{
		cosign: map[cosignRef]*signing.CosignKey{}, cosignOf: map[string]cosignRef{},
		sb: map[string]*secureboot.KeyPair{}, sbOf: map[string]string{},
	}
	cosignUsers := map[cosignRef][]string{}
	sbUsers := map[string][]string{} // cert path -> targets
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
			if cfg.Signing.Key != "" {
				ref := cosignRef{cfg.Signing.Key, cfg.Signing.Pub}
				k.cosignOf[t] = ref
				cosignUsers[ref] = append(cosignUsers[ref], t)
			}
			if cert := cfg.SecureBoot.Cert; cert != "" || cfg.SecureBoot.Key != "" {
				k.sbOf[t] = cert
				sbKeyOf[cert] = cfg.SecureBoot.Key
				sbUsers[cert] = append(sbUsers[cert], t)
			}
		}
	}
	var errs []error
	// fail reports a key's problem once, with the setting and the targets
	// that use it (err names the file).
	fail := func(setting string, users []string, err error) {
		errs = append(errs, fmt.Errorf("%s of %s: %w", setting, strings.Join(users, ", "), err))
	}
	if len(cosignUsers) > 0 {
		pass, err := g.passphrase(false)
		if err != nil {
			return nil, fmt.Errorf("checking signing keys before the build (nothing was run): %w", err)
		}
		k.pass, k.havePass = pass, true
	}
	refs := make([]cosignRef, 0, len(cosignUsers))
	for ref := range cosignUsers {
		refs = append(refs, ref)
	}
	sort.Slice(refs, func(i, j int) bool {
		return refs[i].key < refs[j].key || refs[i].key == refs[j].key && refs[i].pub < refs[j].pub
	})
	loaded := map[string]*signing.CosignKey{}
	for _, ref := range refs {
		users := cosignUsers[ref]
		ck, seen := loaded[ref.key]
		if !seen {
			var err error
			ck, err = signing.LoadCosignKey(ref.key, k.pass)
			loaded[ref.key] = ck
			if err != nil {
				fail("signing.key", users, err)
				continue
			}
			g.warnKeyFile("signing.key", ref.key, users)
		}
		if ck == nil {
			continue // reported with the key's first pair
		}
		pk, err := signing.LoadPublicKey(ref.pub)
		if err != nil {
			fail("signing.pub", users, err)
			continue
		}
		if hint, _ := signing.KeyHint(pk); hint != ck.Hint() {
			fail("signing.pub", users, fmt.Errorf("%s (key %s) is not the public key of %s (key %s)", ref.pub, hint, ref.key, ck.Hint()))
			continue
		}
		k.cosign[ref] = ck
	}
	for _, cert := range sortedKeys(sbKeyOf) {
		key := sbKeyOf[cert]
		if cert == "" || key == "" {
			fail("secureboot", sbUsers[cert], errors.New("secureboot needs both key and cert"))
			continue
		}
		kp, err := secureboot.LoadKeyPair(cert, key)
		if err != nil {
			fail("secureboot.key/cert", sbUsers[cert], err)
			continue
		}
		g.warnKeyFile("secureboot.key", key, sbUsers[cert])
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

// signingRecord signs SHA256SUMS (see composedir.SignSums for when) and
// returns what compose.json records about the keys (extra["signing"]).
func (k *buildKeys) signingRecord(ctx context.Context, dir string, targets []artifacts.TargetRecord) (*composedir.Record, error) {
	r := &composedir.Record{}
	signers := map[string]signing.Signer{}
	cosignUsers := map[string][]string{} // pub path -> targets
	hintOf := map[string]string{}
	sbUsers := map[string][]string{}
	for _, tr := range targets {
		t := tr.Target.String()
		signers[t] = nil
		if ref, ok := k.cosignOf[t]; ok && k.cosign[ref] != nil {
			signers[t] = k.cosign[ref]
			cosignUsers[ref.pub] = append(cosignUsers[ref.pub], t)
			hintOf[ref.pub] = k.cosign[ref].Hint()
		}
		if cert, ok := k.sbOf[t]; ok && k.sb[cert] != nil {
			sbUsers[cert] = append(sbUsers[cert], t)
		}
	}
	for _, pub := range sortedKeys(cosignUsers) {
		r.Cosign = append(r.Cosign, composedir.KeyRef{Pub: pub, Hint: hintOf[pub], Targets: cosignUsers[pub]})
	}
	for _, cert := range sortedKeys(sbUsers) {
		c := k.sb[cert].Cert
		r.SecureBoot = append(r.SecureBoot, composedir.CertRef{Cert: cert, Fingerprint: secureboot.Fingerprint(c), Subject: c.Subject.String(), Targets: sbUsers[cert]})
	}
	sums, err := composedir.SignSums(ctx, dir, signers)
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
func (g *globals) finalizeCompose(ctx context.Context, c *artifacts.Compose, rec *artifacts.ComposeRecord, keys *buildKeys, log zerolog.Logger) error {
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
	rec.Extra[composedir.ExtraKey] = b
	return nil
}
