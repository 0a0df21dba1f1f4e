// Package witness is Cairn's tlog-witness (c2sp.org/tlog-witness): it
// cosigns a log's checkpoint only if it is consistent with the latest one it
// cosigned for that origin, persists that fact before answering, and keeps
// evidence of every inconsistent checkpoint it is shown.
package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cairnlog/cairn/format/checkpoint"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/time/rate"
)

// Outcomes of add-checkpoint; statusOf maps them to HTTP.
var (
	ErrMalformed     = errors.New("malformed request")
	ErrUnknownOrigin = errors.New("unknown origin")
	ErrBadSignature  = errors.New("no valid signature from the log's key")
	ErrOldTooLarge   = errors.New("old size is larger than the checkpoint size")
	ErrInconsistent  = errors.New("checkpoint is inconsistent with the cosigned one")
	ErrRateLimited   = errors.New("too many requests for this origin")
	ErrCorruptState  = errors.New("witness state is corrupt")
)

// ConflictError is the 409 answer: the client's old size is not the size
// the witness last cosigned.
type ConflictError struct{ Size uint64 }

func (e ConflictError) Error() string {
	return fmt.Sprintf("old size does not match: the latest cosigned size is %d", e.Size)
}

// Config configures a witness.
type Config struct {
	// PrivateKey is the witness key (PRIVATE+KEY+..., type 0x04 or 0x01).
	PrivateKey string
	// Logs are the logs this witness cosigns for.
	Logs []Log
	// DB is the state directory.
	DB string
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Witness is the tlog-witness state machine.
type Witness struct {
	signer   *fnote.Signer
	self     note.Verifier
	store    *store
	logger   *slog.Logger
	metrics  *metrics
	mu       sync.RWMutex
	logs     map[string]Log
	limiters map[string]*rate.Limiter
	origins  sync.Map // origin → *originState
}

// originState caches an origin's stored state; mu serialises the
// compare-and-store of add-checkpoint for that origin.
type originState struct {
	mu     sync.Mutex
	loaded bool
	st     state
}

// New opens the witness state and checks it: every stored checkpoint must
// verify with the witness's own key, or New fails.
func New(cfg Config) (*Witness, error) {
	signer, err := fnote.NewSignerForCosignatureV1(strings.TrimSpace(cfg.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("--key: not a witness private key (cairn keygen --witness): %w", err)
	}
	if cfg.DB == "" {
		return nil, errors.New("--db: a state directory is required")
	}
	st, err := openStore(cfg.DB)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Witness{
		signer:  signer,
		self:    signer.Verifier(),
		store:   st,
		logger:  cfg.Logger,
		metrics: newMetrics(),
	}
	w.SetLogs(cfg.Logs)
	if err := w.checkState(); err != nil {
		return nil, err
	}
	return w, nil
}

// checkState verifies the stored checkpoint of every listed log at start-up
// (fail closed).
func (w *Witness) checkState() error {
	for origin := range w.logs {
		st, ok, err := w.store.load(origin, w.self)
		if err != nil {
			return err
		}
		if ok {
			w.metrics.size.WithLabelValues(origin).Set(float64(st.Size))
		}
	}
	return nil
}

// Close releases the state journal.
func (w *Witness) Close() error { return w.store.journal.close() }

// Name is the witness's key name.
func (w *Witness) Name() string { return w.signer.Name() }

// VKey returns the witness's cosignature verifier.
func (w *Witness) Verifier() note.Verifier { return w.self }

// SetLogs replaces the set of logs (SIGHUP reload). State of logs that stay
// listed is kept.
func (w *Witness) SetLogs(logs []Log) {
	m := make(map[string]Log, len(logs))
	lim := make(map[string]*rate.Limiter, len(logs))
	for _, l := range logs {
		m[l.Origin] = l
		if l.QPD > 0 {
			// qpd is a daily budget: refill evenly, allow a tenth of it at once.
			lim[l.Origin] = rate.NewLimiter(rate.Limit(float64(l.QPD)/86400), max(1, int(l.QPD/10)))
		}
	}
	w.mu.Lock()
	w.logs, w.limiters = m, lim
	w.mu.Unlock()
}

func (w *Witness) lookup(origin string) (Log, *rate.Limiter, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	l, ok := w.logs[origin]
	return l, w.limiters[origin], ok
}

// origin returns the origin's entry, locked, with its state loaded.
func (w *Witness) origin(origin string) (*originState, error) {
	v, _ := w.origins.LoadOrStore(origin, &originState{})
	o := v.(*originState)
	o.mu.Lock()
	if !o.loaded {
		st, _, err := w.store.load(origin, w.self)
		if err != nil {
			o.mu.Unlock()
			return nil, err
		}
		o.st, o.loaded = st, true
	}
	return o, nil
}

// AddCheckpoint implements tlog-witness add-checkpoint. On success it returns
// the cosignature line(s), each ending in a newline, after the new state is
// durable.
func (w *Witness) AddCheckpoint(ctx context.Context, r AddCheckpointRequest) ([]byte, error) {
	origin, err := unverifiedOrigin(r.Checkpoint)
	if err != nil {
		return nil, err
	}
	lg, limiter, ok := w.lookup(origin)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not in this witness's log list", ErrUnknownOrigin, truncate(origin))
	}
	n, err := note.Open(r.Checkpoint, note.VerifierList(lg.Verifier))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return nil, fmt.Errorf("%w: no signature by %s", ErrBadSignature, lg.Verifier.Name())
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("%w: the signature by %s does not verify", ErrBadSignature, lg.Verifier.Name())
		default:
			return nil, fmt.Errorf("%w: checkpoint note: %v", ErrMalformed, err)
		}
	}
	c, err := checkpoint.Parse([]byte(n.Text))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.Old > c.Size {
		return nil, fmt.Errorf("%w: old %d > size %d", ErrOldTooLarge, r.Old, c.Size)
	}
	if limiter != nil && !limiter.Allow() {
		return nil, fmt.Errorf("%w: %q is over its qpd of %d", ErrRateLimited, origin, lg.QPD)
	}

	o, err := w.origin(origin)
	if err != nil {
		return nil, err
	}
	defer o.mu.Unlock()
	cur := o.st
	if r.Old != cur.Size {
		return nil, ConflictError{Size: cur.Size}
	}
	if c.Size == 0 && c.Root != checkpoint.EmptyRoot {
		return nil, fmt.Errorf("%w: a size-0 checkpoint must have the empty-tree root", ErrInconsistent)
	}
	if r.Old == 0 && len(r.Proof) > 0 {
		return nil, fmt.Errorf("%w: a consistency proof from size 0 must be empty", ErrInconsistent)
	}
	switch {
	case cur.Note == nil:
		// Never cosigned for this origin: old is 0 and the proof empty
		// (checked above); this checkpoint becomes the first.
	case r.Old == c.Size:
		if c.Root != cur.Root {
			w.keepEvidence(origin, cur, r, "same size, different root")
			return nil, fmt.Errorf("%w: size %d was cosigned with another root", ErrInconsistent, c.Size)
		}
		if len(r.Proof) > 0 {
			return nil, fmt.Errorf("%w: a consistency proof between equal sizes must be empty", ErrInconsistent)
		}
	case r.Old > 0:
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, r.Old, c.Size, r.Proof, cur.Root[:], c.Root[:]); err != nil {
			w.keepEvidence(origin, cur, r, "consistency proof does not verify: "+err.Error())
			return nil, fmt.Errorf("%w: consistency proof %d → %d does not verify", ErrInconsistent, r.Old, c.Size)
		}
	}

	// Cosign, then persist the log's verified signature(s) with ours.
	signed, err := note.Sign(&note.Note{Text: n.Text}, w.signer)
	if err != nil {
		return nil, fmt.Errorf("cosigning: %w", err)
	}
	cosig := signed[bytes.LastIndex(signed, []byte("\n\n"))+2:]
	var stored bytes.Buffer
	stored.WriteString(n.Text + "\n")
	for _, s := range n.Sigs {
		fmt.Fprintf(&stored, "— %s %s\n", s.Name, s.Base64)
	}
	stored.Write(cosig)
	next := state{Size: c.Size, Root: c.Root, Note: stored.Bytes()}
	if err := w.store.save(origin, next); err != nil {
		return nil, fmt.Errorf("persisting state of %q: %w", origin, err)
	}
	o.st = next
	w.metrics.cosignatures.Inc()
	w.metrics.size.WithLabelValues(origin).Set(float64(c.Size))
	return cosig, nil
}

