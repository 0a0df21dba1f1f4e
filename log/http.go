package log

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairnlog/cairn/format/batch"
	"github.com/cairnlog/cairn/format/migration"
	"github.com/cairnlog/cairn/log/access"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/transparency-dev/tessera/api/layout"
)

// Cache-Control values of tlog-tiles: the checkpoint is mutable, tiles and
// bundles never change once written.
const (
	cacheCheckpoint = "no-cache"
	cacheImmutable  = "max-age=31536000, immutable"
)

// Headers with which POST /add carries the record fields besides the payload.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerTimestamp      = "Cairn-Timestamp" // Unix milliseconds
	// headerSubject names a data subject; repeat the header for several.
	headerSubject = "Cairn-Subject"
)

// httpHandler serves the tlog-tiles read path, POST /add, health and metrics.
func (l *Log) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add", l.handleAdd)
	mux.HandleFunc("POST /erase", l.handleErase)
	mux.HandleFunc("GET /record/{index}", l.handleRecord)
	mux.HandleFunc("GET /checkpoint", l.handleCheckpoint)
	mux.HandleFunc("GET /"+migration.Path, l.handleBoundary)
	mux.HandleFunc("GET /tile/entries/{path...}", l.handleEntryBundle)
	mux.HandleFunc("GET /tile/{level}/{path...}", l.handleTile)
	mux.HandleFunc("GET /minimum-index", l.handleMinimumIndex)
	mux.HandleFunc("GET /holds", l.handleHolds)
	mux.HandleFunc("POST /holds", l.handleAddHold)
	mux.HandleFunc("POST /holds/{id}/release", l.handleReleaseHold)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", l.handleReady)
	mux.Handle("GET /metrics", l.guard.adminOnly(promhttp.HandlerFor(l.metrics.registry, promhttp.HandlerOpts{})))
	l.mountExplorer(mux)
	return mux
}

// handleAdd is the write convention of Tessera's example servers and load
// generator: the body is the payload, the answer the decimal index.
func (l *Log) handleAdd(w http.ResponseWriter, r *http.Request) {
	if isBatch(r) {
		l.handleAddBatch(w, r)
		return
	}
	l.metrics.requests.WithLabelValues("http").Inc()
	who, err := l.httpWriter(r)
	if err != nil {
		l.metrics.rejected.Inc()
		writeHTTPError(w, err)
		return
	}
	sub, err := l.submissionFromHTTP(w, r)
	if err != nil {
		l.metrics.rejected.Inc()
		writeHTTPError(w, err)
		return
	}
	a, err := l.Append(withRetry(r.Context(), r), sub, who)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprintf(w, "%d\n", a.Index)
}

// isBatch reports whether a POST /add carries a batch body (format/batch).
func isBatch(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == batch.ContentType
}

// httpWriter authenticates an HTTP appender (see grpcServer.writer).
func (l *Log) httpWriter(r *http.Request) (string, error) {
	p, err := l.guard.fromHTTP(r)
	if err != nil {
		return "", err
	}
	if err := l.guard.authorize(p, access.RoleAppend); err != nil {
		return "", err
	}
	return p.name, l.guard.allow(p)
}

// submissionFromHTTP reads the record headers and a body bounded by
// --max-record-bytes: a body over it is refused (413) without being read past
// the limit, and one that declares a larger Content-Length without being read at all.
func (l *Log) submissionFromHTTP(w http.ResponseWriter, r *http.Request) (Submission, error) {
	var s Submission
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return s, fmt.Errorf("%w: Content-Type %q is not a media type", ErrInvalidRecord, ct)
		}
		if strings.HasPrefix(mt, "multipart/") {
			return s, fmt.Errorf("%w: Content-Type %s: POST /add takes the raw record payload, not a multipart form", errUnsupportedMediaType, mt)
		}
		s.ContentType = ct
	}
	s.IdempotencyKey = r.Header.Get(headerIdempotencyKey)
	s.Subjects = r.Header.Values(headerSubject)
	if ts := r.Header.Get(headerTimestamp); ts != "" {
		v, err := parseTimestamp(ts)
		if err != nil {
			return s, err
		}
		s.Timestamp = v
	}
	if r.ContentLength > int64(l.cfg.MaxRecordBytes) {
		return s, tooLarge(r.ContentLength, l.cfg.MaxRecordBytes)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(l.cfg.MaxRecordBytes)))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return s, tooLarge(-1, l.cfg.MaxRecordBytes)
	}
	if err != nil {
		return s, fmt.Errorf("%w: reading the request body: %v", ErrInvalidRecord, err)
	}
	s.Payload = body
	return s, nil
}

// parseTimestamp parses a Cairn-Timestamp header: decimal Unix milliseconds
// as a uint64, digits only (0, like an absent header, means not supplied).
// The range is checked by checkClockSkew, in integers.
func parseTimestamp(h string) (uint64, error) {
	v, err := strconv.ParseUint(h, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s header %q is not Unix milliseconds", ErrInvalidRecord, headerTimestamp, h)
	}
	return v, nil
}

func (l *Log) handleCheckpoint(w http.ResponseWriter, r *http.Request) {
	cp, err := l.checkpoint(r.Context())
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", cacheCheckpoint)
	_, _ = w.Write(cp)
}

