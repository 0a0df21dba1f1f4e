// Package mirror is Cairn's tlog-mirror (c2sp.org/tlog-mirror): a cosigner
// that stores a copy of each log it mirrors and serves it over tlog-tiles
// under /<hex SHA-256(origin)>/. Its cosignature says "every entry up to this
// checkpoint is durably stored here and served".
//
// Updates come in three steps, as the spec lays out: add-checkpoint moves the
// pending checkpoint (witness semantics, no cosignature), add-entries stores
// entry packages each proven against a pending checkpoint, and once every
// entry up to a pending checkpoint is stored and integrated (integrate.go
// builds the tiles beside the uploads) the mirror cosigns that checkpoint
// and serves it. The mirror checkpoint never moves backwards.
package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cairnlog/cairn/format/addcheckpoint"
	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/format/loglist"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/cairnlog/cairn/internal/mysqls3"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Outcomes of the mirror's endpoints; statusOf maps them to HTTP.
var (
	ErrMalformed     = errors.New("malformed request")
	ErrUnknownOrigin = errors.New("unknown origin")
	ErrBadSignature  = errors.New("no valid signature from the log's key")
	ErrOldTooLarge   = errors.New("old size is larger than the checkpoint size")
	ErrInconsistent  = errors.New("checkpoint is inconsistent with the pending one")
	ErrNoPending     = errors.New("no pending checkpoint for this log yet")
	ErrBadProof      = errors.New("entries do not verify against the pending checkpoint")
)

// ConflictError is add-checkpoint's 409: old is not the pending size.
type ConflictError struct{ Size uint64 }

func (e ConflictError) Error() string {
	return fmt.Sprintf("old size does not match: the pending checkpoint's size is %d", e.Size)
}

// DefaultMaxExcessEntries bounds how many already-stored entries an
// add-entries request may re-send (tlog-mirror: "too large" excess → 409).
const DefaultMaxExcessEntries = 2 * 8192

// recentPending is how many past pending checkpoints stay valid upload_end
// values (tlog-mirror: "SHOULD accept any of the last several").
const recentPending = 64

// Config configures a mirror. Validate says which field is wrong.
type Config struct {
	// PrivateKeys are the mirror's cosigner keys (PRIVATE+KEY+..., from
	// cairn keygen --witness); every one cosigns each mirror checkpoint.
	PrivateKeys []string
	// Logs are the logs this mirror stores.
	Logs []loglist.Log
	// Witnesses are the cosigners (witnesses, other mirrors) whose
	// cosignatures on a log's checkpoint the mirror relays. Every other
	// signature line is dropped: one by a known key only if it verifies,
	// one by an unknown key always, since the mirror cannot vouch for it
	// and a client that knows that key would reject the whole checkpoint
	// over a forged line.
	Witnesses []note.Verifier
	// Dir is the storage directory (posix): one subdirectory per log,
	// named by its OriginID.
	Dir string
	// AWS, when set instead of Dir, keeps the logs on mysql+s3: in the
	// bucket under <OriginID>/, with the database holding the writer lock
	// (one mirror frontend per bucket; a second is refused).
	AWS mysqls3.Config
	// Seeds start some logs at a minimum index, by origin (seed.go);
	// every other log is mirrored from entry 0.
	Seeds map[string]Seed
	// HTTPClient reads a seeded log's tiles; nil means a client without
	// proxy and with a 30 s timeout.
	HTTPClient *http.Client
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock of evidence times (tests); nil means time.Now.
	Now func() time.Time
}

// Validate checks the configuration; errors are *fielderr.Error naming the
// Config field.
func (c Config) Validate() error {
	if len(c.PrivateKeys) == 0 {
		return fielderr.New("Config.PrivateKeys", errors.New("a mirror private key is required"))
	}
	if _, _, err := newCosigners(c.PrivateKeys); err != nil {
		return fielderr.New("Config.PrivateKeys", err)
	}
	switch aws := c.AWS.FirstSet(); {
	case aws != "" && c.Dir != "":
		return fielderr.Errorf(aws, "the mirror stores either in Config.Dir (posix) or on mysql+s3, not both")
	case aws != "":
		if err := c.AWS.Validate(); err != nil {
			return err
		}
	case c.Dir == "":
		return fielderr.New("Config.Dir", errors.New("a storage directory (or Config.AWS) is required"))
	}
	seen := map[string]bool{}
	for i, l := range c.Logs {
		switch {
		case l.Origin == "":
			return fielderr.Errorf("Config.Logs", "log %d has no origin", i+1)
		case l.Verifier == nil:
			return fielderr.Errorf("Config.Logs", "log %q has no verifier", l.Origin)
		case seen[l.Origin]:
			return fielderr.Errorf("Config.Logs", "origin %q is listed twice", l.Origin)
		}
		seen[l.Origin] = true
	}
	for origin, sd := range c.Seeds {
		switch {
		case !seen[origin]:
			return fielderr.Errorf("Config.Seeds", "origin %q is not in Config.Logs", origin)
		case sd.MinimumIndex > 0 && sd.URL == "":
			return fielderr.Errorf("Config.Seeds", "origin %q starts at minimum index %d but has no URL to read the tree left of it from", origin, sd.MinimumIndex)
		}
	}
	return nil
}