// unverifiedOrigin reads the origin line of a note before verification, to
// find the key to verify it with.
func unverifiedOrigin(cp []byte) (string, error) {
	line, _, ok := bytes.Cut(cp, []byte("\n"))
	if !ok || len(line) == 0 {
		return "", fmt.Errorf("%w: the checkpoint has no origin line", ErrMalformed)
	}
	return string(line), nil
}

func (w *Witness) keepEvidence(origin string, cur state, r AddCheckpointRequest, reason string) {
	ev := Evidence{Time: time.Now().UTC(), Origin: origin, Reason: reason, Cosigned: string(cur.Note), Submitted: string(r.Checkpoint), Old: r.Old}
	for _, h := range r.Proof {
		ev.Proof = append(ev.Proof, b64(h))
	}
	if err := w.store.saveEvidence(ev); err != nil {
		w.logger.Error("could not store evidence", slog.String("origin", origin), slog.Any("error", err))
		return
	}
	w.metrics.evidence.Inc()
	w.logger.Warn("refused an inconsistent checkpoint; evidence kept", slog.String("origin", origin), slog.String("reason", reason))
}

// Latest returns the latest cosigned checkpoint of origin (log signature +
// cosignature), or ok=false before the first.
func (w *Witness) Latest(origin string) ([]byte, bool, error) {
	if _, _, ok := w.lookup(origin); !ok {
		return nil, false, nil
	}
	o, err := w.origin(origin)
	if err != nil {
		return nil, false, err
	}
	defer o.mu.Unlock()
	return o.st.Note, o.st.Note != nil, nil
}

// LatestByID is Latest keyed by OriginID.
func (w *Witness) LatestByID(id string) ([]byte, bool, error) {
	w.mu.RLock()
	var origin string
	for o := range w.logs {
		if OriginID(o) == id {
			origin = o
		}
	}
	w.mu.RUnlock()
	if origin == "" {
		return nil, false, nil
	}
	return w.Latest(origin)
}