func (l *Log) handleTile(w http.ResponseWriter, r *http.Request) {
	level, index, p, err := layout.ParseTileLevelIndexPartial(r.PathValue("level"), r.PathValue("path"))
	if err != nil {
		writeHTTPError(w, fmt.Errorf("%w: malformed tile path %q: %v", ErrInvalidRequest, r.URL.Path, err))
		return
	}
	if l.writeFile(w, r, layout.TilePath(level, index, p), false) {
		return
	}
	t, err := l.readTile(r.Context(), level, index, p)
	l.writeStatic(w, r, t, err, false)
}

func (l *Log) handleEntryBundle(w http.ResponseWriter, r *http.Request) {
	// Entry bundles hold record contents; hash tiles and checkpoints stay
	// public so that witnesses, monitors and auditors check consistency.
	if err := l.guard.canReadContents(l.guard.fromHTTP(r)); err != nil {
		writeHTTPError(w, err)
		return
	}
	index, p, err := layout.ParseTileIndexPartial(r.PathValue("path"))
	if err != nil {
		writeHTTPError(w, fmt.Errorf("%w: malformed entry bundle path %q: %v", ErrInvalidRequest, r.URL.Path, err))
		return
	}
	if err := l.retainer.checkServed(index); err != nil {
		writeHTTPError(w, err)
		return
	}
	if l.writeFile(w, r, layout.EntriesPath(index, p), true) {
		return
	}
	b, err := l.readBundle(r.Context(), index, p)
	l.writeStatic(w, r, b, err, true)
}

// writeFile answers with the stored tile or entry bundle at path straight
// from its file, as io.Copy to the connection does with sendfile: no read
// into the process, no copy, no buffer. It applies to POSIX storage
// (Config.Storage posix:DIR), whose files Tessera writes whole before
// renaming them into place and never rewrites, and to answers that are
// not gzipped (a bundle when the client does not accept gzip; a tile
// always). It reports whether it answered; when the file cannot be opened
// (a partial resource already replaced by its full one, another storage)
// the caller reads it as before, with its fallbacks and errors.
//
// Serving every tile and bundle through os.ReadFile and Write cost an
// audit replay's log a read syscall and a copy of every byte it sent,
// and the buffer's allocation and clearing (#19). The file is opened by
// its descriptor alone (log/static_linux.go), without os.Open's poller
// set-up.
func (l *Log) writeFile(w http.ResponseWriter, r *http.Request, path string, compress bool) bool {
	if l.static == nil || (compress && acceptsGzip(r)) {
		return false
	}
	f, err := l.static.open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	size := f.Size()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", cacheImmutable)
	if compress {
		h.Add("Vary", "Accept-Encoding")
	}
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	// The header is sent first, so that net/http hands the whole body to
	// sendfile rather than reading its first 512 bytes (for sniffing a
	// type already set); the limit spares sendfile its last call, the
	// one that finds the end of the file. A failed copy (the client went
	// away) leaves a short body, which the client sees against the
	// Content-Length.
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	_, _ = io.Copy(w, io.LimitReader(f, size))
	return true
}

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

// writeStatic answers with an immutable tile or bundle, gzipped when the
// client accepts it and compress is set.
func (l *Log) writeStatic(w http.ResponseWriter, r *http.Request, body []byte, err error, compress bool) {
	if errors.Is(err, os.ErrNotExist) {
		writeHTTPError(w, fmt.Errorf("%w: %s", ErrNotFound, r.URL.Path))
		return
	}
	if err != nil {
		writeHTTPError(w, fmt.Errorf("%w: reading %s: %v", ErrUnavailable, r.URL.Path, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", cacheImmutable)
	if !compress {
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
		return
	}
	h.Add("Vary", "Accept-Encoding")
	if !acceptsGzip(r) {
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
		return
	}
	h.Set("Content-Encoding", "gzip")
	gz := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(gz)
	gz.Reset(w)
	_, _ = gz.Write(body)
	_ = gz.Close()
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			return strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0"
		}
	}
	return false
}

// readyTimeout bounds the readiness probe's checks.
const readyTimeout = 5 * time.Second

func (l *Log) handleReady(w http.ResponseWriter, r *http.Request) {
	if l.draining.Load() {
		writeHTTPError(w, ErrShuttingDown)
		return
	}
	if err := l.guard.accessReady(); err != nil {
		writeHTTPError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	// Ready means both halves work: reads (the published checkpoint) and
	// writes (the sequencer's position: the database, with mysql+s3), so a
	// load balancer drains a frontend that lost either.
	if _, err := l.checkpoint(ctx); err != nil {
		writeHTTPError(w, fmt.Errorf("%w: not ready: %v", ErrUnavailable, err))
		return
	}
	if _, err := l.reader.NextIndex(ctx); err != nil {
		writeHTTPError(w, fmt.Errorf("%w: not ready: the sequencer does not answer: %v", ErrUnavailable, err))
		return
	}
	if l.barrier != nil && !l.barrier.Load() {
		writeHTTPError(w, fmt.Errorf("%w: not ready: the antispam index is catching up with what the log had integrated at start; appends get pushback until it has", ErrUnavailable))
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}
