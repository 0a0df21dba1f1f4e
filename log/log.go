package log

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnlog/cairn/format/migration"
	"github.com/cairnlog/cairn/internal/fielderr"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Log is a running Cairn log: one frontend over one storage driver.
type Log struct {
	cfg       Config
	logger    *slog.Logger
	origin    string
	verifierV note.Verifier
	appender  *tessera.Appender
	reader    tessera.LogReader
	awaiter   *tessera.PublicationAwaiter
	shutdown  func(context.Context) error
	metrics   *metrics
	watcher   *checkpointWatcher
	guard     *guard
	retainer  *retainer
	// retainerDone is closed when the retainer's goroutine has returned.
	retainerDone chan struct{}
	// closeStorage, if set, releases the storage driver's own state (the
	// POSIX antispam index) once stop has been called.
	closeStorage func() error
	// static opens stored tiles and entry bundles as files (POSIX
	// storage; nil otherwise): see writeFile.
	static *staticOpener
	// keys seals and opens records naming data subjects; nil without a KEK.
	keys *subjectKeys
	// subjectHold reports whether a subject (by keyed hash) is under a
	// legal hold, which refuses its erasure; nil = no holds.
	subjectHold func(ctx context.Context, subjectHash []byte) (held bool, reason string)
	// keyStore is the subject key store, closed last by drain.
	keyStore keyStore
	// explorer serves /ui/ (package ui) and feeds its charts.
	explorer *explorer
	// eraseHook, if set, is called at the named steps of Erase (tests).
	eraseHook func(step string)

	httpLn, grpcLn net.Listener
	// debugLn serves profiles (Config.DebugAddr); nil when not asked for.
	debugLn net.Listener
	httpSrv *http.Server
	grpcSrv *grpc.Server
	health  *health.Server

	// boundary is the migration boundary of migrated storage (nil: none),
	// boundaryRaw its encoding as stored.
	boundary    *migration.Boundary
	boundaryRaw []byte

	// stop cancels Tessera's background work; called last in Run.
	stop context.CancelFunc
	// mirrors owns the mirror pushers; drain waits for them after stop.
	mirrors  sync.WaitGroup
	draining atomic.Bool
	// barrier is the antispam's start barrier (nil: none): until it is
	// set, appends get pushback and /readyz answers 503.
	barrier *atomic.Bool
}

