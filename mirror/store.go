package mirror

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/cairnlog/cairn/format/addcheckpoint"
	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/format/loglist"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// logMirror is the state of one mirrored log.
type logMirror struct {
	log loglist.Log
	own []note.Verifier // the mirror's keys
	// witnesses are the cosigners whose lines are relayed (Config.Witnesses).
	witnesses []note.Verifier
	dropped   prometheus.Counter
	id        string
	// obj holds the log's tlog-tiles files under log/ and the mirror's
	// state: pending.json, integrated.json, evidence/.
	obj objects
	// minIndex is the mirror's minimum index for this log (a multiple of
	// 256); seedURL and hc read the tree left of it from the log.
	minIndex uint64
	seedURL  string
	hc       *http.Client

	// mu guards pending, recent, order, next, integrated, changed,
	// mirrorSize and mirrorNote. It is never held while reading a request
	// body or integrating.
	mu         sync.Mutex
	pending    pendingCheckpoint            // the latest pending checkpoint
	recent     map[uint64]pendingCheckpoint // past pending checkpoints by size, for upload_end
	order      []uint64                     // sizes in recent, oldest first
	next       uint64                       // first entry not stored
	integrated uint64                       // entries in the stored tiles (integrated.json)
	changed    chan struct{}                // closed (and replaced) when next, pending or integrated change
	// leafCache holds, per entry bundle, the leaf hashes verification
	// computed, until integration has used them.
	leafCache  map[uint64][]tlog.Hash
	mirrorSize uint64
	mirrorNote []byte // the served checkpoint: log signature + mirror cosignatures

	// commitMu serialises mirror checkpoint updates.
	commitMu sync.Mutex

	evidenceMu   sync.Mutex
	evidenceSeen map[string]bool
}

// pendingFile holds the recent pending checkpoints, newest last.
type pendingFile struct {
	Pending []string `json:"pending"`
}

// open loads a log's state, creating it on first use.
func (m *Mirror) open(ctx context.Context, l loglist.Log, sd Seed, hc *http.Client) (*logMirror, error) {
	id := OriginID(l.Origin)
	obj, err := m.storage.Open(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("opening the storage of %q: %w", l.Origin, err)
	}
	lm := &logMirror{
		log: l, own: m.verifiers, witnesses: m.witnesses, dropped: m.metrics.dropped.WithLabelValues(l.Origin), id: id, obj: obj,
		recent: map[uint64]pendingCheckpoint{}, evidenceSeen: map[string]bool{}, changed: make(chan struct{}),
		leafCache: map[uint64][]tlog.Hash{},
		minIndex:  sd.MinimumIndex / layout.EntryBundleWidth * layout.EntryBundleWidth, seedURL: sd.URL, hc: hc,
	}
	b, err := obj.Get(ctx, "pending.json")
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading the pending checkpoints of %q: %w", l.Origin, err)
	default:
		var pf pendingFile
		if err := json.Unmarshal(b, &pf); err != nil {
			return nil, fmt.Errorf("%s: corrupt pending checkpoints: %w", id, err)
		}
		for _, n := range pf.Pending {
			c, err := lm.openNote([]byte(n))
			if err != nil {
				return nil, fmt.Errorf("%s: a stored pending checkpoint does not verify with the log key: %w", id, err)
			}
			lm.remember(c)
		}
	}
	cp, err := obj.Get(ctx, logPath(layout.CheckpointPath))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading the mirror checkpoint of %q: %w", l.Origin, err)
	default:
		v := append([]note.Verifier{l.Verifier}, m.verifiers...)
		n, err := note.Open(cp, note.VerifierList(v...))
		if err != nil {
			return nil, fmt.Errorf("%s: the mirror checkpoint does not verify: %w", id, err)
		}
		c, err := checkpoint.Parse([]byte(n.Text))
		if err != nil {
			return nil, fmt.Errorf("%s: the mirror checkpoint: %w", id, err)
		}
		lm.mirrorSize, lm.mirrorNote = c.Size, cp
		m.metrics.mirrorSize.WithLabelValues(l.Origin).Set(float64(c.Size))
	}
	// Entries up to the integrated size are stored; later bundles may be
	// too, but a client re-sending them costs less than trusting a scan.
	// (A directory written before integrated.json existed has its tiles
	// at least up to the mirror checkpoint.)
	st, err := obj.Get(ctx, integratedPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		lm.integrated = lm.mirrorSize
	case err != nil:
		return nil, fmt.Errorf("reading the integrated size of %q: %w", l.Origin, err)
	default:
		var is integratedState
		if err := json.Unmarshal(st, &is); err != nil {
			return nil, fmt.Errorf("%s: corrupt %s: %w", id, integratedPath, err)
		}
		lm.integrated = max(is.Size, lm.mirrorSize)
	}
	// tlog-mirror: the next entry is the first one at or past the
	// minimum index that is not stored.
	lm.next = max(lm.integrated, lm.minIndex)
	m.metrics.pendingSize.WithLabelValues(l.Origin).Set(float64(lm.pending.Size))
	return lm, nil
}

