package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/certpool"
	"github.com/cairnlog/cairn/internal/keyfile"
	"github.com/cairnlog/cairn/internal/mysqls3"
	"github.com/cairnlog/cairn/mirror"
	"github.com/spf13/cobra"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// mirrorCmds returns the mirror commands (cairn mirror ...).
func mirrorCmds() []*cobra.Command {
	cmd := &cobra.Command{
		Use:   "mirror",
		Short: "Run or feed a tlog-mirror that stores and cosigns copies of logs",
	}
	cmd.AddCommand(newMirrorServeCmd(), newMirrorPushCmd(), newMirrorEvidenceCmd())
	return []*cobra.Command{cmd}
}

func newMirrorServeCmd() *cobra.Command {
	var keyFiles []string
	var logsFile, policyFile, storage, addr, tlsCert, tlsKey, logFormat, level string
	var plaintext bool
	var aws mysqls3.Config
	var minIndexes []string
	var tlsCA string
	cmd := &cobra.Command{
		Use:   "serve --key FILE --logs FILE --storage posix:DIR|mysql+s3",
		Short: "Serve the C2SP tlog-mirror API and the mirrored logs' tiles",
		Long: `Serve a C2SP tlog-mirror: a cosigner that stores a full copy of each log it
mirrors and serves it over tlog-tiles.

  POST /add-checkpoint   tlog-witness semantics on the pending checkpoint
                         (no cosignature; 409 text/x.tlog.size; forks refused
                         with 422 and kept as evidence: cairn mirror evidence)
  POST /add-entries      entry packages, each proven against the pending
                         checkpoint; 200 with the mirror's cosignature once
                         every entry up to it is stored; 202/409 with
                         text/x.tlog.mirror-info to resume
  GET  /<hex sha256(origin)>/checkpoint, /tile/...   the mirrored log

--logs is a witness-network log list (logs/v0), the same file a witness reads.
--key may be repeated: every key cosigns each mirror checkpoint.

--storage posix:DIR keeps each log in DIR/<hex sha256(origin)>/; mysql+s3 keeps
it in the --s3-bucket under <hex sha256(origin)>/, with the log's flags
(--mysql-dsn, --s3-*). A mirror has one writer per bucket: the database holds
its lock, and a second mirror serve on the same bucket is refused.

--minimum-index ORIGIN=N starts a log at N (a log with retention that pruned
its start): the mirror stores and cosigns the entries from N (rounded down to a
multiple of 256) on, and reads the tree left of N once from the log's URL on
its --policy log line, verified against a checkpoint the log signed. Its
cosignature then vouches only for the entries from N on (docs/mirror.md).

--policy names the witnesses (its witness lines) whose cosignatures the mirror
relays on the checkpoints it serves, after verifying them; every other
signature line a pushed checkpoint carries is dropped (without --policy, the
mirror serves the log's signature and its own only).`,
		Example: `  # A second mirror beside 'make run' (which runs mirror-sa on 8281), for its log:
  cairn keygen --witness --name mirror-b.example.net --out data/mirror-b
  cairn mirror serve --key data/mirror-b.key --logs data/witness-logs.txt --policy data/policy.txt \
    --storage posix:data/mirror-b --http 127.0.0.1:8282 --insecure-plaintext
  # The same on mysql+s3 (assumes 'make run-ha' or another MySQL and MinIO, and their
  # DSN and key files):
  cairn mirror serve --key data/mirror-b.key --logs data/witness-logs.txt --policy data/policy.txt \
    --storage mysql+s3 --mysql-dsn "$DSN" --s3-endpoint http://127.0.0.1:19000 --s3-bucket mirror-b \
    --s3-region us-east-1 --s3-path-style --s3-access-key-file s3.id --s3-secret-key-file s3.secret \
    --http 127.0.0.1:8282 --insecure-plaintext`,
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
			dir, ok := strings.CutPrefix(storage, "posix:")
			switch {
			case storage == "mysql+s3":
				dir = ""
				if aws.FirstSet() == "" {
					return errors.New("--storage mysql+s3 needs --mysql-dsn, --s3-bucket, --s3-region, --s3-access-key-file and --s3-secret-key-file")
				}
			case !ok || dir == "":
				return fmt.Errorf("--storage %q: want posix:DIR or mysql+s3", storage)
			case aws.FirstSet() != "":
				return fmt.Errorf("--storage %s: the --mysql-dsn and --s3-* flags apply only to --storage mysql+s3", storage)
			}
			var keys []string
			for _, f := range keyFiles {
				k, err := keyfile.Read(f)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				keys = append(keys, string(k))
			}
			logs, err := readLogList(logsFile)
			if err != nil {
				return err
			}
			var witnesses []note.Verifier
			var pol *policy.Policy
			if policyFile != "" {
				if pol, err = (&clientFlags{policy: policyFile}).loadPolicy(); err != nil {
					return err
				}
				for _, w := range pol.Witnesses {
					witnesses = append(witnesses, w.Verifier)
				}
			}
			seeds, err := parseMinimumIndexes(minIndexes, pol)
			if err != nil {
				return err
			}
			hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
			if tlsCA != "" {
				roots, err := certpool.LoadWithSystem(tlsCA)
				if err != nil {
					return fmt.Errorf("--tls-ca: %w", err)
				}
				hc.Transport = &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			m, err := mirror.New(ctx, mirror.Config{PrivateKeys: keys, Logs: logs, Witnesses: witnesses, Dir: dir, AWS: aws,
				Seeds: seeds, HTTPClient: hc, Logger: logger})
			if err != nil {
				return flagError(cmd, err)
			}
			defer m.Close()
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("--http %s: %w", addr, err)
			}
			return serveHTTP(ctx, logger, ln, m.Handler(), tlsCert, tlsKey,
				slog.String("mirror", m.Name()), slog.Int("logs", len(logs)))
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&keyFiles, "key", nil, "file holding a mirror cosigner private key (cairn keygen --witness); repeatable")
	f.StringVar(&logsFile, "logs", "", "log list (witness-network logs/v0 format) of the logs to mirror")
	f.StringVar(&policyFile, "policy", "", "tlog-policy whose witness lines are the cosigners whose cosignatures the mirror relays (verified)")
	f.StringVar(&storage, "storage", "posix:./data/mirror", "where the copies live: posix:DIR, or mysql+s3 (with --mysql-dsn and --s3-*)")
	registerMySQLS3(f, &aws, "the mirrored logs under <hex sha256(origin)>/")
	f.StringArrayVar(&minIndexes, "minimum-index", nil, "ORIGIN=N: mirror that log from index N on (rounded down to 256), reading the tree left of N from the log's URL in --policy; repeatable")
	f.StringVar(&tlsCA, "tls-ca", "", "PEM CA bundle (beside the system roots) for reading a --minimum-index log over HTTPS")
	f.StringVar(&addr, "http", "127.0.0.1:8281", "HTTP listen address")
	f.StringVar(&tlsCert, "tls-cert", "", "PEM certificate to serve HTTPS")
	f.StringVar(&tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	f.BoolVar(&plaintext, "insecure-plaintext", false, "serve plain HTTP (loopback tests and demos only)")
	f.StringVar(&logFormat, "log-format", "text", "log output: text or json")
	f.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	annotateField(f, "key", "Config.PrivateKeys")
	annotateField(f, "logs", "Config.Logs")
	annotateField(f, "policy", "Config.Witnesses")
	annotateField(f, "minimum-index", "Config.Seeds")
	annotateField(f, "storage", "Config.Dir")
	documentEnv(cmd)
	return cmd
}

func newMirrorPushCmd() *cobra.Command {
	var c clientFlags
	var mirrors []string
	var mirrorKeys []string
	cmd := &cobra.Command{
		Use:   "push --log URL --mirror URL --policy FILE",
		Short: "Copy a tlog-tiles log into a mirror, up to its latest checkpoint",
		Long: `Read any tlog-tiles log (Cairn's, Tessera's, ...) and push it to one or more
tlog-mirrors: add-checkpoint with a consistency proof, then add-entries from the
mirror's next entry, resuming after 202/409. Every hash sent is first verified
against the log's checkpoint (x/mod tlog). Use it to seed a new mirror or to
repair one; a running Cairn log pushes on its own (log serve --mirror).

The policy gives the log key; --mirror-key (a cosignature vkey) checks the
mirror's answer. Prints the size each mirror now cosigns.`,
		Example: `  # Against 'make run': push its log to its mirror (already current: prints its size)
  cairn mirror push --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt \
    --mirror https://127.0.0.1:8281 --mirror-key "$(cat data/keys/mirror-sa.vkey)"
  # Seed the second mirror of the serve example from the first
  cairn mirror push --log https://127.0.0.1:8281/$(printf %s localhost/cairn-dev | sha256sum | cut -c1-64) \
    --ca data/tls/ca.pem --policy data/policy.txt --mirror http://127.0.0.1:8282`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := c.loadPolicy()
			if err != nil {
				return err
			}
			if len(mirrors) == 0 {
				return errors.New("--mirror is required")
			}
			l, err := c.openLog(p)
			if err != nil {
				return err
			}
			var vs []note.Verifier
			for _, k := range mirrorKeys {
				v, err := fnote.NewVerifierForCosignatureV1(k)
				if err != nil {
					return fmt.Errorf("--mirror-key %q: %w", k, err)
				}
				vs = append(vs, v)
			}
			cp, err := l.ReadCheckpoint(cmd.Context())
			if err != nil {
				return c.explain(fmt.Errorf("fetching the checkpoint of %s: %w", c.log, err))
			}
			v, err := p.Verify(cp)
			if err != nil {
				return fmt.Errorf("the log's checkpoint: %w", err)
			}
			t, err := c.tlsConfig()
			if err != nil {
				return err
			}
			type result struct {
				Mirror  string  `json:"mirror"`
				Size    uint64  `json:"size"`
				Entries uint64  `json:"entries_sent"`
				Seconds float64 `json:"seconds"`
			}
			var out []result
			var text strings.Builder
			for _, u := range mirrors {
				m, err := client.NewMirror(u, vs, t, 0)
				if err != nil {
					return flagError(cmd, err)
				}
				start := time.Now()
				res, err := m.Push(cmd.Context(), l, v.Log.Verifier, cp)
				if err != nil {
					return err
				}
				r := result{Mirror: u, Size: res.Size, Entries: res.Entries, Seconds: time.Since(start).Seconds()}
				out = append(out, r)
				fmt.Fprintf(&text, "%s: cosigns size %d (%d entries sent in %.1fs)\n", u, r.Size, r.Entries, r.Seconds)
			}
			return c.emit(cmd.OutOrStdout(), out, text.String())
		},
	}
	c.register(cmd.Flags(), true, false, true)
	cmd.Flags().StringArrayVar(&mirrors, "mirror", nil, "a mirror's submission URL; repeatable")
	cmd.Flags().StringArrayVar(&mirrorKeys, "mirror-key", nil, "a mirror's cosignature vkey, to check its answer; repeatable")
	annotateField(cmd.Flags(), "mirror", "Mirror.URL")
	return cmd
}

