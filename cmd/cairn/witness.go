package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cairnlog/cairn/internal/keyfile"
	"github.com/cairnlog/cairn/witness"
	"github.com/spf13/cobra"
)

// witnessCmds returns the witness commands (cairn witness ...).
func witnessCmds() []*cobra.Command {
	cmd := &cobra.Command{
		Use:   "witness",
		Short: "Run a tlog-witness that cosigns consistent checkpoints",
	}
	cmd.AddCommand(newWitnessServeCmd(), newWitnessEvidenceCmd())
	return []*cobra.Command{cmd}
}

func newWitnessServeCmd() *cobra.Command {
	var keyFiles []string
	var logsFile, db, addr, tlsCert, tlsKey, logFormat, level string
	var plaintext bool
	cmd := &cobra.Command{
		Use:   "serve --key FILE --logs FILE --db DIR",
		Short: "Serve the C2SP tlog-witness API",
		Long: `Serve a C2SP tlog-witness: POST /add-checkpoint cosigns a log's checkpoint
only if it is consistent with the latest one this witness cosigned for that
origin, and stores that checkpoint durably before answering. Inconsistent
checkpoints are refused (422) and kept as evidence (cairn witness evidence).
GET /<hex sha256(origin)>/checkpoint serves the latest cosigned checkpoint.

--key may be repeated: the witness then answers with one cosignature line per
key, in the order given, each as tlog-cosignature defines it for its type
(Ed25519 cosignature/v1, 0x04; ML-DSA-44 subtree/v1, 0x06). A log's policy
names each key on its own witness line (see docs/witness.md, "Post-quantum").
Removing a key later is safe as long as one key stays; the stored state is
checked with the keys given.

--logs is a witness-network log list (logs/v0, vkey, origin, qpd, contact),
re-read on SIGHUP.`,
		Example: `  cairn keygen --witness --name witness.example.net --out data/witness
  printf 'logs/v0\nvkey %s\n' "$(cat data/log.vkey)" > data/logs.txt
  cairn witness serve --key data/witness.key --logs data/logs.txt --db data/witness-state --http 127.0.0.1:8181 --insecure-plaintext

  # Ed25519 and ML-DSA-44 (post-quantum) cosignatures from one witness
  cairn keygen --witness --alg ml-dsa-44 --name witness.example.net --out data/witness-pq
  cairn witness serve --key data/witness.key --key data/witness-pq.key --logs data/logs.txt --db data/witness-state --http 127.0.0.1:8181 --insecure-plaintext`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logFormat, level)
			if err != nil {
				return err
			}
			if len(keyFiles) == 0 || logsFile == "" {
				return errors.New("--key and --logs are required")
			}
			if !plaintext && (tlsCert == "" || tlsKey == "") {
				return errors.New("--tls-cert and --tls-key are required (or --insecure-plaintext to serve without TLS)")
			}
			var keys []string
			for _, f := range keyFiles {
				key, err := keyfile.Read(f)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				keys = append(keys, string(key))
			}
			logs, err := readLogList(logsFile)
			if err != nil {
				return err
			}
			w, err := witness.New(witness.Config{PrivateKeys: keys, Logs: logs, DB: db, Logger: logger})
			if err != nil {
				return flagError(cmd, err)
			}
			defer w.Close()
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--http %s: %w", addr, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					logs, err := readLogList(logsFile)
					if err != nil {
						logger.Error("log list reload failed; keeping the previous list", slog.Any("error", err))
						continue
					}
					w.SetLogs(logs)
					logger.Info("log list reloaded", slog.Int("logs", len(logs)))
				}
			}()
			var keyAttrs []string
			for _, k := range w.Keys() {
				keyAttrs = append(keyAttrs, fmt.Sprintf("%s+%08x (%s)", k.Name(), k.KeyHash(), k.Type()))
			}
			return serveHTTP(ctx, logger, ln, w.Handler(), tlsCert, tlsKey,
				slog.String("witness", w.Name()), slog.Any("keys", keyAttrs), slog.Int("logs", len(logs)))
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&keyFiles, "key", nil, "file holding a witness private key (cairn keygen --witness [--alg ml-dsa-44]); repeat it to cosign with several keys")
	f.StringVar(&logsFile, "logs", "", "log list (witness-network logs/v0 format) of the logs to cosign for")
	f.StringVar(&db, "db", "./data/witness", "state directory: latest cosigned checkpoints and evidence")
	f.StringVar(&addr, "http", "127.0.0.1:8181", "HTTP listen address")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate to serve HTTPS")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	f.BoolVar(&plaintext, "insecure-plaintext", false, "serve plain HTTP (loopback tests and demos only)")
	f.StringVar(&logFormat, "log-format", "text", "log output: text or json")
	f.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	annotateField(f, "key", "Config.PrivateKeys")
	annotateField(f, "logs", "Config.Logs")
	annotateField(f, "db", "Config.DB")
	documentEnv(cmd)
	return cmd
}

