package log

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/receipt"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/ui"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api/layout"
)

// The explorer (package ui) is mounted at /ui/: its embedded assets, and the
// small JSON API below that the page reads. Status is public like the
// checkpoint; records are served like entry bundles (public unless
// Config.ReadAccess is authenticated), sealed ones decrypted only for the
// read role, like GET /record/N.

// Bounds of GET /ui/api/records.
const (
	explorerDefaultRecords = 20
	explorerMaxRecords     = 100
)

// explorer is what the log keeps for its explorer page.
type explorer struct {
	assets  *ui.Handler
	history *ui.History
	// policyText is the policy the page trusts by default: this log's key
	// and its witness policy; policy is it parsed.
	policyText string
	policy     *policy.Policy

	mu sync.Mutex // guards the two fields below, set once during New
	// refresher knows each witness's last cosigned or reported size; nil
	// without a witness policy.
	refresher *witnessRefresher
	// mirrors are the pushed mirrors (Config.Mirrors) and what each acknowledged.
	mirrors []*mirrorAck
}

// mirrorAck is the size a pushed mirror last acknowledged.
type mirrorAck struct {
	url   string
	size  atomic.Uint64
	known atomic.Bool
}

func (a *mirrorAck) set(size uint64) {
	a.size.Store(size)
	a.known.Store(true)
}

func newExplorer(cfg Config) (*explorer, error) {
	text, p, err := trustedPolicy(cfg)
	if err != nil {
		return nil, err
	}
	return &explorer{
		assets:     ui.NewHandler(ui.Options{IndexURL: cfg.IndexURL}),
		history:    ui.NewHistory(),
		policyText: text,
		policy:     p,
	}, nil
}

func (e *explorer) setRefresher(r *witnessRefresher) {
	e.mu.Lock()
	e.refresher = r
	e.mu.Unlock()
}

func (e *explorer) addMirror(url string) *mirrorAck {
	a := &mirrorAck{url: url}
	e.mu.Lock()
	e.mirrors = append(e.mirrors, a)
	e.mu.Unlock()
	return a
}

// trustedPolicy is the log's witness policy with a line for the log's own
// key when it has none (tlog-policy: log <vkey> [<url>]); "quorum none"
// without a witness policy.
func trustedPolicy(cfg Config) (string, *policy.Policy, error) {
	vkey, err := logVKey(cfg.PrivateKey)
	if err != nil {
		return "", nil, err
	}
	text := string(cfg.WitnessPolicy)
	if len(strings.TrimSpace(text)) == 0 {
		text = "quorum none\n"
	}
	if p, err := policy.Parse([]byte(text)); err != nil || !hasLog(p, cfg.Origin) {
		text = "log " + vkey + "\n" + text
	}
	p, err := policy.Parse([]byte(text))
	if err != nil {
		return "", nil, fmt.Errorf("the explorer's policy: %w", err)
	}
	return text, p, nil
}

func hasLog(p *policy.Policy, origin string) bool {
	_, ok := p.LogFor(origin)
	return ok
}

// logVKey derives the signed-note verifier key from the log's private key
// (PRIVATE+KEY+<name>+<hash>+<base64(0x01‖seed)>): the same name and key
// hash, the public key in place of the seed.
func logVKey(skey string) (string, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(skey), "PRIVATE+KEY+")
	f := strings.SplitN(rest, "+", 3)
	if !ok || len(f) != 3 {
		return "", fmt.Errorf("Config.PrivateKey: not a signed-note private key")
	}
	raw, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", fmt.Errorf("Config.PrivateKey: not an Ed25519 signed-note private key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return f[0] + "+" + f[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, pub...)), nil
}

// mountExplorer adds the explorer's routes to the log's HTTP mux.
func (l *Log) mountExplorer(mux *http.ServeMux) {
	if l.cfg.DisableUI {
		return
	}
	mux.Handle("GET "+ui.Prefix, l.explorer.assets)
	mux.Handle("GET /ui", http.RedirectHandler(ui.Prefix, http.StatusMovedPermanently))
	mux.HandleFunc("GET /ui/api/status", l.explorerAPI(l.handleUIStatus))
	mux.HandleFunc("GET /ui/api/records", l.explorerAPI(l.handleUIRecords))
	mux.HandleFunc("GET /ui/api/record/{index}", l.explorerAPI(l.handleUIRecord))
}

// explorerAPI sets the explorer's security headers and no-store on an API answer.
func (l *Log) explorerAPI(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		l.explorer.assets.SetSecurityHeaders(w)
		w.Header().Set("Cache-Control", "no-store")
		h(w, r)
	}
}

func (l *Log) handleUIStatus(w http.ResponseWriter, r *http.Request) {
	cp, err := l.checkpoint(r.Context())
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	size, err := l.publishedSize(cp)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	e := l.explorer
	s := ui.Status{
		Origin:               l.origin,
		TreeSize:             size,
		Checkpoint:           string(cp),
		CheckpointAgeSeconds: e.history.Age(time.Now()).Seconds(),
		MinimumIndex:         l.MinimumIndex(),
		Retention:            len(l.cfg.Retention) > 0,
		Quorum:               e.policy.Quorum,
		Policy:               e.policyText,
		ReadAccess:           l.cfg.ReadAccess,
		IndexURL:             l.cfg.IndexURL,
		History:              e.history.Minutes(),
		Witnesses:            []ui.Cosigner{},
		Mirrors:              []ui.Cosigner{},
	}
	cosigned := map[string]time.Time{}
	if v, err := e.policy.Verify(cp); err == nil {
		cosigned = v.Cosigned
	}
	e.mu.Lock()
	refresher, mirrors := e.refresher, e.mirrors
	e.mu.Unlock()
	for _, wt := range e.policy.Witnesses {
		c := ui.Cosigner{Name: wt.Name, URL: wt.URL}
		if refresher != nil {
			c.Size = refresher.size(wt.Name)
			c.Known = c.Size > 0
		}
		if at, ok := cosigned[wt.Name]; ok {
			c.Size, c.Known, c.CosignedLatest, c.CosignedAt = size, true, true, at.UTC().Format(time.RFC3339)
		}
		c.Behind = size - min(c.Size, size)
		s.Witnesses = append(s.Witnesses, c)
	}
	for _, m := range mirrors {
		c := ui.Cosigner{Name: m.url, URL: m.url, Known: m.known.Load(), Size: m.size.Load()}
		c.Behind = size - min(c.Size, size)
		s.Mirrors = append(s.Mirrors, c)
	}
	writeJSON(w, s)
}