// remember makes c the pending checkpoint and keeps it as a valid upload_end.
// Callers hold mu (or own lm exclusively).
func (lm *logMirror) remember(c pendingCheckpoint) {
	if _, ok := lm.recent[c.Size]; !ok {
		lm.order = append(lm.order, c.Size)
	}
	lm.recent[c.Size] = c
	for len(lm.order) > recentPending {
		delete(lm.recent, lm.order[0])
		lm.order = lm.order[1:]
	}
	lm.pending = c
	lm.notify()
}

// savePending stores c as the new pending checkpoint, durably, then makes it
// current. Callers hold mu.
func (lm *logMirror) savePending(c pendingCheckpoint) error {
	var pf pendingFile
	for _, s := range lm.order {
		if s != c.Size {
			pf.Pending = append(pf.Pending, string(lm.recent[s].Note))
		}
	}
	pf.Pending = append(pf.Pending, string(c.Note))
	if len(pf.Pending) > recentPending {
		pf.Pending = pf.Pending[len(pf.Pending)-recentPending:]
	}
	b, err := json.Marshal(pf)
	if err != nil {
		return err
	}
	if err := put(context.Background(), lm.obj, "pending.json", b); err != nil {
		return err
	}
	if _, ok := lm.recent[c.Size]; ok {
		// Re-pending a known size (same root): move it to the newest place.
		for i, s := range lm.order {
			if s == c.Size {
				lm.order = append(lm.order[:i], lm.order[i+1:]...)
				break
			}
		}
		delete(lm.recent, c.Size)
	}
	lm.remember(c)
	return nil
}

// maxEvidenceSeen bounds the set of evidence already kept per log.
const maxEvidenceSeen = 4096

// keepEvidence stores a refused inconsistent checkpoint under evidence/,
// once per (pending, submitted, reason kind).
func (lm *logMirror) keepEvidence(m *Mirror, cur pendingCheckpoint, r addcheckpoint.Request, reason string) {
	key := reasonKind(reason) + "\x00" + string(cur.Note) + "\x00" + string(r.Checkpoint)
	lm.evidenceMu.Lock()
	seen := lm.evidenceSeen[key]
	if !seen {
		if len(lm.evidenceSeen) >= maxEvidenceSeen {
			clear(lm.evidenceSeen)
		}
		lm.evidenceSeen[key] = true
	}
	lm.evidenceMu.Unlock()
	if seen {
		return
	}
	now := m.now().UTC()
	ev := Evidence{Time: now, Origin: lm.log.Origin, Reason: reason, Pending: string(cur.Note), Submitted: string(r.Checkpoint), Old: r.Old}
	for _, h := range r.Proof {
		ev.Proof = append(ev.Proof, base64.StdEncoding.EncodeToString(h))
	}
	b, err := json.MarshalIndent(ev, "", "  ")
	if err == nil {
		err = put(context.Background(), lm.obj, fmt.Sprintf("evidence/%d.json", now.UnixNano()), b)
	}
	if err != nil {
		m.logger.Error("could not store evidence", slog.String("origin", cleanOrigin(lm.log.Origin)), slog.Any("error", err))
		return
	}
	m.metrics.evidence.Inc()
	m.logger.Warn("refused an inconsistent checkpoint; evidence kept", slog.String("origin", cleanOrigin(lm.log.Origin)), slog.String("reason", reason))
}

func reasonKind(reason string) string {
	for i := range len(reason) {
		if reason[i] == ':' {
			return reason[:i]
		}
	}
	return reason
}

// ReadEvidence returns the evidence kept in a mirror's storage directory,
// for every log, oldest first per log.
func ReadEvidence(dir string) ([]Evidence, error) {
	logs, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Evidence
	for _, l := range logs {
		if !l.IsDir() {
			continue
		}
		evs, err := evidenceIn(context.Background(), dirObjects{root: filepath.Join(dir, l.Name())})
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

// evidenceIn reads the evidence kept among one log's objects.
func evidenceIn(ctx context.Context, o objects) ([]Evidence, error) {
	names, err := o.List(ctx, "evidence")
	if err != nil {
		return nil, err
	}
	var out []Evidence
	for _, name := range names {
		b, err := o.Get(ctx, "evidence/"+name)
		if err != nil {
			return nil, err
		}
		var ev Evidence
		if err := json.Unmarshal(b, &ev); err != nil {
			return nil, fmt.Errorf("evidence/%s: %w", name, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// ownKey reports whether a signature line names one of the mirror's keys.
func (lm *logMirror) ownKey(s note.Signature) bool {
	for _, v := range lm.own {
		if s.Name == v.Name() && s.Hash == v.KeyHash() {
			return true
		}
	}
	return false
}