func readLogList(path string) ([]witness.Log, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--logs: %w", err)
	}
	logs, err := witness.ParseLogList(b)
	if err != nil {
		return nil, fmt.Errorf("--logs %s: %w", path, err)
	}
	return logs, nil
}

// serveHTTP serves h on ln (HTTPS when a certificate is given) until ctx
// ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, logger *slog.Logger, ln net.Listener, h http.Handler, certFile, keyFile string, attrs ...any) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- srv.ServeTLS(ln, certFile, keyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	logger.Info("serving", append([]any{slog.String("addr", ln.Addr().String()), slog.Bool("tls", certFile != "")}, attrs...)...)
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
	logger.Info("shut down cleanly")
	return nil
}

func newWitnessEvidenceCmd() *cobra.Command {
	var db, output string
	cmd := &cobra.Command{
		Use:     "evidence --db DIR",
		Short:   "Print the inconsistent checkpoints this witness refused",
		Example: `  cairn witness evidence --db data/witness-eu --output json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			evs, err := witness.ReadEvidence(db)
			if err != nil {
				return fmt.Errorf("--db: %w", err)
			}
			if evs == nil {
				evs = []witness.Evidence{}
			}
			rows := make([]evidenceRow, len(evs))
			for i, e := range evs {
				rows[i] = evidenceRow{e.Time, e.Origin, e.Reason, e.Old, len(e.Proof), "cosigned", e.Cosigned, e.Submitted}
			}
			return printEvidence(cmd.OutOrStdout(), output, "witness", evs, rows)
		},
	}
	cmd.Flags().StringVar(&db, "db", "./data/witness", "the witness's state directory")
	cmd.Flags().StringVar(&output, "output", "text", "text or json")
	return cmd
}

// evidenceRow is one refused checkpoint as the evidence commands print it.
type evidenceRow struct {
	Time            time.Time
	Origin, Reason  string
	Old             uint64
	Proofs          int
	HeldLabel, Held string // what the server held ("cosigned", "pending") and that note
	Submitted       string
}

// printEvidence prints a server's evidence: as JSON (value, the server's own
// records) or as text (rows).
func printEvidence(out io.Writer, output, server string, value any, rows []evidenceRow) error {
	switch output {
	case "json":
		return json.NewEncoder(out).Encode(value)
	case "text":
		if len(rows) == 0 {
			fmt.Fprintf(out, "no evidence: every checkpoint this %s was shown was consistent\n", server)
		}
		for _, e := range rows {
			fmt.Fprintf(out, "%s  %s\n  reason: %s\n  old %d, %d proof hashes\n  %s:\n%s\n  submitted:\n%s\n",
				e.Time.Format(time.RFC3339), e.Origin, e.Reason, e.Old, e.Proofs, e.HeldLabel, indent(e.Held), indent(e.Submitted))
		}
		return nil
	default:
		return fmt.Errorf("--output %q: want text or json", output)
	}
}

func indent(s string) string {
	out := ""
	for _, l := range splitLines(s) {
		out += "    " + l + "\n"
	}
	return out
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}
