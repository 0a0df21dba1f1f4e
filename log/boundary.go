package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/cairnlog/cairn/format/migration"
)

// A log whose storage was filled by cairn migrate starts with the source's
// raw leaves below the migration boundary (format/migration). The log
// serves the boundary document at /migration-boundary and appends it as a
// record of its own right after the cut-over, so the log's own history says
// where its Cairn records begin.

// BoundarySubmitter is the submitter of the boundary record.
const BoundarySubmitter = "cairn-migrate"

// boundaryRetry is how long the boundary append waits between tries while
// the log answers with pushback (its antispam index catching up on the
// migrated leaves).
const boundaryRetry = 500 * time.Millisecond

// loadBoundary reads the storage's migration boundary, if it has one.
func loadBoundary(ctx context.Context, d *driver) (*migration.Boundary, []byte, error) {
	if d.readObject == nil {
		return nil, nil, nil
	}
	raw, err := d.readObject(ctx, migration.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the migration boundary: %w", err)
	}
	b, err := migration.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("the storage's %s: %w", migration.Path, err)
	}
	return &b, raw, nil
}

// handleBoundary serves the migration boundary; 404 when the log was not migrated.
func (l *Log) handleBoundary(w http.ResponseWriter, _ *http.Request) {
	if l.boundary == nil {
		http.Error(w, "this log was not migrated: every leaf is a Cairn record\n", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", cacheCheckpoint)
	_, _ = w.Write(l.boundaryRaw)
}

// appendBoundary waits for the first checkpoint at the migrated size, then
// appends the boundary record (idempotently: a fixed key and
// no timestamp make every try, across restarts, the same leaf at the same
// index), retrying while the log pushes back, until ctx ends.
func (l *Log) appendBoundary(ctx context.Context) {
	if l.boundary == nil {
		return
	}
	// The first checkpoint covers exactly the migrated tree (the source's
	// last root); the boundary record comes after it.
	for {
		if cp, err := l.reader.ReadCheckpoint(ctx); err == nil {
			if size, err := l.publishedSize(cp); err == nil && size >= l.boundary.Size {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(publicationPollInterval):
		}
	}
	s := Submission{Payload: l.boundaryRaw, ContentType: migration.ContentType,
		IdempotencyKey: fmt.Sprintf("cairn-migration-boundary-%d", l.boundary.Size)}
	for {
		a, err := l.Append(ctx, s, BoundarySubmitter)
		if err == nil {
			l.logger.Info("migration boundary recorded", slog.Uint64("boundary", l.boundary.Size), slog.Uint64("index", a.Index), slog.Bool("already", a.Duplicate))
			return
		}
		if ctx.Err() != nil || l.draining.Load() {
			return
		}
		l.logger.Debug("migration boundary record: retrying", slog.Any("error", err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(boundaryRetry):
		}
	}
}
