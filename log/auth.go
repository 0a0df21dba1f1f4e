package log

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/internal/fielderr"
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

// Read access policies (Config.ReadAccess).
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
	metrics    *metrics
	failures   *failureLog

	// mu guards file, the access file in force, and reloadErr, why the last
	// reload failed (nil: it succeeded).
	mu        sync.RWMutex
	file      *access.File
	reloadErr error

	limit    rate.Limit
	burst    int
	limMu    sync.Mutex
	limiters map[string]*rate.Limiter
}

// newGuard loads the access file of a validated configuration.
func newGuard(cfg Config, m *metrics) (*guard, error) {
	g := &guard{
		path:       cfg.AccessFile,
		readPublic: cfg.ReadAccess != ReadAuthenticated,
		logger:     cfg.Logger,
		metrics:    m,
		failures:   newFailureLog(cfg.Logger, authLogRate, authLogBurst),
		limit:      rate.Limit(cfg.RateLimit),
		burst:      cfg.RateBurst,
		limiters:   map[string]*rate.Limiter{},
	}
	if g.burst < 1 {
		g.burst = max(1, int(cfg.RateLimit))
	}
	if g.path != "" {
		if err := g.reload(); err != nil {
			return nil, fielderr.New("Config.AccessFile", err)
		}
	}
	return g, nil
}

// reload re-reads the access file; on error the previous one stays in force
// and the failure is visible: cairn_access_reload_failures_total counts it
// and /readyz answers 503 until a reload succeeds.
func (g *guard) reload() error {
	if g.path == "" {
		return nil
	}
	f, err := loadAccessFile(g.path)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reloadErr = err
	if err != nil {
		g.metrics.accessReloadFailures.Inc()
		return err
	}
	g.file = f
	g.metrics.accessReloadSuccess.SetToCurrentTime()
	return nil
}

// inForce returns the access file in force (nil with authentication off).
// Every reload replaces it, changed or not, so a principal identified under
// it stays valid exactly until the next reload.
func (g *guard) inForce() *access.File {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.file
}

// loadAccessFile loads the access file, refusing one that other users may
// write: whoever can write it can grant themselves any role. Its contents
// are salted hashes of 256-bit secrets and principal names, not secrets, so
// it may be readable by others.
func loadAccessFile(path string) (*access.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading access file: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("%s is writable by other users (mode %#o), who could grant themselves any role: chmod 600 %s", path, perm, path)
	}
	return access.Load(path)
}

// errAccessReload is why the log is not ready while the last access file
// reload failed.
var errAccessReload = errors.New("the last access file reload failed; the previous access file is in force, so revocations since then do not apply")

// accessReady reports an error while the last reload of the access file failed.
func (g *guard) accessReady() error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.reloadErr != nil {
		return fmt.Errorf("%w: not ready: %w: %v", ErrUnavailable, errAccessReload, g.reloadErr)
	}
	return nil
}

// identify returns the principal behind a request: a bearer token if one is
// presented, else a verified TLS client certificate. A credential that is
// presented and refused is logged (failureLog), by token id or certificate
// principal, never by secret; remote is the caller's address for that line.
func (g *guard) identify(authorization string, tlsState *tls.ConnectionState, remote string) (principal, error) {
	if g.path == "" {
		return principal{name: record.Anonymous, all: true}, nil
	}
	g.mu.RLock()
	f := g.file
	g.mu.RUnlock()
	if authorization != "" {
		token, ok := strings.CutPrefix(authorization, "Bearer ")
		if !ok {
			g.failed("malformed", remote, slog.String("reason", "Authorization is not a bearer token"))
			return principal{}, fmt.Errorf("%w: the Authorization header is not \"Bearer TOKEN\"", ErrUnauthenticated)
		}
		token = strings.TrimSpace(token)
		e, err := f.Token(token)
		if err != nil {
			id, ok := access.TokenID(token)
			if !ok {
				g.failed("malformed", remote, slog.String("reason", "not a cairn token"))
			} else {
				g.failed("token", remote, slog.String("token_id", id))
			}
			return principal{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
		}
		return principal{name: e.Name, roles: e.Roles}, nil
	}
	if tlsState != nil && len(tlsState.VerifiedChains) > 0 {
		name := certPrincipal(tlsState.VerifiedChains[0][0])
		if e, ok := f.Cert(name); ok {
			return principal{name: e.Name, roles: e.Roles}, nil
		}
		g.failed("certificate", remote, slog.String("principal", name))
		return principal{}, fmt.Errorf("%w: client certificate principal %q is not in the access file", ErrUnauthenticated, name)
	}
	return principal{}, fmt.Errorf("%w: present a bearer token or a client certificate", ErrUnauthenticated)
}

// failed counts a refused credential and logs it, rate-limited.
func (g *guard) failed(kind, remote string, attrs ...slog.Attr) {
	g.metrics.authFailures.WithLabelValues(kind).Inc()
	g.failures.log(append(attrs, slog.String("credential", kind), slog.String("remote", remote))...)
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
		return fmt.Errorf("%w: %q is over its limit of %g records/s", ErrRateLimited, p.name, float64(g.limit))
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
	var remote string
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			st = &ti.State
		}
		if p.Addr != nil {
			remote = p.Addr.String()
		}
	}
	return g.identify(auth, st, remote)
}

// fromHTTP authenticates an HTTP request.
func (g *guard) fromHTTP(r *http.Request) (principal, error) {
	return g.identify(r.Header.Get("Authorization"), r.TLS, r.RemoteAddr)
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

// adminOnly guards the operating endpoints (/metrics) with the admin role
// when an access file is configured; without one they stay open, like
// everything else. Metrics reveal per-API traffic, tree growth and process
// details, which are the operator's business, not every client's.
func (g *guard) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := g.fromHTTP(r)
		if err == nil {
			err = g.authorize(p, access.RoleAdmin)
		}
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Failed authentications are logged at most authLogRate lines a second
// (bursts of authLogBurst), so a flood of bad tokens cannot fill the disk.
const (
	authLogRate  = 10
	authLogBurst = 20
)

// failureLog writes one warning per refused credential, rate-limited; the
// lines it drops are counted and reported on the next line it writes.
type failureLog struct {
	logger     *slog.Logger
	limit      *rate.Limiter
	suppressed atomic.Uint64
}

func newFailureLog(logger *slog.Logger, perSecond float64, burst int) *failureLog {
	return &failureLog{logger: logger, limit: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

func (f *failureLog) log(attrs ...slog.Attr) {
	if !f.limit.Allow() {
		f.suppressed.Add(1)
		return
	}
	if n := f.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, slog.Uint64("suppressed_since_last", n))
	}
	f.logger.LogAttrs(context.Background(), slog.LevelWarn, "authentication failed", attrs...)
}

// admin authenticates a caller (p, err from fromGRPC or fromHTTP) and
// checks the admin role; it returns the principal's name.
func (g *guard) admin(p principal, err error) (string, error) {
	if err != nil {
		return "", err
	}
	if err := g.authorize(p, access.RoleAdmin); err != nil {
		return "", err
	}
	return p.name, nil
}

// canDecrypt reports whether the caller may read decrypted records: the
// read role, even where entry bundles are public (they carry only the
// ciphertext of sealed records).
func (g *guard) canDecrypt(p principal, err error) error {
	if err != nil {
		return err
	}
	return g.authorize(p, access.RoleRead)
}
