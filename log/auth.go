package log

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/log/access"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Authentication and authorization outcomes.
var (
	// ErrUnauthenticated: no valid identity (no token, unknown or revoked
	// token, no or unknown client certificate).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: a valid identity without the role the request needs.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrRateLimited: the principal exceeded its request rate.
	ErrRateLimited = errors.New("rate limited")
)

// Read access policies (--read-access).
const (
	ReadPublic        = "public"
	ReadAuthenticated = "authenticated"
)

// principal is an authenticated caller.
type principal struct {
	name  string
	roles []access.Role
	all   bool // authentication is off: anonymous with every role
}

func (p principal) has(r access.Role) bool {
	if p.all {
		return true
	}
	for _, x := range p.roles {
		if x == r {
			return true
		}
	}
	return false
}

// guard authenticates callers from the access file and TLS client
// certificates, authorizes them by role and rate-limits them.
type guard struct {
	path       string // access file; "" = authentication off
	readPublic bool
	logger     *slog.Logger

	mu   sync.RWMutex
	file *access.File

	limit    rate.Limit
	burst    int
	limMu    sync.Mutex
	limiters map[string]*rate.Limiter
}

func newGuard(cfg Config) (*guard, error) {
	g := &guard{
		path:       cfg.AccessFile,
		readPublic: cfg.ReadAccess != ReadAuthenticated,
		logger:     cfg.Logger,
		limit:      rate.Limit(cfg.RateLimit),
		burst:      cfg.RateBurst,
		limiters:   map[string]*rate.Limiter{},
	}
	if cfg.ReadAccess != ReadPublic && cfg.ReadAccess != ReadAuthenticated {
		return nil, fmt.Errorf("--read-access %q: want %s or %s", cfg.ReadAccess, ReadPublic, ReadAuthenticated)
	}
	if cfg.ReadAccess == ReadAuthenticated && cfg.AccessFile == "" {
		return nil, errors.New("--read-access authenticated needs --access (who may read)")
	}
	if g.burst < 1 {
		g.burst = max(1, int(cfg.RateLimit))
	}
	if g.path != "" {
		if err := g.reload(); err != nil {
			return nil, fmt.Errorf("--access: %w", err)
		}
	}
	return g, nil
}

// reload re-reads the access file; on error the previous one stays in force.
func (g *guard) reload() error {
	if g.path == "" {
		return nil
	}
	f, err := access.Load(g.path)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.file = f
	g.mu.Unlock()
	return nil
}

// identify returns the principal behind a request: a bearer token if one is
// presented, else a verified TLS client certificate.
func (g *guard) identify(authorization string, tlsState *tls.ConnectionState) (principal, error) {
	if g.path == "" {
		return principal{name: record.Anonymous, all: true}, nil
	}
	g.mu.RLock()
	f := g.file
	g.mu.RUnlock()
	if authorization != "" {
		token, ok := strings.CutPrefix(authorization, "Bearer ")
		if !ok {
			return principal{}, fmt.Errorf("%w: the Authorization header is not \"Bearer TOKEN\"", ErrUnauthenticated)
		}
		e, err := f.Token(strings.TrimSpace(token))
		if err != nil {
			return principal{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
		}
		return principal{name: e.Name, roles: e.Roles}, nil
	}
	if tlsState != nil && len(tlsState.VerifiedChains) > 0 {
		name := certPrincipal(tlsState.VerifiedChains[0][0])
		if e, ok := f.Cert(name); ok {
			return principal{name: e.Name, roles: e.Roles}, nil
		}
		return principal{}, fmt.Errorf("%w: client certificate principal %q is not in the access file", ErrUnauthenticated, name)
	}
	return principal{}, fmt.Errorf("%w: present a bearer token or a client certificate", ErrUnauthenticated)
}

// certPrincipal is the first URI SAN of a client certificate, else its subject CN.
func certPrincipal(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return c.Subject.CommonName
}

// authorize checks role and, for appends, the principal's rate.
func (g *guard) authorize(p principal, role access.Role) error {
	if !p.has(role) {
		return fmt.Errorf("%w: %q lacks the %s role", ErrPermissionDenied, p.name, role)
	}
	return nil
}

// allow takes one token from p's rate limiter.
func (g *guard) allow(p principal) error {
	if g.limit <= 0 {
		return nil
	}
	g.limMu.Lock()
	l, ok := g.limiters[p.name]
	if !ok {
		l = rate.NewLimiter(g.limit, g.burst)
		g.limiters[p.name] = l
	}
	g.limMu.Unlock()
	if !l.Allow() {
		return fmt.Errorf("%w: %q is over its limit of %g records/s (--rate-limit)", ErrRateLimited, p.name, float64(g.limit))
	}
	return nil
}

// fromGRPC authenticates a gRPC call.
func (g *guard) fromGRPC(ctx context.Context) (principal, error) {
	var auth string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			auth = v[0]
		}
	}
	var st *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			st = &ti.State
		}
	}
	return g.identify(auth, st)
}

// fromHTTP authenticates an HTTP request.
func (g *guard) fromHTTP(r *http.Request) (principal, error) {
	return g.identify(r.Header.Get("Authorization"), r.TLS)
}

// canReadContents reports whether record contents may be served to the caller.
func (g *guard) canReadContents(p principal, err error) error {
	if g.readPublic {
		return nil
	}
	if err != nil {
		return err
	}
	return g.authorize(p, access.RoleRead)
}