func newMirrorEvidenceCmd() *cobra.Command {
	var storage, output string
	var aws mysqls3.Config
	cmd := &cobra.Command{
		Use:   "evidence --storage posix:DIR|mysql+s3",
		Short: "Print the inconsistent checkpoints this mirror refused",
		Example: `  cairn mirror evidence --storage posix:data/mirror-b --output json
  # On mysql+s3 (reads the bucket only; works beside the running mirror):
  cairn mirror evidence --storage mysql+s3 --mysql-dsn "$DSN" --s3-endpoint http://127.0.0.1:19000 \
    --s3-bucket mirror-b --s3-region us-east-1 --s3-path-style --s3-access-key-file s3.id --s3-secret-key-file s3.secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			var evs []mirror.Evidence
			var err error
			if dir, ok := strings.CutPrefix(storage, "posix:"); ok {
				if evs, err = mirror.ReadEvidence(dir); err != nil {
					return fmt.Errorf("--storage: %w", err)
				}
			} else if storage == "mysql+s3" {
				if evs, err = mirror.ReadEvidenceMySQLS3(cmd.Context(), aws); err != nil {
					return flagError(cmd, err)
				}
			} else {
				return fmt.Errorf("--storage %q: want posix:DIR or mysql+s3", storage)
			}
			if evs == nil {
				evs = []mirror.Evidence{}
			}
			rows := make([]evidenceRow, len(evs))
			for i, e := range evs {
				rows[i] = evidenceRow{e.Time, e.Origin, e.Reason, e.Old, len(e.Proof), "pending", e.Pending, e.Submitted}
			}
			return printEvidence(cmd.OutOrStdout(), output, "mirror", evs, rows)
		},
	}
	cmd.Flags().StringVar(&storage, "storage", "posix:./data/mirror", "the mirror's storage: posix:DIR or mysql+s3")
	cmd.Flags().StringVar(&output, "output", "text", "text or json")
	registerMySQLS3(cmd.Flags(), &aws, "the mirrored logs")
	documentEnv(cmd)
	return cmd
}

// parseMinimumIndexes turns --minimum-index ORIGIN=N flags into the
// mirror's seeds; the log's URL comes from its log line in the policy.
func parseMinimumIndexes(flags []string, pol *policy.Policy) (map[string]mirror.Seed, error) {
	seeds := map[string]mirror.Seed{}
	for _, f := range flags {
		origin, n, ok := strings.Cut(f, "=")
		idx, err := strconv.ParseUint(n, 10, 64)
		if !ok || origin == "" || err != nil {
			return nil, fmt.Errorf("--minimum-index %q: want ORIGIN=N (a decimal index)", f)
		}
		if pol == nil {
			return nil, fmt.Errorf("--minimum-index %s: needs --policy, whose log line gives the URL the tree left of %d is read from", origin, idx)
		}
		l, found := pol.LogFor(origin)
		if !found || l.URL == "" {
			return nil, fmt.Errorf("--minimum-index %s: the --policy has no log line with a URL for that origin", origin)
		}
		seeds[origin] = mirror.Seed{MinimumIndex: idx, URL: l.URL}
	}
	return seeds, nil
}
