package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/fielderr"
)

// NewLogFromURLs returns a reader for one log served at several URLs: the
// log itself and its mirrors (a mirror's URL is its monitoring prefix plus
// /<hex SHA-256 of the origin>). The checkpoint is the largest one the URLs
// serve that satisfies p; each tile and bundle is read from the first URL,
// in order, that serves it. Which copy answered does not matter: everything is
// verified against that checkpoint.
func NewLogFromURLs(bases []string, p *policy.Policy, o HTTPOptions) (*Log, error) {
	if len(bases) == 0 {
		return nil, fielderr.New("Log.URL", errors.New("no URL"))
	}
	if len(bases) == 1 {
		return NewLog(bases[0], p, o)
	}
	fs := &fallbackSource{}
	for _, b := range bases {
		l, err := NewLog(b, p, o)
		if err != nil {
			return nil, err
		}
		fs.urls = append(fs.urls, b)
		fs.logs = append(fs.logs, l)
	}
	// The log's own endpoints beside tlog-tiles (holds, the migration
	// boundary) are asked of the first URL, the log itself by convention;
	// MinimumIndex and MigrationBoundary fall back to the others.
	first := fs.logs[0]
	return &Log{URL: strings.Join(bases, ","), Policy: p, fetcher: fs, sources: fs, hc: first.hc, base: first.base, token: first.token}, nil
}

// fallbackSource reads each resource from the first of several copies of a
// log that serves it.
type fallbackSource struct {
	urls []string
	logs []*Log
}

func (f *fallbackSource) each(what string, read func(l *Log) ([]byte, error)) ([]byte, error) {
	var errs []error
	notFound := 0
	for i, l := range f.logs {
		b, err := read(l)
		if err == nil {
			return b, nil
		}
		if errors.Is(err, os.ErrNotExist) {
			notFound++
		}
		errs = append(errs, fmt.Errorf("%s: %w", f.urls[i], err))
	}
	err := fmt.Errorf("%s from every URL: %w", what, errors.Join(errs...))
	if notFound == len(f.logs) {
		// Every copy lacks it: a missing resource, not an outage.
		return nil, fmt.Errorf("%w (%v)", os.ErrNotExist, err)
	}
	return nil, err
}

func (f *fallbackSource) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	return f.each("checkpoint", func(l *Log) ([]byte, error) { return l.fetcher.ReadCheckpoint(ctx) })
}

func (f *fallbackSource) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return f.each("tile", func(l *Log) ([]byte, error) { return l.fetcher.ReadTile(ctx, level, index, p) })
}

func (f *fallbackSource) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	return f.each("entry bundle", func(l *Log) ([]byte, error) { return l.fetcher.ReadEntryBundle(ctx, index, p) })
}

// checkpoint returns the largest checkpoint that satisfies p, of those the
// URLs serve (the first URL's on a tie): a mirror that lags, or the log
// once its region is gone, does not hold readers back.
func (f *fallbackSource) checkpoint(ctx context.Context, p *policy.Policy) (*policy.Verified, error) {
	var errs []error
	verification := false
	var best *policy.Verified
	for i, l := range f.logs {
		v, err := l.Checkpoint(ctx)
		if err == nil {
			if best == nil || v.Checkpoint.Size > best.Checkpoint.Size {
				best = v
			}
			continue
		}
		if errors.Is(err, ErrVerification) {
			verification = true
		}
		errs = append(errs, fmt.Errorf("%s: %w", f.urls[i], err))
	}
	if best != nil {
		return best, nil
	}
	err := errors.Join(errs...)
	if verification {
		return nil, verifyErr("no URL serves a checkpoint that satisfies the policy: %v", err)
	}
	return nil, fmt.Errorf("no URL serves a checkpoint: %w", err)
}

// SourceCheck is what CheckSources found at one URL.
type SourceCheck struct {
	URL  string `json:"url"`
	Size uint64 `json:"size,omitempty"`
	// Err is empty when the URL's checkpoint satisfies the policy and is
	// consistent with the others.
	Err string `json:"error,omitempty"`
	// Inconsistent is set when the URL serves a verified checkpoint that
	// is not consistent with the log's tree: a fork.
	Inconsistent bool `json:"inconsistent,omitempty"`
}

// CheckSources fetches every URL's checkpoint and checks that each one that
// satisfies the policy is consistent with the largest (a mirror's copy with
// the log's). It returns an error wrapping ErrVerification if any is not.
func (l *Log) CheckSources(ctx context.Context) ([]SourceCheck, error) {
	if l.sources == nil {
		return nil, nil
	}
	type got struct {
		i int
		v *policy.Verified
	}
	var ok []got
	out := make([]SourceCheck, len(l.sources.logs))
	for i, s := range l.sources.logs {
		out[i].URL = l.sources.urls[i]
		v, err := s.Checkpoint(ctx)
		if err != nil {
			out[i].Err = err.Error()
			continue
		}
		out[i].Size = v.Checkpoint.Size
		ok = append(ok, got{i, v})
	}
	if len(ok) == 0 {
		return out, nil
	}
	largest := ok[0]
	for _, g := range ok {
		if g.v.Checkpoint.Size > largest.v.Checkpoint.Size {
			largest = g
		}
	}
	var bad []string
	for _, g := range ok {
		if g.i == largest.i {
			continue
		}
		if err := l.VerifyConsistency(ctx, g.v.Checkpoint.Size, g.v.Checkpoint.Root[:], largest.v); err != nil {
			out[g.i].Err = err.Error()
			out[g.i].Inconsistent = errors.Is(err, ErrVerification)
			if out[g.i].Inconsistent {
				bad = append(bad, fmt.Sprintf("%s (size %d): %v", out[g.i].URL, g.v.Checkpoint.Size, err))
			}
		}
	}
	if len(bad) > 0 {
		return out, verifyErr("copies of the log disagree with %s: %s", out[largest.i].URL, strings.Join(bad, "; "))
	}
	return out, nil
}