// New opens storage, starts Tessera's appender and binds both listeners.
// It returns an error, never a half-started log; call Run to serve.
func New(ctx context.Context, cfg Config) (*Log, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	signer, verifier, err := cfg.keys()
	if err != nil {
		return nil, err
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithCheckpointInterval(cfg.CheckpointInterval).
		WithBatching(cfg.BatchMaxSize, cfg.BatchMaxAge).
		WithPushback(cfg.PushbackMaxOutstanding).
		WithCheckpointRepublishInterval(cfg.CheckpointRepublishInterval).
		WithGarbageCollectionInterval(cfg.GCInterval).
		WithShutdownTimeout(DrainTimeout)
	if len(cfg.WitnessPolicy) > 0 {
		group, err := witnessGroup(cfg.WitnessPolicy)
		if err != nil {
			return nil, fielderr.New("Config.WitnessPolicy", err)
		}
		opts = opts.WithWitnesses(group, &tessera.WitnessOptions{Timeout: cfg.WitnessTimeout})
	}

	m := newMetrics()
	registerMemoryGauges(m, cfg)
	g, err := newGuard(cfg, m)
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if !cfg.InsecurePlaintext {
		if tlsCfg, err = serverTLS(cfg); err != nil {
			return nil, err
		}
	} else {
		cfg.Logger.Warn("serving without TLS (Config.InsecurePlaintext): tokens and records cross the network in clear")
	}
	if cfg.AccessFile == "" {
		cfg.Logger.Warn("authentication is off (no Config.AccessFile): every submitter is anonymous with every role")
	}
	wc, err := witnessHTTPClient(cfg.WitnessTimeout, cfg.TLSCA)
	if err != nil {
		return nil, err
	}
	rp, err := openRetention(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Mirrors named in the publishing policy cosign through a push.
	mt, err := newMirrorTransport(wc.Transport, cfg.Mirrors, mirrorTLS(wc), verifier)
	if err != nil {
		return nil, err
	}
	wc.Transport = mt

	// Tessera's background work (integration, publishing, antispam) outlives
	// the caller's context so that Run can drain it in order.
	// The subject key store opens first: a lost or wrong KEK stops the
	// start before any storage is opened.
	ks, err := openKeyStore(ctx, cfg.Storage, cfg.AWS)
	if err != nil {
		return nil, err
	}
	keys, err := openSubjectKeys(ctx, ks, cfg.KEKFile)
	if err != nil {
		ks.close()
		return nil, err
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	drv, err := openDriver(bg, cfg.Storage, cfg.AWS, cfg.ReadAccess == ReadAuthenticated, cfg.Logger, wc, antispamLag(cfg.DedupCacheEntries), cfg.AntispamMemoryMiB)
	if err != nil {
		stop()
		return nil, err
	}
	m.registry.MustRegister(drv.collectors...)
	// A boundary that cannot be read (an object store that answers
	// AccessDenied for missing keys, a transient error) must not keep a log
	// from serving; its record is appended at a later start.
	boundary, boundaryRaw, err := loadBoundary(bg, drv)
	if err != nil {
		cfg.Logger.Warn("not serving a migration boundary", slog.Any("error", err))
	}
	as := &retryAntispam{Antispam: drv.antispam, timeout: retryCatchUpTimeout}
	opts = opts.WithAntispam(uint(cfg.DedupCacheEntries), as)
	appender, shutdown, reader, err := tessera.NewAppender(bg, drv.tessera, opts)
	if err != nil {
		stop()
		return nil, fmt.Errorf("starting Tessera appender on %s: %w", cfg.Storage, err)
	}
	next := reader.NextIndex
	as.nextIndex.Store(&next)
	var barrier *atomic.Bool
	if as, ok := drv.antispam.(barrierAntispam); ok {
		barrier = as.startBarrier()
		// A new log, or a clean restart, has nothing to wait for: the
		// barrier opens now if the index covers the tree (else the
		// follower opens it once it has caught up).
		size, err := reader.IntegratedSize(bg)
		if err == nil {
			var next uint64
			if next, err = as.indexed(bg); err == nil && next >= size {
				barrier.Store(true)
			}
		}
		if err != nil {
			cfg.Logger.Warn("antispam index: comparing it with the tree at start", slog.Any("error", err))
		}
	}
	if drv.reader != nil {
		reader = drv.reader(reader)
	}
	published := reader
	mt.reader.Store(&published)

	l := &Log{
		cfg:       cfg,
		logger:    cfg.Logger,
		origin:    cfg.Origin,
		verifierV: verifier,
		appender:  appender,
		reader:    reader,
		awaiter:   tessera.NewPublicationAwaiter(bg, reader.ReadCheckpoint, publicationPollInterval),
		shutdown:  shutdown,
		metrics:   m,
		guard:     g,
		keys:      keys,
		keyStore:  ks,
		stop:      stop,

		barrier:      barrier,
		closeStorage: drv.close,
		static:       drv.static,

		boundary:    boundary,
		boundaryRaw: boundaryRaw,
	}
	if l.explorer, err = newExplorer(cfg); err != nil {
		stop()
		return nil, err
	}
	l.watcher = newCheckpointWatcher(l)
	if l.retainer, err = newRetainer(ctx, l, rp, drv, as); err != nil {
		stop()
		return nil, err
	}
	l.subjectHold = l.heldSubject
	go l.watcher.run(bg)
	l.retainerDone = make(chan struct{})
	go l.retainer.run(bg, cfg.RetentionInterval, l.retainerDone)
	if err := l.startMirrors(bg, &l.mirrors, mirrorTLS(&http.Client{Transport: mt.base})); err != nil {
		stop()
		return nil, err
	}
	if len(cfg.WitnessPolicy) > 0 {
		r, err := newWitnessRefresher(l, cfg.WitnessPolicy, wc)
		if err != nil {
			stop()
			return nil, err
		}
		l.explorer.setRefresher(r)
		go r.run(bg)
	}

	if l.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		stop()
		return nil, fielderr.New("Config.HTTPAddr", err)
	}
	if l.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		l.httpLn.Close()
		stop()
		return nil, fielderr.New("Config.GRPCAddr", err)
	}
	if cfg.DebugAddr != "" {
		if l.debugLn, err = listenDebug(cfg.DebugAddr, cfg.Logger); err != nil {
			l.httpLn.Close()
			l.grpcLn.Close()
			stop()
			return nil, err
		}
	}
	l.httpSrv = &http.Server{
		Handler:           l.httpHandler(),
		ReadHeaderTimeout: handshakeTimeout,
		ReadTimeout:       httpReadTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	grpcOpts := grpcServerOptions(cfg)
	if tlsCfg != nil {
		l.httpLn = tls.NewListener(l.httpLn, tlsCfg.Clone())
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tlsCfg.Clone())))
	}
	l.grpcSrv = grpc.NewServer(grpcOpts...)
	cairnv1.RegisterLogServer(l.grpcSrv, &grpcServer{l: l})
	l.health = health.NewServer()
	healthpb.RegisterHealthServer(l.grpcSrv, l.health)
	return l, nil
}

