package index

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/internal/fielderr"
)

// Index is a running search index: a follower that ingests the log and
// the query handlers (HTTP: Handler, gRPC: RegisterGRPC).
type Index struct {
	cfg    Config
	store  *store
	m      *metrics
	st     *status
	f      *follower
	guard  *guard
	fields map[string]string // name → path, for GET /fields
	cp     cpCache
}

// New opens the database, creates its tables and loads the index state;
// Run starts following the log.
func New(ctx context.Context, cfg Config) (*Index, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg, err := client.NewLogFromURLs(cfg.LogURLs, cfg.Policy, cfg.LogHTTP)
	if err != nil {
		return nil, err
	}
	g, err := newGuard(cfg)
	if err != nil {
		return nil, err
	}
	s, err := openStore(ctx, cfg.DB)
	if err != nil {
		return nil, fielderr.New("Config.DB", err)
	}
	x := &Index{cfg: cfg, store: s, m: newMetrics(), st: &status{origin: origin(cfg)}, guard: g, fields: map[string]string{}}
	var spec []string
	for _, f := range cfg.Fields {
		x.fields[f.Name] = f.Path.String()
		spec = append(spec, f.Name+"="+f.Path.String())
	}
	sort.Strings(spec)
	x.f = &follower{cfg: cfg, log: lg, store: s, m: x.m, st: x.st, decrypt: cfg.LogHTTP.Token != "", fields: strings.Join(spec, " ")}
	if err := x.f.load(ctx); err != nil {
		s.Close()
		return nil, fielderr.New("Config.DB", err)
	}
	return x, nil
}

// Run follows the log until ctx is cancelled, or until a fork stops
// ingestion (then it returns nil and queries keep answering from the
// verified prefix: Status says fork).
func (x *Index) Run(ctx context.Context) error {
	return x.f.run(ctx)
}

// Close closes the database; call it after Run returned and the servers stopped.
func (x *Index) Close() error { return x.store.Close() }

// Status returns what GET /status answers.
func (x *Index) Status() Status { return x.st.get() }

// errNotReady: no checkpoint verified yet.
var errNotReady = errors.New("the index has not verified a checkpoint yet")

// known reports whether name is an indexed field.
func (x *Index) known(name string) bool { _, ok := x.fields[name]; return ok }

// String names the index in logs.
func (x *Index) String() string {
	return fmt.Sprintf("index of %s (%d fields)", origin(x.cfg), len(x.fields))
}