// OriginID is the path element under which a log is served: the lowercase
// hex SHA-256 of its origin (tlog-mirror).
func OriginID(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(h[:])
}

// Mirror is the tlog-mirror state machine.
type Mirror struct {
	cosigners []note.Signer
	verifiers []note.Verifier
	witnesses []note.Verifier
	storage   storage
	logger    *slog.Logger
	now       func() time.Time
	metrics   *metrics

	// maxExcess bounds re-sent entries per request (DefaultMaxExcessEntries).
	maxExcess uint64

	// stop ends the integration goroutines; wg waits for them (Close).
	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	mu   sync.RWMutex
	logs map[string]*logMirror // by origin; guarded by mu
	byID map[string]*logMirror // by OriginID; guarded by mu
}

// New opens (or creates) the storage of every listed log and checks it:
// stored checkpoints must verify with the log's key, or New fails.
func New(ctx context.Context, cfg Config) (*Mirror, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	signers, verifiers, _ := newCosigners(cfg.PrivateKeys)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	}
	var st storage = dirStorage{Dir: cfg.Dir}
	if cfg.Dir == "" {
		s, err := openMySQLS3(ctx, cfg.AWS)
		if err != nil {
			return nil, err
		}
		st = s
	} else if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fielderr.Errorf("Config.Dir", "creating %s: %w", cfg.Dir, err)
	}
	m := &Mirror{
		cosigners: signers,
		verifiers: verifiers,
		witnesses: cfg.Witnesses,
		storage:   st,
		logger:    cfg.Logger,
		now:       cfg.Now,
		metrics:   newMetrics(),
		maxExcess: DefaultMaxExcessEntries,
		logs:      map[string]*logMirror{},
		byID:      map[string]*logMirror{},
	}
	for _, l := range cfg.Logs {
		lm, err := m.open(ctx, l, cfg.Seeds[l.Origin], cfg.HTTPClient)
		if err != nil {
			_ = st.Close()
			return nil, err
		}
		m.logs[l.Origin] = lm
		m.byID[lm.id] = lm
	}
	ictx, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stop = stop
	for _, lm := range m.logs {
		m.wg.Go(func() {
			if lm.seed(ictx, m.logger) {
				lm.integrate(ictx, m.logger)
			}
		})
	}
	// The integration also ends with ctx (Close waits for it either way).
	m.wg.Go(func() {
		select {
		case <-ctx.Done():
			stop()
		case <-ictx.Done():
		}
	})
	return m, nil
}

// Close stops the mirror's background integration and waits for it. The
// HTTP handler must no longer be serving.
func (m *Mirror) Close() {
	m.stop()
	m.wg.Wait()
	m.closeOnce.Do(func() {
		if err := m.storage.Close(); err != nil {
			m.logger.Warn("closing the mirror storage", slog.Any("error", err))
		}
	})
}

// Name is the name of the mirror's first cosigner key.
func (m *Mirror) Name() string { return m.cosigners[0].Name() }

// Verifiers are the mirror's cosignature verifiers.
func (m *Mirror) Verifiers() []note.Verifier { return m.verifiers }

func (m *Mirror) lookup(origin string) (*logMirror, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	lm, ok := m.logs[origin]
	return lm, ok
}

func (m *Mirror) lookupID(id string) (*logMirror, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	lm, ok := m.byID[id]
	return lm, ok
}

// pendingCheckpoint is a checkpoint the log signed that the mirror accepted
// as pending: its text, verified size and root, and the note as received
// (the log's signatures kept).
type pendingCheckpoint struct {
	Size uint64
	Root [32]byte
	Text string
	Note []byte
}

