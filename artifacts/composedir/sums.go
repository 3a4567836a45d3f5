package composedir

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cfs-compose/cfs-compose/signing"
)

// SignSums signs the SHA256SUMS of the compose directory dir (a compose
// being written) when every target uses the same artifact signing key.
// keys maps each target of the compose ("variant/arch") to its signer, nil
// for a target without a signing key.
//
// One SHA256SUMS can carry one signature (SHA256SUMS.sig and
// SHA256SUMS.sigstore.json), so:
//
//   - every target signed with one key: SHA256SUMS is signed with it;
//   - no target has a key: nothing is written;
//   - targets with different keys, or some with a key and some without:
//     nothing is written either, and the returned record's Reason names
//     the targets and their keys. Such a compose cannot pass a
//     verification with one key; sign SHA256SUMS afterwards with the
//     offline hand-off, or build the variants as separate composes.
//
// The error is only for a signature that could not be made or written.
func SignSums(ctx context.Context, dir string, keys map[string]signing.Signer) (SumsRecord, error) {
	targets := make([]string, 0, len(keys))
	for t := range keys {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	hints := map[string]string{} // target -> hint ("" for none)
	distinct := map[string]bool{}
	var signer signing.Signer
	for _, t := range targets {
		s := keys[t]
		if s == nil {
			hints[t] = ""
			distinct[""] = true
			continue
		}
		h, err := signing.KeyHint(s.Public())
		if err != nil {
			return SumsRecord{}, err
		}
		hints[t] = h
		distinct[h] = true
		signer = s
	}
	switch {
	case len(targets) == 0 || (len(distinct) == 1 && distinct[""]):
		return SumsRecord{Reason: "no target has a signing key"}, nil
	case len(distinct) > 1:
		var parts []string
		for _, t := range targets {
			h := hints[t]
			if h == "" {
				h = "no key"
			}
			parts = append(parts, t+": "+h)
		}
		return SumsRecord{Reason: "targets use different signing keys (" + strings.Join(parts, ", ") + "); one SHA256SUMS can carry only one signature"}, nil
	}
	p := filepath.Join(dir, sumsPath)
	if err := signing.SignFile(ctx, signer, p, nil); err != nil {
		return SumsRecord{}, fmt.Errorf("signing %s: %w", sumsPath, err)
	}
	return SumsRecord{
		Signed: true,
		Hint:   hints[targets[0]],
		Files:  []string{sumsPath + signing.SigSuffix, sumsPath + signing.BundleSuffix},
	}, nil
}