// Bounds on a client's connection, the same for every deployment.
const (
	// handshakeTimeout bounds the TLS handshake, an HTTP request's headers and
	// a new gRPC connection's TLS and HTTP/2 handshake.
	handshakeTimeout = 10 * time.Second
	// httpReadTimeout bounds reading a whole HTTP request.
	httpReadTimeout = time.Minute
	// httpIdleTimeout closes an idle keep-alive connection.
	httpIdleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds HTTP headers and gRPC metadata beside a record.
	maxHeaderBytes = 64 << 10
)

// publicationPollInterval is how often an append waiting for its receipt
// reads the published checkpoint; checkpointWatchInterval how often the
// metrics follow it.
const (
	publicationPollInterval = 50 * time.Millisecond
	checkpointWatchInterval = 100 * time.Millisecond
)

// verifier returns the log key's note verifier.
func (l *Log) verifier() note.Verifier { return l.verifierV }

// ReloadAccess re-reads the access file (SIGHUP). On error the previous
// access file stays in force (the log keeps serving its principals), and the
// failure is made visible until a reload succeeds: /readyz answers 503,
// cairn_access_reload_failures_total counts it, and
// cairn_access_last_reload_success_timestamp_seconds stops advancing.
func (l *Log) ReloadAccess() error {
	if err := l.guard.reload(); err != nil {
		l.logger.Error("access file reload failed; keeping the previous one", slog.Any("error", err))
		return err
	}
	l.logger.Info("access file reloaded", slog.String("file", l.cfg.AccessFile))
	return nil
}

// Origin returns the log's origin line.
func (l *Log) Origin() string { return l.origin }

// HTTPAddr returns the bound HTTP address (useful with port 0).
func (l *Log) HTTPAddr() string { return l.httpLn.Addr().String() }

// DebugAddr returns the bound profile listener's address, "" without one.
func (l *Log) DebugAddr() string {
	if l.debugLn == nil {
		return ""
	}
	return l.debugLn.Addr().String()
}

// GRPCAddr returns the bound gRPC address (useful with port 0).
func (l *Log) GRPCAddr() string { return l.grpcLn.Addr().String() }

// Run serves until ctx is cancelled, then shuts down in this order:
//  1. stop accepting: close listeners, finish in-flight requests;
//  2. drain Tessera: every acknowledged record is integrated and a final
//     checkpoint committing to it is published;
//  3. stop Tessera's background work and release storage.
func (l *Log) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := l.httpSrv.Serve(l.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("HTTP server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := l.grpcSrv.Serve(l.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("gRPC server: %w", err)
		}
		return nil
	})
	if l.debugLn != nil {
		g.Go(func() error { return serveDebug(gctx, l.debugLn) })
		l.logger.Info("serving profiles", slog.String("debug", l.debugLn.Addr().String()))
	}
	l.logger.Info("log serving", slog.String("origin", l.origin), slog.String("http", l.HTTPAddr()), slog.String("grpc", l.GRPCAddr()), slog.String("storage", l.cfg.Storage))
	g.Go(func() error {
		l.appendBoundary(gctx)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		return l.drain()
	})
	return g.Wait()
}

// drain is the shutdown sequence documented on Run, within DrainTimeout.
func (l *Log) drain() error {
	l.draining.Store(true)
	l.health.Shutdown()
	l.logger.Info("shutting down: no longer accepting records")
	ctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() { l.grpcSrv.GracefulStop(); close(stopped) }()
	httpErr := l.httpSrv.Shutdown(ctx)
	select {
	case <-stopped:
	case <-ctx.Done():
		l.grpcSrv.Stop()
	}
	l.logger.Info("shutting down: publishing a final checkpoint")
	tErr := l.shutdown(ctx)
	l.stop()
	<-l.retainerDone
	l.mirrors.Wait()
	if l.closeStorage != nil {
		if err := l.closeStorage(); err != nil {
			l.logger.Warn("closing the storage driver", slog.Any("error", err))
		}
	}
	if err := l.keyStore.close(); err != nil {
		l.logger.Warn("closing the subject key store", slog.Any("error", err))
	}
	if tErr != nil {
		return fmt.Errorf("draining Tessera: %w", tErr)
	}
	if httpErr != nil {
		return fmt.Errorf("stopping HTTP server: %w", httpErr)
	}
	l.logger.Info("shut down cleanly")
	return nil
}
