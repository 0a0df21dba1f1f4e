package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/cairnlog/cairn/internal/fielderr"
)

// debugHandler serves Go's profiles (net/http/pprof) on a mux of its own:
// they are mounted only on the Config.DebugAddr listener, never on the
// public HTTP one, so that an operator opts in to exposing them.
//
//	go tool pprof http://127.0.0.1:6060/debug/pprof/heap
//	go tool pprof 'http://127.0.0.1:6060/debug/pprof/profile?seconds=30'
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// listenDebug binds Config.DebugAddr; a host that is not loopback is
// served, since the operator asked for it, with a warning.
func listenDebug(addr string, logger *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fielderr.New("Config.DebugAddr", err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		logger.Warn("the profile endpoint is reachable beyond this machine; keep Config.DebugAddr on loopback", slog.String("debug", ln.Addr().String()))
	}
	return ln, nil
}

// serveDebug serves profiles on ln until ctx ends.
func serveDebug(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: handshakeTimeout}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			_ = srv.Close()
		case <-done:
		}
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("debug server: %w", err)
	}
	return nil
}