// openNote verifies a checkpoint note with the log's key and parses it.
func (lm *logMirror) openNote(msg []byte) (pendingCheckpoint, error) {
	n, err := note.Open(msg, note.VerifierList(lm.log.Verifier))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return pendingCheckpoint{}, fmt.Errorf("%w: no signature by %s", ErrBadSignature, lm.log.Verifier.Name())
		case errors.As(err, &invalid):
			return pendingCheckpoint{}, fmt.Errorf("%w: the signature by %s does not verify", ErrBadSignature, lm.log.Verifier.Name())
		default:
			return pendingCheckpoint{}, fmt.Errorf("%w: checkpoint note: %v", ErrMalformed, err)
		}
	}
	c, err := checkpoint.Parse([]byte(n.Text))
	if err != nil {
		return pendingCheckpoint{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if c.Origin != lm.log.Origin {
		return pendingCheckpoint{}, fmt.Errorf("%w: checkpoint origin %q is not %q", ErrMalformed, c.Origin, lm.log.Origin)
	}
	// Keep the log's signatures and the cosignatures that verify with a
	// known witness key; drop the rest (Config.Witnesses).
	var kept bytes.Buffer
	kept.WriteString(n.Text + "\n")
	for _, s := range n.Sigs {
		fmt.Fprintf(&kept, "— %s %s\n", s.Name, s.Base64)
	}
	for _, s := range n.UnverifiedSigs {
		if lm.relays(n.Text, s) {
			fmt.Fprintf(&kept, "— %s %s\n", s.Name, s.Base64)
		}
	}
	return pendingCheckpoint{Size: c.Size, Root: c.Root, Text: n.Text, Note: kept.Bytes()}, nil
}

// relays reports whether a signature line on a checkpoint is one the mirror
// keeps: a cosignature by a known witness key that verifies. Lines by the
// mirror's own keys are never kept (it signs only what it stored).
func (lm *logMirror) relays(text string, s note.Signature) bool {
	if lm.ownKey(s) {
		return false
	}
	for _, v := range lm.witnesses {
		if v.Name() == s.Name && v.KeyHash() == s.Hash {
			// Verified as a note of its own, exactly as a client will.
			one := fmt.Sprintf("%s\n— %s %s\n", text, s.Name, s.Base64)
			if _, err := note.Open([]byte(one), note.VerifierList(v)); err == nil {
				return true
			}
			lm.dropped.Inc()
			return false
		}
	}
	lm.dropped.Inc()
	return false
}

// AddCheckpoint implements tlog-mirror add-checkpoint: tlog-witness
// semantics applied to the pending checkpoint, which is stored durably before
// the answer. The mirror key does not sign here; the answer body is empty.
func (m *Mirror) AddCheckpoint(ctx context.Context, r addcheckpoint.Request) error {
	line, _, _ := bytes.Cut(r.Checkpoint, []byte("\n"))
	lm, ok := m.lookup(string(line))
	if !ok {
		return fmt.Errorf("%w: %q is not in this mirror's log list", ErrUnknownOrigin, truncate(string(line)))
	}
	c, err := lm.openNote(r.Checkpoint)
	if err != nil {
		return err
	}
	if r.Old > c.Size {
		return fmt.Errorf("%w: old %d > size %d", ErrOldTooLarge, r.Old, c.Size)
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	cur := lm.pending
	if r.Old != cur.Size {
		return ConflictError{Size: cur.Size}
	}
	if c.Size == 0 && c.Root != checkpoint.EmptyRoot {
		return fmt.Errorf("%w: a size-0 checkpoint must have the empty-tree root", ErrInconsistent)
	}
	if r.Old == 0 && len(r.Proof) > 0 {
		return fmt.Errorf("%w: a consistency proof from size 0 must be empty", ErrInconsistent)
	}
	switch {
	case cur.Note == nil:
	case r.Old == c.Size:
		if c.Root != cur.Root {
			lm.keepEvidence(m, cur, r, "same size, different root")
			return fmt.Errorf("%w: size %d is pending with another root", ErrInconsistent, c.Size)
		}
		if len(r.Proof) > 0 {
			return fmt.Errorf("%w: a consistency proof between equal sizes must be empty", ErrInconsistent)
		}
		if len(c.Note) <= len(cur.Note) {
			return nil
		}
		// The same checkpoint with more signature lines (the log's
		// published one, witness cosignatures added): keep that one.
	case r.Old > 0:
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, r.Old, c.Size, r.Proof, cur.Root[:], c.Root[:]); err != nil {
			lm.keepEvidence(m, cur, r, "consistency proof does not verify: "+err.Error())
			return fmt.Errorf("%w: consistency proof %d → %d does not verify", ErrInconsistent, r.Old, c.Size)
		}
	}
	if err := lm.savePending(c); err != nil {
		return fmt.Errorf("persisting the pending checkpoint of %q: %w", lm.log.Origin, err)
	}
	m.metrics.pendingSize.WithLabelValues(lm.log.Origin).Set(float64(c.Size))
	return nil
}

// cosign returns the mirror's cosignature lines over a checkpoint text.
func (m *Mirror) cosign(text string) ([]byte, error) {
	signed, err := note.Sign(&note.Note{Text: text}, m.cosigners...)
	if err != nil {
		return nil, fmt.Errorf("cosigning: %w", err)
	}
	return signed[len(text)+1:], nil
}

// Checkpoint returns the mirror checkpoint of a log (the log's signature
// and the mirror's cosignatures), or ok=false before the first.
func (m *Mirror) Checkpoint(origin string) ([]byte, bool) {
	lm, ok := m.lookup(origin)
	if !ok {
		return nil, false
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return lm.mirrorNote, lm.mirrorNote != nil
}

// Evidence is a refused inconsistent checkpoint, kept as proof that the log
// forked (or someone replayed a forged proof).
type Evidence struct {
	Time      time.Time `json:"time"`
	Origin    string    `json:"origin"`
	Reason    string    `json:"reason"`
	Pending   string    `json:"pending"`
	Submitted string    `json:"submitted"`
	Old       uint64    `json:"old"`
	Proof     []string  `json:"proof"`
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// cleanOrigin is the origin as it appears in log lines.
func cleanOrigin(s string) string { return strings.ToValidUTF8(truncate(s), "?") }