// explorerAccess says what the caller may see: record contents when they
// are public or it has the read role (as for entry bundles), and sealed
// records decrypted only with the read role (as for GET /record/N).
func (l *Log) explorerAccess(r *http.Request) (decrypt bool, err error) {
	p, perr := l.guard.fromHTTP(r)
	if err := l.guard.canReadContents(p, perr); err != nil {
		return false, err
	}
	return l.guard.canDecrypt(p, perr) == nil, nil
}

// stateSealed is the explorer's state of a record naming data subjects
// shown to a caller without the read role.
const stateSealed = "sealed"

func (l *Log) handleUIRecords(w http.ResponseWriter, r *http.Request) {
	decrypt, err := l.explorerAccess(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	_, size, err := l.latest(r.Context())
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	before, limit := size, uint64(explorerDefaultRecords)
	if v := r.URL.Query().Get("before"); v != "" {
		if before, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeHTTPError(w, fmt.Errorf("%w: before=%q is not an entry index", ErrInvalidRequest, v))
			return
		}
		before = min(before, size)
	}
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.ParseUint(v, 10, 64); err != nil || limit < 1 || limit > explorerMaxRecords {
			writeHTTPError(w, fmt.Errorf("%w: limit=%q: want 1 to %d", ErrInvalidRequest, v, explorerMaxRecords))
			return
		}
	}
	start := before - min(before, limit)
	minIndex := l.MinimumIndex()
	list := ui.RecordList{TreeSize: size, MinimumIndex: minIndex, Records: []ui.RecordSummary{}}
	from := max(start, min(minIndex, before))
	for i := from; i < before; {
		leaves, _, err := l.entries(r.Context(), i, before-i)
		if errors.Is(err, ErrPruned) {
			// Pruned meanwhile: show the rest of its bundle as pruned.
			from = min(before, (bundleOf(i)+1)*layout.EntryBundleWidth)
			i = from
			continue
		}
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		for _, leaf := range leaves {
			s, _ := l.summarize(r.Context(), i, leaf, decrypt)
			list.Records = append(list.Records, s)
			i++
		}
	}
	for i := start; i < from; i++ {
		list.Records = append(list.Records, ui.RecordSummary{Index: i, State: "pruned", Detail: fmt.Sprintf("below the minimum index %d (retention)", minIndex)})
	}
	// Newest first.
	slices.SortFunc(list.Records, func(a, b ui.RecordSummary) int { return cmp.Compare(b.Index, a.Index) })
	writeJSON(w, list)
}

// summarize decodes a leaf for the explorer; rec is the readable envelope
// (zero when the record is erased, sealed without a key, or malformed).
func (l *Log) summarize(ctx context.Context, index uint64, leaf []byte, decrypt bool) (ui.RecordSummary, record.Decoded) {
	if !decrypt && record.LeafVersion(leaf) == record.SealedVersion {
		return ui.RecordSummary{Index: index, State: stateSealed, Detail: "it names a data subject: reading it needs the read role"}, record.Decoded{Index: index}
	}
	d, err := l.decode(ctx, index, leaf)
	if err != nil {
		return ui.RecordSummary{Index: index, State: record.StateMalformed, Detail: err.Error()}, d
	}
	s := ui.RecordSummary{Index: index, State: d.State, Detail: d.Detail}
	if d.Record != nil {
		if rec, err := record.Decode(d.Record); err == nil {
			s.Submitter, s.Timestamp, s.ContentType, s.Bytes = rec.Submitter, rec.Timestamp, rec.ContentType, len(rec.Payload)
		}
	}
	return s, d
}

func (l *Log) handleUIRecord(w http.ResponseWriter, r *http.Request) {
	decrypt, err := l.explorerAccess(r)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	index, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		writeHTTPError(w, fmt.Errorf("%w: %q is not an entry index", ErrInvalidRequest, r.PathValue("index")))
		return
	}
	rc, leaf, err := l.Receipt(r.Context(), index)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	parsed, err := receipt.Parse(rc)
	if err != nil {
		writeHTTPError(w, fmt.Errorf("%w: the receipt built for %d does not parse: %v", ErrUnavailable, index, err))
		return
	}
	size, err := l.publishedSize(parsed.Checkpoint)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	s, d := l.summarize(r.Context(), index, leaf, decrypt)
	hash := rfc6962.DefaultHasher.HashLeaf(leaf)
	v := ui.RecordView{RecordSummary: s, SubjectHashes: d.SubjectHashes, ErasedAt: d.ErasedAtUnixMillis,
		Leaf: leaf, LeafHash: hex.EncodeToString(hash), TreeSize: size, Proof: parsed.Proof, Receipt: string(rc)}
	if d.Record != nil {
		if rec, err := record.Decode(d.Record); err == nil {
			v.IdempotencyKey, v.Payload = rec.IdempotencyKey, rec.Payload
		}
	}
	writeJSON(w, v)
}
