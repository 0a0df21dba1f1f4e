package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/cairnlog/cairn/format/migration"
	"github.com/cairnlog/cairn/format/policy"
)

// MigrationBoundary fetches the log's migration boundary (format/migration)
// and verifies it against the verified checkpoint v: the boundary's root
// must be the root of v's tree at the boundary's size (a consistency proof
// from the log's tiles). Leaves below it are the source log's raw leaves,
// not Cairn records. A log that was not migrated answers 404: (nil, nil).
func (l *Log) MigrationBoundary(ctx context.Context, v *policy.Verified) (*migration.Boundary, error) {
	if l.sources != nil {
		// Read from several URLs: the first copy that answers. A mirror
		// serves no boundary (404), so the log is asked first.
		var errs []error
		for _, s := range l.sources.logs {
			b, err := s.MigrationBoundary(ctx, v)
			if err == nil {
				return b, nil
			}
			if errors.Is(err, ErrVerification) {
				return nil, err
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
	u := strings.TrimSuffix(l.URL, "/") + "/" + migration.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if l.token != "" {
		req.Header.Set("Authorization", "Bearer "+l.token)
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, migration.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", u, err)
	}
	b, err := migration.Parse(raw)
	if err != nil {
		return nil, verifyErr("%s: %v", u, err)
	}
	if b.Size > v.Checkpoint.Size {
		return nil, verifyErr("the migration boundary is at %d, beyond the checkpoint's size %d", b.Size, v.Checkpoint.Size)
	}
	if err := l.VerifyConsistency(ctx, b.Size, b.Root, v); err != nil {
		return nil, fmt.Errorf("the migration boundary's root at %d: %w", b.Size, err)
	}
	return &b, nil
}
