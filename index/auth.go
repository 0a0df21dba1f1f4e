package index

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/cairnlog/cairn/log/access"
)

// Authentication outcomes (HTTP 401/403, gRPC Unauthenticated/PermissionDenied).
var (
	ErrUnauthenticated  = errors.New("unauthenticated")
	ErrPermissionDenied = errors.New("permission denied")
)

// guard checks queries against an access file in the log's format
// (log/access, a format package: the index shares the file format, not
// the log): a bearer token, or a verified TLS client certificate whose
// principal (first URI SAN, else the common name, as the log reads it)
// holds the read role. The file is re-read when it changes.
type guard struct {
	path   string // "" or public: every query is allowed
	public bool
	// mu guards file and mtime.
	mu    sync.Mutex
	file  *access.File
	mtime time.Time
}

func newGuard(cfg Config) (*guard, error) {
	g := &guard{path: cfg.AccessFile, public: cfg.ReadAccess != ReadAuthenticated}
	if g.public {
		return g, nil
	}
	if _, err := g.current(); err != nil {
		return nil, fielderr.New("Config.AccessFile", err)
	}
	return g, nil
}

// current returns the access file, re-read if it changed on disk.
func (g *guard) current() (*access.File, error) {
	st, err := os.Stat(g.path)
	if err != nil {
		return nil, fmt.Errorf("reading access file: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("%s is writable by other users (mode %#o), who could grant themselves any role: chmod 600 %s", g.path, perm, g.path)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.file != nil && st.ModTime().Equal(g.mtime) {
		return g.file, nil
	}
	f, err := access.Load(g.path)
	if err != nil {
		if g.file != nil {
			return g.file, nil // keep the last good file in force
		}
		return nil, err
	}
	g.file, g.mtime = f, st.ModTime()
	return f, nil
}

// check authorizes a query from its Authorization value and TLS state.
func (g *guard) check(authorization string, tlsState *tls.ConnectionState) error {
	if g.public {
		return nil
	}
	f, err := g.current()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	var e access.Entry
	switch {
	case authorization != "":
		token, ok := strings.CutPrefix(authorization, "Bearer ")
		if !ok {
			return fmt.Errorf("%w: the Authorization header is not \"Bearer TOKEN\"", ErrUnauthenticated)
		}
		if e, err = f.Token(strings.TrimSpace(token)); err != nil {
			return fmt.Errorf("%w: %v", ErrUnauthenticated, err)
		}
	case tlsState != nil && len(tlsState.VerifiedChains) > 0:
		c := tlsState.VerifiedChains[0][0]
		name := c.Subject.CommonName
		if len(c.URIs) > 0 {
			name = c.URIs[0].String()
		}
		var ok bool
		if e, ok = f.Cert(name); !ok {
			return fmt.Errorf("%w: client certificate principal %q is not in the access file", ErrUnauthenticated, name)
		}
	default:
		return fmt.Errorf("%w: present a bearer token or a client certificate", ErrUnauthenticated)
	}
	if !e.Has(access.RoleRead) {
		return fmt.Errorf("%w: %q lacks the read role", ErrPermissionDenied, e.Name)
	}
	return nil
}
