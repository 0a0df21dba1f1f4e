package log

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/fielderr"
	"golang.org/x/mod/sumdb/note"
)

// witnessRefresher keeps every witness of the policy at the published
// checkpoint. Tessera's witness gateway stops waiting once the quorum has
// cosigned and cancels the other requests, so a witness slower than the
// quorum never gets its answer (nor the size in its 409) back to the log: the
// log keeps sending it a stale old size and it falls behind for good
// (docs/witness.md). After each publication this sends the published
// checkpoint to every witness that did not cosign it, as tlog-witness
// prescribes: the witness's size, a consistency proof from there, the
// checkpoint; a 409 names the witness's size and the request is made again
// from it. The cosignatures it gets back are not published: the checkpoint
// already carries its quorum; this only keeps witnesses current.
type witnessRefresher struct {
	l         *Log
	witnesses []policy.Witness
	client    *http.Client
	logger    *slog.Logger

	mu    sync.Mutex
	sizes map[string]uint64 // witness name → the size it last reported or cosigned
	busy  map[string]bool   // a refresh of this witness is under way
	wg    sync.WaitGroup
}

func newWitnessRefresher(l *Log, rawPolicy []byte, client *http.Client) (*witnessRefresher, error) {
	p, err := policy.Parse(rawPolicy)
	if err != nil {
		return nil, fielderr.New("Config.WitnessPolicy", err)
	}
	return &witnessRefresher{l: l, witnesses: p.Witnesses, client: client, logger: l.logger,
		sizes: map[string]uint64{}, busy: map[string]bool{}}, nil
}

// run checks the published checkpoint every checkpoint interval until ctx
// ends, then waits for the refreshes it started. A witness that is down is
// tried again at every check, one request at a time.
func (r *witnessRefresher) run(ctx context.Context) {
	defer r.wg.Wait()
	every(ctx, r.l.cfg.CheckpointInterval, func() {
		cp, err := r.l.reader.ReadCheckpoint(ctx)
		if err != nil {
			return
		}
		size, err := r.l.publishedSize(cp)
		if err != nil {
			return
		}
		for _, w := range r.witnesses {
			if _, err := note.Open(cp, note.VerifierList(w.Verifier)); err == nil {
				r.report(w.Name, size)
				continue
			}
			// Known to be current, or being brought there: nothing to do.
			if r.size(w.Name) >= size || !r.claim(w.Name) {
				continue
			}
			r.wg.Go(func() {
				defer r.release(w.Name)
				r.refresh(ctx, w, cp, size)
			})
		}
	})
}

func (r *witnessRefresher) claim(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy[name] {
		return false
	}
	r.busy[name] = true
	return true
}

func (r *witnessRefresher) release(name string) {
	r.mu.Lock()
	r.busy[name] = false
	r.mu.Unlock()
}

func (r *witnessRefresher) report(name string, size uint64) {
	r.mu.Lock()
	r.sizes[name] = size
	r.mu.Unlock()
}

func (r *witnessRefresher) size(name string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sizes[name]
}

// refresh brings one witness to the checkpoint cp of the given size.
func (r *witnessRefresher) refresh(ctx context.Context, w policy.Witness, cp []byte, size uint64) {
	ctx, cancel := context.WithTimeout(ctx, r.l.cfg.WitnessTimeout)
	defer cancel()
	endpoint, err := url.JoinPath(w.URL, "add-checkpoint")
	if err != nil {
		return
	}
	for range 2 { // at most one 409 correction
		old := r.size(w.Name)
		if old > size {
			return // it already has a newer checkpoint (from another frontend)
		}
		_, proof, err := r.l.consistencyProof(ctx, old, size)
		if err != nil {
			r.logger.Debug("witness refresh: consistency proof", slog.String("witness", w.Name), slog.Any("error", err))
			return
		}
		var body bytes.Buffer
		fmt.Fprintf(&body, "old %d\n", old)
		for _, h := range proof {
			body.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
		}
		body.WriteString("\n")
		body.Write(cp)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &body)
		if err != nil {
			return
		}
		resp, err := r.client.Do(req)
		if err != nil {
			r.logger.Debug("witness refresh", slog.String("witness", w.Name), slog.Any("error", err))
			return
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			r.report(w.Name, size)
			return
		case resp.StatusCode == http.StatusConflict && resp.Header.Get("Content-Type") == "text/x.tlog.size":
			// tlog-witness: the body is the size of its latest cosigned checkpoint.
			n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
			if err != nil || n > size {
				return
			}
			r.report(w.Name, n)
		default:
			r.logger.Debug("witness refresh refused", slog.String("witness", w.Name), slog.Int("status", resp.StatusCode), slog.String("body", strings.TrimSpace(string(b))))
			return
		}
	}
}
