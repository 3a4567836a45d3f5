package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/cfs-compose/cfs-compose/artifacts"
)

// memRemote is a RemoteCache in memory: records and the blobs they name.
type memRemote struct {
	mu      sync.Mutex
	recs    map[string]artifacts.Record
	blobs   map[artifacts.Digest][]byte
	corrupt bool // Fetch serves every blob with a flipped byte
	fetched int
	pushed  int
}

func newMemRemote() *memRemote {
	return &memRemote{recs: map[string]artifacts.Record{}, blobs: map[artifacts.Digest][]byte{}}
}

func (m *memRemote) Fetch(_ context.Context, st *artifacts.Store, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.recs[key]
	if !ok {
		return ErrRemoteMiss
	}
	for _, d := range rec.Digests() {
		b := bytes.Clone(m.blobs[d.Digest])
		if m.corrupt {
			b[0] ^= 0xff
		}
		got, err := st.PutBytes(d.MediaType, b)
		if err != nil {
			return err
		}
		if got.Digest != d.Digest {
			return fmt.Errorf("blob %s arrived as %s: refused", d.Digest, got.Digest)
		}
	}
	m.fetched++
	return st.PutRecord(&rec)
}

func (m *memRemote) Push(_ context.Context, st *artifacts.Store, rec *artifacts.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range rec.Digests() {
		b, err := st.ReadBlob(d.Digest)
		if err != nil {
			return err
		}
		m.blobs[d.Digest] = b
	}
	m.recs[rec.Key] = *rec
	m.pushed++
	return nil
}

// TestExecuteRemoteCache runs one plan on three "machines" (separate
// stores) sharing a remote: the first builds and pushes everything, the
// second builds nothing, the third is served corrupt blobs and builds
// everything itself, saying why.
func TestExecuteRemoteCache(t *testing.T) {
	remote := newMemRemote()
	m := newFake(map[string][]string{"coreos": {"aarch64", "x86_64"}})
	for _, tc := range []struct {
		name        string
		corrupt     bool
		wantRuns    int
		wantStatus  Status
		wantRemote  bool
		wantWarning string
	}{
		{name: "cold", wantRuns: 10, wantStatus: StatusRan},
		{name: "warm remote", wantRuns: 0, wantStatus: StatusCached, wantRemote: true},
		{name: "corrupt remote", corrupt: true, wantRuns: 10, wantStatus: StatusRan, wantWarning: "remote cache: entry not used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHooks()
			p, err := Resolve(context.Background(), m, chain(h), nil)
			if err != nil {
				t.Fatal(err)
			}
			remote.corrupt = tc.corrupt
			var log bytes.Buffer
			st := openStore(t, t.TempDir())
			res, err := Execute(context.Background(), p, st, &ExecOptions{Jobs: 2, Remote: remote, LogWriter: &log})
			if err != nil {
				t.Fatal(err)
			}
			runs := 0
			for _, k := range []string{"src", "cfs", "lint", "uki", "disk"} {
				runs += h.count(k)
			}
			if runs != tc.wantRuns {
				t.Errorf("stages run = %d, want %d", runs, tc.wantRuns)
			}
			for _, nr := range res.Nodes {
				if nr.Status != tc.wantStatus || nr.Remote != tc.wantRemote {
					t.Errorf("%s: status %s remote %v, want %s remote %v", nr.Node.ID, nr.Status, nr.Remote, tc.wantStatus, tc.wantRemote)
				}
				if _, err := st.GetRecord(nr.Key); err != nil {
					t.Errorf("%s: not in the local store: %v", nr.Node.ID, err)
				}
			}
			if tc.wantWarning != "" && !strings.Contains(log.String(), tc.wantWarning) {
				t.Errorf("log does not say %q:\n%s", tc.wantWarning, log.String())
			}
			if tc.wantWarning == "" && strings.Contains(log.String(), "remote cache:") {
				t.Errorf("unexpected remote cache warning:\n%s", log.String())
			}
		})
	}
	if remote.pushed != 20 || len(remote.recs) != 10 {
		t.Errorf("remote pushes %d (entries %d), want 20 pushes of 10 entries (cold and corrupt runs)", remote.pushed, len(remote.recs))
	}
	if remote.fetched != 10 {
		t.Errorf("remote fetches %d, want 10 (the warm run)", remote.fetched)
	}
}
