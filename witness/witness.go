// Package witness is Cairn's tlog-witness (c2sp.org/tlog-witness): it
// cosigns a log's checkpoint only if it is consistent with the latest one it
// cosigned for that origin, persists that fact before answering, and keeps
// evidence of every inconsistent checkpoint it is shown.
package witness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cairnlog/cairn/format/addcheckpoint"
	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/format/cosignature"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/time/rate"
)

// Outcomes of add-checkpoint; statusOf maps them to HTTP.
var (
	ErrMalformed     = addcheckpoint.ErrMalformed
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

// Config configures a witness. Validate says which field is wrong.
type Config struct {
	// PrivateKeys are the witness's cosigner keys (PRIVATE+KEY+...): Ed25519
	// (type 0x04, or 0x01) and/or ML-DSA-44 (0x06). Each add-checkpoint
	// answer carries one cosignature line per key, in this order.
	PrivateKeys []string
	// Logs are the logs this witness cosigns for.
	Logs []Log
	// DB is the state directory, created owner-only (0700). An existing
	// directory or journal that other users can write is refused.
	DB string
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock of the qpd budgets and evidence times (tests); nil
	// means time.Now.
	Now func() time.Time
}

// Validate checks the configuration; errors are *fielderr.Error naming the
// Config field.
func (c Config) Validate() error {
	if _, err := parseSigners(c.PrivateKeys); err != nil {
		return err
	}
	if c.DB == "" {
		return fielderr.New("Config.DB", errors.New("a state directory is required"))
	}
	seen := make(map[string]bool, len(c.Logs))
	for i, l := range c.Logs {
		switch {
		case l.Origin == "":
			return fielderr.Errorf("Config.Logs", "log %d has no origin", i+1)
		case l.Verifier == nil:
			return fielderr.Errorf("Config.Logs", "log %q has no verifier", truncate(l.Origin))
		case seen[l.Origin]:
			return fielderr.Errorf("Config.Logs", "origin %q is listed twice", truncate(l.Origin))
		}
		seen[l.Origin] = true
	}
	return nil
}

// parseSigners parses the witness's keys: at least one, no key twice.
func parseSigners(keys []string) ([]*cosignature.Signer, error) {
	if len(keys) == 0 {
		return nil, fielderr.New("Config.PrivateKeys", errors.New("a witness private key is required"))
	}
	signers := make([]*cosignature.Signer, 0, len(keys))
	for i, k := range keys {
		s, err := cosignature.ParseSigner(k)
		if err != nil {
			return nil, fielderr.Errorf("Config.PrivateKeys", "not a witness private key%s: %w", keyNumber(i, len(keys)), err)
		}
		for _, o := range signers {
			if o.Name() == s.Name() && o.KeyHash() == s.KeyHash() {
				return nil, fielderr.Errorf("Config.PrivateKeys", "%s key %s+%08x is given twice", s.Type(), s.Name(), s.KeyHash())
			}
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// keyNumber names key i of n in an error, when there are several.
func keyNumber(i, n int) string {
	if n == 1 {
		return ""
	}
	return fmt.Sprintf(" (key %d of %d)", i+1, n)
}

// Witness is the tlog-witness state machine.
type Witness struct {
	// signers cosign every checkpoint, one line each; self holds their
	// verifiers, for the stored state.
	signers []note.Signer
	keys    []*cosignature.Signer
	self    note.Verifiers
	store   *store
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time
	// refusals bounds the log lines about refused requests (403, 429):
	// whoever sends them must not be able to flood the log.
	refusals *refusalLog

	// mu guards logs and limiters. A limiter, once made for an origin, is
	// kept for the life of the process (SetLogs only retunes it), so a
	// reload never refills a spent qpd budget.
	mu       sync.RWMutex
	logs     map[string]Log
	limiters map[string]*rate.Limiter

	origins sync.Map // origin → *originState

	evidenceMu   sync.Mutex
	evidenceSeen map[[32]byte]bool // evidence already kept (keepEvidence)

	// stallBeforeSave, when set (tests only), runs between an
	// add-checkpoint's consistency check and the compare-and-store of its
	// new state, so a test can race another request into that gap.
	stallBeforeSave func(origin string)
}

// originState is an origin's stored state. mu guards st: the
// compare-and-store of add-checkpoint holds it, the checks before it work on
// a copy.
type originState struct {
	mu     sync.Mutex
	loaded bool
	st     state
}

// New opens the witness state and checks it: every stored checkpoint must
// verify with the witness's own key, or New fails.
func New(cfg Config) (*Witness, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := parseSigners(cfg.PrivateKeys)
	if err != nil {
		return nil, err
	}
	signers := make([]note.Signer, len(keys))
	verifiers := make([]note.Verifier, len(keys))
	for i, k := range keys {
		signers[i], verifiers[i] = k, k.Verifier()
	}
	st, err := openStore(cfg.DB)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Witness{
		signers:  signers,
		keys:     keys,
		self:     note.VerifierList(verifiers...),
		store:    st,
		logger:   cfg.Logger,
		metrics:  newMetrics(),
		now:      cfg.Now,
		refusals: newRefusalLog(cfg.Logger),
		limiters: map[string]*rate.Limiter{},

		evidenceSeen: map[[32]byte]bool{},
	}
	w.SetLogs(cfg.Logs)
	if err := w.checkState(); err != nil {
		st.journal.close()
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

// Name is the witness's key name (of its first key).
func (w *Witness) Name() string { return w.keys[0].Name() }

// Keys are the witness's cosigner keys, in the order its answers carry
// their cosignatures.
func (w *Witness) Keys() []*cosignature.Signer { return w.keys }

// SetLogs replaces the set of logs (SIGHUP reload). State of logs that stay
// listed is kept, and so is what they spent of their qpd budget: a reload
// changes a budget's rate and burst but never refills it.
func (w *Witness) SetLogs(logs []Log) {
	m := make(map[string]Log, len(logs))
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range logs {
		m[l.Origin] = l
		if l.QPD == 0 {
			continue
		}
		// qpd is a daily budget: refill evenly, allow a tenth of it at once.
		limit, burst := rate.Limit(float64(l.QPD)/86400), max(1, int(l.QPD/10))
		if lim, ok := w.limiters[l.Origin]; ok {
			lim.SetLimitAt(now, limit)
			lim.SetBurstAt(now, burst)
			continue
		}
		w.limiters[l.Origin] = rate.NewLimiter(limit, burst)
	}
	w.logs = m
}

// lookup returns the origin's log entry and, if it has a qpd, its budget.
func (w *Witness) lookup(origin string) (Log, *rate.Limiter, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	l, ok := w.logs[origin]
	if !ok || l.QPD == 0 {
		return l, nil, ok
	}
	return l, w.limiters[origin], true
}

// origin returns the origin's entry, loading its state on first use, and a
// copy of that state.
func (w *Witness) origin(origin string) (*originState, state, error) {
	v, _ := w.origins.LoadOrStore(origin, &originState{})
	o := v.(*originState)
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.loaded {
		st, _, err := w.store.load(origin, w.self)
		if err != nil {
			return nil, state{}, err
		}
		o.st, o.loaded = st, true
	}
	return o, o.st, nil
}

// AddCheckpoint implements tlog-witness add-checkpoint. On success it returns
// the cosignature line(s), each ending in a newline, after the new state is
// durable.
//
// Only a request that advances the witness's state spends the origin's qpd
// budget. Anyone can replay the log's signed checkpoints with any old size
// and proof; those that cannot advance the state (409, 400, 422, or the
// cosigned checkpoint again) cost nothing, so they cannot use up the budget
// the log needs.
//
// The checks run on a copy of the state; the new state is stored only if
// the state is still that copy (compare-and-store under the origin's lock),
// otherwise the answer is 409 with the size another request stored.
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
	if !everyLogSignatureVerifies(r.Checkpoint, n.Text, lg.Verifier) {
		return nil, fmt.Errorf("%w: a repeated signature by %s does not verify", ErrBadSignature, lg.Verifier.Name())
	}
	c, err := checkpoint.Parse([]byte(n.Text))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.Old > c.Size {
		return nil, fmt.Errorf("%w: old %d > size %d", ErrOldTooLarge, r.Old, c.Size)
	}

	o, cur, err := w.origin(origin)
	if err != nil {
		return nil, err
	}
	if r.Old != cur.Size {
		return nil, ConflictError{Size: cur.Size}
	}
	if c.Size == 0 && c.Root != checkpoint.EmptyRoot {
		return nil, fmt.Errorf("%w: a size-0 checkpoint must have the empty-tree root", ErrInconsistent)
	}
	if r.Old == 0 && len(r.Proof) > 0 {
		return nil, fmt.Errorf("%w: a consistency proof from size 0 must be empty", ErrInconsistent)
	}
	advances := true
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
		// The cosigned checkpoint again: a fresh cosignature, no new state.
		advances = false
	case r.Old > 0:
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, r.Old, c.Size, r.Proof, cur.Root[:], c.Root[:]); err != nil {
			w.keepEvidence(origin, cur, r, "consistency proof does not verify: "+err.Error())
			return nil, fmt.Errorf("%w: consistency proof %d → %d does not verify", ErrInconsistent, r.Old, c.Size)
		}
	}

	if w.stallBeforeSave != nil {
		w.stallBeforeSave(origin)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !bytes.Equal(o.st.Note, cur.Note) {
		// Another request advanced the state since the checks: old is stale.
		return nil, ConflictError{Size: o.st.Size}
	}
	if advances && limiter != nil && !limiter.AllowN(w.now(), 1) {
		w.metrics.rateLimited.WithLabelValues(origin).Inc()
		return nil, fmt.Errorf("%w: %q is over its qpd of %d", ErrRateLimited, origin, lg.QPD)
	}

	// Cosign with every key, then persist the log's verified signature(s)
	// with ours.
	signed, err := note.Sign(&note.Note{Text: n.Text}, w.signers...)
	if err != nil {
		return nil, fmt.Errorf("cosigning: %w", err)
	}
	cosig := signed[bytes.LastIndex(signed, []byte("\n\n"))+2:]
	for _, k := range w.keys {
		w.metrics.cosignatures.WithLabelValues(k.Type().String()).Inc()
	}
	if !advances {
		// The stored note already holds this checkpoint, the log's
		// signature and our cosignature; nothing to write.
		return cosig, nil
	}
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
	w.metrics.size.WithLabelValues(origin).Set(float64(c.Size))
	return cosig, nil
}

// everyLogSignatureVerifies reports whether every signature line of the
// verified note msg (text n.Text) that names the log's key verifies. note.Open
// verifies the first line per key and drops the repeats unchecked, but
// signed-note says a signature by a known (name, key ID) must verify, and
// tlog-witness answers 403 when one does not. Only the repeats are checked
// here, so the common note (one log signature) costs no second verification.
func everyLogSignatureVerifies(msg []byte, text string, v note.Verifier) bool {
	sigs := strings.TrimSuffix(string(msg[len(text)+1:]), "\n")
	first := ""
	for _, line := range strings.Split(sigs, "\n") {
		name, b64, ok := strings.Cut(strings.TrimPrefix(line, "— "), " ")
		if !ok || name != v.Name() {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sig) < 5 || binary.BigEndian.Uint32(sig) != v.KeyHash() {
			continue
		}
		switch {
		case first == "":
			first = b64 // the one note.Open verified
		case b64 == first:
		case !v.Verify([]byte(text), sig[4:]):
			return false
		}
	}
	return true
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

// maxEvidenceSeen bounds the set of evidence already kept; past it the set
// starts over.
const maxEvidenceSeen = 4096

// keepEvidence stores a refused inconsistent request. It keeps one record per
// (cosigned checkpoint, submitted checkpoint, reason kind) per process: a
// bad proof needs no key, so anyone relaying a newer checkpoint of the log
// could otherwise write a file per request.
func (w *Witness) keepEvidence(origin string, cur state, r AddCheckpointRequest, reason string) {
	kind, _, _ := strings.Cut(reason, ":")
	key := sha256.Sum256([]byte(kind + "\x00" + string(cur.Note) + "\x00" + string(r.Checkpoint)))
	w.evidenceMu.Lock()
	seen := w.evidenceSeen[key]
	if !seen {
		if len(w.evidenceSeen) >= maxEvidenceSeen {
			clear(w.evidenceSeen)
		}
		w.evidenceSeen[key] = true
	}
	w.evidenceMu.Unlock()
	if seen {
		return
	}
	ev := Evidence{Time: w.now().UTC(), Origin: origin, Reason: reason, Cosigned: string(cur.Note), Submitted: string(r.Checkpoint), Old: r.Old}
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
	_, st, err := w.origin(origin)
	if err != nil {
		return nil, false, err
	}
	return st.Note, st.Note != nil, nil
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
