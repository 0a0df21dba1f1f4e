package log

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/cairnlog/cairn/format/batch"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/cairnlog/cairn/log/access"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"github.com/transparency-dev/tessera"
	"golang.org/x/time/rate"
)

// Defaults of the batch limits.
const (
	// DefaultMaxBatchRecords is the most records one AppendBatch call or
	// batched POST /add may carry.
	DefaultMaxBatchRecords = 4096
	// DefaultMaxBatchBytes is the largest batch message or body. It is
	// also the gRPC server's receive limit, so a single Append over
	// MaxRecordBytes is refused by the log's own check.
	DefaultMaxBatchBytes = 8 << 20
)

// AppendBatch durably sequences subs in one call and returns their
// outcomes in the same order.
//
// The batch is validated as a whole before anything is enqueued: an invalid
// record fails the call with an error naming its position ("record 3: …")
// and nothing is appended. Each record is then appended like a single Append
// (the same envelope, Tessera's dedup per record), all enqueued before any
// is awaited, so the batch shares Tessera's sequencing batches instead of
// paying one round trip per record. If storage fails or pushes back part way,
// the call fails naming the first record that was not sequenced; records
// before it may be in the log, and a retry with the same idempotency keys
// resolves them to the same indices.
func (l *Log) AppendBatch(ctx context.Context, subs []Submission, submitter string) ([]Appended, error) {
	if l.draining.Load() {
		return nil, ErrShuttingDown
	}
	leaves, err := l.envelopeBatch(ctx, subs, submitter, time.Now())
	if err != nil {
		l.metrics.rejected.Inc()
		return nil, err
	}
	start := time.Now()
	futures := make([]tessera.IndexFuture, len(leaves))
	for i, leaf := range leaves {
		futures[i] = l.appender.Add(withFresh(ctx, subs[i]), tessera.NewEntry(leaf))
	}
	out := make([]Appended, len(leaves))
	var firstErr error
	for i, f := range futures {
		// Every future is awaited, also after a failure, so that no
		// enqueued record is left without an owner.
		idx, err := f()
		if err != nil {
			l.metrics.appendErrors.Inc()
			if firstErr == nil {
				firstErr = fmt.Errorf("record %d of %d: %w", i, len(futures), classifyAppendError(err))
			}
			continue
		}
		l.metrics.observeAppend(idx.Index, idx.IsDup, start)
		if !idx.IsDup {
			l.watcher.sample(idx.Index, start)
		}
		out[i] = Appended{Index: idx.Index, Duplicate: idx.IsDup, Leaf: leaves[i]}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// envelopeBatch checks the batch's size and envelopes every record, or
// returns the first record's error, naming its position.
func (l *Log) envelopeBatch(ctx context.Context, subs []Submission, submitter string, now time.Time) ([][]byte, error) {
	if len(subs) == 0 {
		return nil, fmt.Errorf("%w: the batch has no records", ErrInvalidRecord)
	}
	if len(subs) > l.cfg.MaxBatchRecords {
		return nil, fmt.Errorf("%w: the batch has %d records, over this log's limit of %d", ErrInvalidRecord, len(subs), l.cfg.MaxBatchRecords)
	}
	leaves := make([][]byte, len(subs))
	for i, s := range subs {
		leaf, err := l.envelope(ctx, s, submitter, now)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		leaves[i] = leaf
	}
	return leaves, nil
}

// batchReceipts waits for a published checkpoint covering every record in
// as whose want is set and returns their receipts (nil where not wanted).
func (l *Log) batchReceipts(ctx context.Context, as []Appended, want []bool) ([][]byte, error) {
	var last uint64
	any := false
	for i, a := range as {
		if want[i] {
			last, any = max(last, a.Index), true
		}
	}
	if !any {
		return nil, nil
	}
	_, cp, err := l.awaiter.Await(ctx, func() (tessera.Index, error) { return tessera.Index{Index: last}, nil })
	if err != nil {
		return nil, fmt.Errorf("%w: waiting for a checkpoint covering index %d: %v", ErrUnavailable, last, err)
	}
	rcs := make([][]byte, len(as))
	for i, a := range as {
		if !want[i] {
			continue
		}
		if rcs[i], err = l.receiptAt(ctx, a.Index, cp); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
	}
	return rcs, nil
}

// writerN authenticates a gRPC caller for n records: the append role, and n
// records from its rate.
func (s *grpcServer) writerN(ctx context.Context, n int) (string, error) {
	p, err := s.l.guard.fromGRPC(ctx)
	if err != nil {
		return "", err
	}
	return p.name, s.l.guard.authorizeAppendN(p, n)
}

// authorizeAppendN checks the append role and takes n records from p's rate.
func (g *guard) authorizeAppendN(p principal, n int) error {
	if err := g.authorize(p, access.RoleAppend); err != nil {
		return err
	}
	if g.limit <= 0 {
		return nil
	}
	g.limMu.Lock()
	lim, ok := g.limiters[p.name]
	if !ok {
		lim = rate.NewLimiter(g.limit, g.burst)
		g.limiters[p.name] = lim
	}
	g.limMu.Unlock()
	if !lim.AllowN(time.Now(), n) {
		return fmt.Errorf("%w: %q is over its limit of %g records/s (burst %d) with a batch of %d", ErrRateLimited, p.name, float64(g.limit), g.burst, n)
	}
	return nil
}

// AppendBatch is the gRPC form of Log.AppendBatch.
func (s *grpcServer) AppendBatch(ctx context.Context, r *cairnv1.AppendBatchRequest) (*cairnv1.AppendBatchResponse, error) {
	recs := r.GetRecords()
	s.l.metrics.requests.WithLabelValues("batch").Add(float64(len(recs)))
	who, err := s.writerN(ctx, max(len(recs), 1))
	if err != nil {
		s.l.metrics.rejected.Inc()
		return nil, grpcStatus(err)
	}
	subs := make([]Submission, len(recs))
	want := make([]bool, len(recs))
	for i, rec := range recs {
		subs[i] = submissionOf(rec)
		want[i] = rec.GetWaitForReceipt()
	}
	ctx = withRetry(ctx, nil)
	as, err := s.l.AppendBatch(ctx, subs, who)
	if err != nil {
		return nil, grpcStatus(err)
	}
	rcs, err := s.l.batchReceipts(ctx, as, want)
	if err != nil {
		return nil, grpcStatus(err)
	}
	resp := &cairnv1.AppendBatchResponse{Results: make([]*cairnv1.AppendResponse, len(as))}
	for i, a := range as {
		res := &cairnv1.AppendResponse{Id: recs[i].GetId(), Index: a.Index, Duplicate: a.Duplicate, Leaf: a.Leaf}
		if rcs != nil {
			res.Receipt = rcs[i]
		}
		resp.Results[i] = res
	}
	return resp, nil
}

// handleAddBatch is POST /add with a batch body (Content-Type
// application/vnd.cairn.batch, format/batch): the answer is one decimal
// index per record, one per line, in the order of the body.
func (l *Log) handleAddBatch(w http.ResponseWriter, r *http.Request) {
	p, err := l.guard.fromHTTP(r)
	if err != nil {
		l.metrics.rejected.Inc()
		writeHTTPError(w, err)
		return
	}
	subs, err := l.batchFromHTTP(w, r)
	if err != nil {
		l.metrics.rejected.Inc()
		writeHTTPError(w, err)
		return
	}
	l.metrics.requests.WithLabelValues("http-batch").Add(float64(len(subs)))
	if err := l.guard.authorizeAppendN(p, max(len(subs), 1)); err != nil {
		l.metrics.rejected.Inc()
		writeHTTPError(w, err)
		return
	}
	as, err := l.AppendBatch(withRetry(r.Context(), r), subs, p.name)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	body := make([]byte, 0, len(as)*8)
	for _, a := range as {
		body = strconv.AppendUint(body, a.Index, 10)
		body = append(body, '\n')
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(body)
}

// batchFromHTTP reads a batch body of at most MaxBatchBytes.
func (l *Log) batchFromHTTP(w http.ResponseWriter, r *http.Request) ([]Submission, error) {
	if r.ContentLength > int64(l.cfg.MaxBatchBytes) {
		return nil, batchTooLarge(r.ContentLength, l.cfg.MaxBatchBytes)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(l.cfg.MaxBatchBytes)))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, batchTooLarge(-1, l.cfg.MaxBatchBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading the request body: %v", ErrInvalidRecord, err)
	}
	recs, err := batch.Parse(body, l.cfg.MaxBatchRecords, l.cfg.MaxRecordBytes)
	var tl *batch.TooLargeError
	switch {
	case errors.As(err, &tl):
		return nil, fmt.Errorf("record %d: %w", tl.Record, tooLarge(int64(tl.Bytes), l.cfg.MaxRecordBytes))
	case errors.Is(err, batch.ErrMalformed) && len(body) > 0:
		return nil, fmt.Errorf("%w: %s body: %v", ErrInvalidRecord, batch.ContentType, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	subs := make([]Submission, len(recs))
	for i, rec := range recs {
		subs[i] = Submission{Payload: rec.Payload, ContentType: rec.ContentType, IdempotencyKey: rec.IdempotencyKey, Timestamp: rec.Timestamp}
	}
	return subs, nil
}

// batchTooLarge is the error for a batch body of n bytes (n < 0: unknown).
func batchTooLarge(n int64, limit int) error {
	if n < 0 {
		return fmt.Errorf("%w: the batch is over this log's limit of %d bytes", ErrRecordTooLarge, limit)
	}
	return fmt.Errorf("%w: the batch is %d bytes, over this log's limit of %d bytes", ErrRecordTooLarge, n, limit)
}

// DefaultDedupCacheEntries sizes Tessera's in-memory dedup window: half of
// Tessera's recommended 262,144, ~70 MB instead of the ~145 MB a heap profile
// of a 6k records/s run found (#19). The persistent antispam index may then
// trail the tree by 65,536 records (seconds at the rates a frontend sustains)
// before appends get pushback.
const DefaultDedupCacheEntries = 128 << 10

// validateBatch checks the batch and dedup limits.
func (c Config) validateBatch() error {
	if c.MaxBatchRecords < 1 {
		return fielderr.Errorf("Config.MaxBatchRecords", "%d must be at least 1", c.MaxBatchRecords)
	}
	if c.MaxBatchBytes < c.MaxRecordBytes+appendRequestOverhead {
		return fielderr.Errorf("Config.MaxBatchBytes", "%d is below one record (Config.MaxRecordBytes %d plus %d bytes of fields)", c.MaxBatchBytes, c.MaxRecordBytes, appendRequestOverhead)
	}
	if c.DedupCacheEntries < 2 {
		return fielderr.Errorf("Config.DedupCacheEntries", "%d must be at least 2", c.DedupCacheEntries)
	}
	if c.AntispamMemoryMiB < 16 {
		return fielderr.Errorf("Config.AntispamMemoryMiB", "%d must be at least 16", c.AntispamMemoryMiB)
	}
	return nil
}
