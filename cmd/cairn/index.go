package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/search"
	"github.com/cairnlog/cairn/index"
	"github.com/cairnlog/cairn/internal/certpool"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// indexCmds returns cairn index ....
func indexCmds() []*cobra.Command {
	cmd := &cobra.Command{
		Use:   "index",
		Short: "Run a search index that follows a log (cairn search, cairn history query it)",
	}
	cmd.AddCommand(newIndexServeCmd())
	return []*cobra.Command{cmd}
}

func newIndexServeCmd() *cobra.Command {
	var c clientFlags
	var db, httpAddr, grpcAddr, tlsCert, tlsKey, clientCA, accessFile, readAccess, logFormat, level string
	var fieldSpecs, corsOrigins []string
	var poll time.Duration
	var plaintext bool
	cmd := &cobra.Command{
		Use:   "serve --log URL[,URL…] --policy FILE --db sqlite:PATH|mysql:DSN --http ADDR",
		Short: "Follow a log, index every record, answer proven search queries",
		Long: `Follow a log through its tlog-tiles read path (the log, then mirrors: the
largest checkpoint that satisfies --policy wins), verify every entry against it,
and index each record: index, timestamp, submitting principal, content type,
subject hashes, and the JSON fields named by --field NAME=PATH. Path syntax:
.name (object member), ["any key"] (quoted member), [N] (array element), e.g.
--field actor=.actor --field resource=.resource.id --field first=.targets[0].id.
Records that are not JSON are indexed by their envelope only.

With --token-file (a token with the read role on the log) sealed records are
decrypted by the log and their fields indexed; erased records are indexed as
erased. Without it, sealed records are indexed by their clear header only.

A checkpoint inconsistent with one the index verified stops ingestion with an
alarm (log line, cairn_index_fork_detected 1, /status state "fork"); queries keep
answering from the verified prefix. The index is derived data: delete the
database to rebuild it from the log. HTTP API: docs/search.md.`,
		Example: `  # Beside 'make run': index its log (JSON fields actor, action, resource) in SQLite
  cairn index serve --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt \
    --token-file data/demo.token --db sqlite:data/index.db --http 127.0.0.1:8480 --insecure-plaintext \
    --field actor=.actor --field action=.action --field resource=.resource.id
  # The same, queried by the explorer of the log at https://127.0.0.1:8080/ui/ (another origin):
  cairn index serve --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt \
    --token-file data/demo.token --db sqlite:data/index.db --http 127.0.0.1:8480 --insecure-plaintext \
    --field actor=.actor --cors-origin https://127.0.0.1:8080
  # In MySQL/MariaDB (assumes a database "cairn_index" you can reach):
  cairn index serve --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt \
    --db 'mysql:cairn:secret@tcp(127.0.0.1:3306)/cairn_index' --http 127.0.0.1:8480 --insecure-plaintext`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logFormat, level)
			if err != nil {
				return err
			}
			if !plaintext && (tlsCert == "" || tlsKey == "") {
				return errors.New("--tls-cert and --tls-key are required (or --insecure-plaintext to serve without TLS)")
			}
			p, err := c.loadPolicy()
			if err != nil {
				return err
			}
			if c.log == "" {
				return errors.New("--log is required (the log's HTTP base URL)")
			}
			t, err := c.tlsConfig()
			if err != nil {
				return err
			}
			tok, err := c.token()
			if err != nil {
				return err
			}
			cfg := index.Config{LogURLs: strings.Split(c.log, ","), Policy: p, LogHTTP: client.HTTPOptions{TLS: t, Token: tok},
				DB: db, PollInterval: poll, AccessFile: accessFile, ReadAccess: readAccess, Logger: logger}
			for _, s := range fieldSpecs {
				f, err := search.ParseField(s)
				if err != nil {
					return fmt.Errorf("--field: %w", err)
				}
				cfg.Fields = append(cfg.Fields, f)
			}
			for _, o := range corsOrigins { // before index.New creates anything
				if _, err := index.ParseOrigin(o); err != nil {
					return fmt.Errorf("--cors-origin %w", err)
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			x, err := index.New(ctx, cfg)
			if err != nil {
				return flagError(cmd, err)
			}
			defer x.Close()
			var serverTLS *tls.Config
			if !plaintext {
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					return fmt.Errorf("--tls-cert/--tls-key: %w", err)
				}
				serverTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
				if clientCA != "" {
					pool, err := certpool.Load(clientCA)
					if err != nil {
						return fmt.Errorf("--tls-client-ca: %w", err)
					}
					serverTLS.ClientCAs, serverTLS.ClientAuth = pool, tls.VerifyClientCertIfGiven
				}
			}
			handler, err := index.AllowOrigins(corsOrigins, x.Handler())
			if err != nil {
				return fmt.Errorf("--cors-origin %w", err)
			}
			ln, err := net.Listen("tcp", httpAddr)
			if err != nil {
				return fmt.Errorf("--http %s: %w", httpAddr, err)
			}
			g, gctx := errgroup.WithContext(ctx)
			g.Go(func() error { return x.Run(gctx) })
			g.Go(func() error { return serveIndexHTTP(gctx, logger, ln, x, handler, serverTLS) })
			if grpcAddr != "" {
				gln, err := net.Listen("tcp", grpcAddr)
				if err != nil {
					return fmt.Errorf("--grpc %s: %w", grpcAddr, err)
				}
				var opts []grpc.ServerOption
				if serverTLS != nil {
					opts = append(opts, grpc.Creds(credentials.NewTLS(serverTLS)))
				}
				gs := grpc.NewServer(opts...)
				x.RegisterGRPC(gs)
				g.Go(func() error { return gs.Serve(gln) })
				g.Go(func() error {
					<-gctx.Done()
					stopGRPC(gs)
					return nil
				})
			}
			// Run returns nil on a fork (queries keep answering); the
			// servers stop when the signal cancels ctx.
			return g.Wait()
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.log, "log", "", "the log's tlog-tiles base URL; several (the log, then its mirrors): URL[,URL…]")
	f.StringVar(&c.policy, "policy", "", "C2SP tlog-policy file: the trusted log key and witness quorum")
	f.StringVar(&c.ca, "ca", "", "PEM CA bundle to trust for the log's TLS certificate (besides system roots)")
	f.StringVar(&c.cert, "cert", "", "PEM client certificate to present to the log (mTLS)")
	f.StringVar(&c.key, "key", "", "PEM key of --cert (no environment variable: $CAIRN_KEY is a server's private key file)")
	noEnv(f, "key")
	f.StringVar(&c.tokenFile, "token-file", "", "file holding a token with the read role on the log (to index sealed records' fields), or $CAIRN_TOKEN")
	f.StringVar(&db, "db", "sqlite:./data/index.db", "the index database: sqlite:PATH or mysql:DSN")
	f.StringArrayVar(&fieldSpecs, "field", nil, "index a JSON field: NAME=PATH, e.g. actor=.actor, resource=.resource.id; repeatable")
	f.StringVar(&httpAddr, "http", "127.0.0.1:8480", "HTTP listen address")
	f.StringVar(&grpcAddr, "grpc", "", "gRPC listen address (cairn.v1.Index); empty: no gRPC")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate to serve HTTPS and gRPC over TLS")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	f.StringVar(&clientCA, "tls-client-ca", "", "PEM CA bundle of client certificates (mTLS principals in --access)")
	f.BoolVar(&plaintext, "insecure-plaintext", false, "serve without TLS (loopback tests and demos only)")
	f.StringVar(&accessFile, "access", "", "access file (cairn access; the log's own file works) of the tokens and certificate principals that may query")
	f.StringVar(&readAccess, "read-access", "public", "public, or authenticated: queries need the read role in --access")
	f.StringArrayVar(&corsOrigins, "cors-origin", nil, "let pages on this exact origin (scheme://host[:port], e.g. the log's explorer https://audit.example) query from a browser; repeatable; default: same origin only")
	f.DurationVar(&poll, "poll-interval", index.DefaultPollInterval, "how often to ask the log for a new checkpoint")
	f.StringVar(&logFormat, "log-format", "text", "log output: text or json")
	f.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	annotateField(f, "log", "Config.LogURLs")
	annotateField(f, "policy", "Config.Policy")
	annotateField(f, "db", "Config.DB")
	annotateField(f, "field", "Config.Fields")
	annotateField(f, "access", "Config.AccessFile")
	annotateField(f, "read-access", "Config.ReadAccess")
	annotateField(f, "poll-interval", "Config.PollInterval")
	annotateField(f, "token-file", "HTTPOptions.Token")
	documentEnv(cmd)
	return cmd
}

// serveIndexHTTP serves the index's HTTP API until ctx ends (TLS with
// optional client certificates when t is set), then shuts down.
func serveIndexHTTP(ctx context.Context, logger *slog.Logger, ln net.Listener, x *index.Index, h http.Handler, t *tls.Config) error {
	srv := &http.Server{Handler: h, TLSConfig: t, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() {
		if t != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	logger.Info("serving", slog.String("addr", ln.Addr().String()), slog.Bool("tls", t != nil), slog.String("index", x.String()))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	<-errc
	logger.Info("shut down cleanly")
	return nil
}

// stopGRPC stops a gRPC server gracefully, then forcibly after 10s.
func stopGRPC(gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		gs.Stop()
		<-done
	}
}
