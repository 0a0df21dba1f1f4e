package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/keyfile"
	cairnlog "github.com/cairnlog/cairn/log"
	"github.com/spf13/cobra"
)

func newLogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Run the log",
	}
	cmd.AddCommand(newLogServeCmd(), newLogHoldCmd())
	return cmd
}

func newLogServeCmd() *cobra.Command {
	var (
		cfg                                cairnlog.Config
		keyFile, policyFile, logFormat, lv string
		retentionFile                      string
		mirrorURLs, mirrorKeys             []string
		memoryLimitMiB                     int64
	)
	cmd := &cobra.Command{
		Use:   "serve --origin ORIGIN --key FILE [flags]",
		Short: "Serve a log: gRPC appends, POST /add, tlog-tiles reads",
		Long: `Serve a Cairn log on Tessera.

Writes: gRPC cairn.v1.Log (Append, AppendStream) and HTTP POST /add (body = payload,
answer = decimal index). Reads: tlog-tiles at /checkpoint, /tile/L/N[.p/W],
/tile/entries/N[.p/W]; gRPC proofs and receipts. Health at /healthz and /readyz,
Prometheus metrics at /metrics (with --access: the admin role only).

The origin must equal the key's name. With --witness-policy (a C2SP tlog-policy)
a checkpoint is published only once the witness quorum cosigned it.

Files: the key files (--key, --tls-key, --s3-secret-key-file) must be readable
by this user only (chmod 600), or the log refuses to start. Everything the log
creates is owner-only: it runs with umask 0077, and a posix: storage directory
is created 0700 (with --read-access authenticated, one other users can enter is
refused). --tls-client-ca needs --access, which names the certificate principals.

With --retention the log expires records on the policy's schedule (C2SP tlog-tiles
Pruning): it moves its minimum index (GET /minimum-index) forward at entry-bundle
boundaries, answers 410 Gone for bundles below it while hash tiles and proofs stay
served, and archives (then archive) and deletes them after the grace period. Legal
holds (cairn log hold) keep records from it. See docs/retention.md.

SIGHUP reloads --access; if the new file is broken the previous one stays in
force and /readyz answers 503 until a reload succeeds. SIGINT/SIGTERM drain:
stop accepting, integrate what was acknowledged, publish a final checkpoint,
exit 0, within one minute. Every flag can also be set with its CAIRN_* variable.`,
		Example: `  # These assume 'make run' is running (it holds 8080/9090 and made data/tls and
  # data/access.txt); each starts a second log of its own beside it.
  cairn keygen --name example.com/log --out data/example
  cairn log serve --origin example.com/log --key data/example.key --storage posix:./data/example \
    --http 127.0.0.1:8090 --grpc 127.0.0.1:9095 --tls-cert data/tls/log.pem --tls-key data/tls/log.key
  # The same from the environment, authenticated: tokens or certificates from make run's
  # access file, contents readable with the read role only.
  CAIRN_ORIGIN=example.com/log CAIRN_KEY=data/example.key CAIRN_STORAGE=posix:./data/example \
    cairn log serve --http 127.0.0.1:8090 --grpc 127.0.0.1:9095 \
    --tls-cert data/tls/log.pem --tls-key data/tls/log.key --tls-client-ca data/tls/ca.pem \
    --access data/access.txt --read-access authenticated
  # Its explorer is at https://127.0.0.1:8090/ui/ (docs/explorer.md). Assumes a
  # search index (cairn index serve, docs/search.md) on the same origin behind a proxy:
  cairn log serve --origin example.com/log --key data/example.key --storage posix:./data/example \
    --http 127.0.0.1:8090 --grpc 127.0.0.1:9095 --tls-cert data/tls/log.pem --tls-key data/tls/log.key \
    --index-url https://audit.example/index/
  # Assumes a MySQL-compatible database and an S3-compatible store of your own
  # (make run-ha starts both; docs/deployment.md):
  CAIRN_MYSQL_DSN='cairn:PW@tcp(127.0.0.1:3306)/cairn' cairn log serve --origin example.com/log \
    --key data/example.key --storage mysql+s3 --s3-endpoint http://127.0.0.1:9000 \
    --s3-bucket cairn --s3-region us-east-1 --s3-path-style \
    --s3-access-key-file s3.id --s3-secret-key-file s3.secret \
    --tls-cert data/tls/log.pem --tls-key data/tls/log.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logFormat, lv)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			if keyFile == "" {
				return fmt.Errorf("--key is required (create one with: cairn keygen --name %s --out PREFIX)", orDefault(cfg.Origin, "ORIGIN"))
			}
			key, err := keyfile.Read(keyFile)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			cfg.PrivateKey = string(key)
			if policyFile != "" {
				if cfg.WitnessPolicy, err = os.ReadFile(policyFile); err != nil {
					return fmt.Errorf("--witness-policy: %w", err)
				}
			}
			if retentionFile != "" {
				if cfg.Retention, err = os.ReadFile(retentionFile); err != nil {
					return fmt.Errorf("--retention: %w", err)
				}
				if len(cfg.Retention) == 0 {
					return fmt.Errorf("--retention: %s is empty (a policy needs keep and then lines; without --retention nothing is pruned)", retentionFile)
				}
			}
			if cfg.Mirrors, err = mirrorTargets(mirrorURLs, mirrorKeys, cfg.WitnessPolicy); err != nil {
				return err
			}
			// Owner-only files: Tessera's POSIX driver creates tiles and
			// bundles 0644 in 0755 directories and takes no mode option, so
			// the umask, which is process-wide and therefore set here rather
			// than in the library, is what keeps them private.
			syscall.Umask(0o077)
			// The Go runtime's soft memory limit is process-wide too.
			// An operator's $GOMEMLIMIT stands unless the flag is given.
			if !cmd.Flags().Changed("memory-limit-mib") && os.Getenv("GOMEMLIMIT") != "" {
				memoryLimitMiB = 0
			}
			if err := setMemoryLimit(memoryLimitMiB, logger); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			l, err := cairnlog.New(ctx, cfg)
			if err != nil {
				return flagError(cmd, err)
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					_ = l.ReloadAccess() // logs its outcome; /readyz and metrics show a failure
				}
			}()
			return flagError(cmd, l.Run(ctx))
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Origin, "origin", "", "checkpoint origin; must equal the key name")
	f.StringVar(&keyFile, "key", "", "file holding the log's Ed25519 private key (cairn keygen); must be mode 0600")
	f.StringVar(&cfg.Storage, "storage", cairnlog.DefaultStorage, "storage driver: posix:DIR, or mysql+s3 (several frontends on one MySQL-compatible database and one S3-compatible bucket)")
	registerMySQLS3(f, &cfg.AWS, "checkpoints, tiles and bundles")
	f.DurationVar(&cfg.GCInterval, "gc-interval", cairnlog.DefaultGCInterval, "how often obsolete partial tiles and entry bundles are deleted")
	f.StringVar(&cfg.HTTPAddr, "http", cairnlog.DefaultHTTPAddr, "HTTP listen address (tlog-tiles, /add, health, metrics)")
	f.StringVar(&cfg.GRPCAddr, "grpc", cairnlog.DefaultGRPCAddr, "gRPC listen address (cairn.v1.Log)")
	f.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", cairnlog.DefaultCheckpointInterval, "how often a new checkpoint may be published (≥100ms; ≥1s with mysql+s3)")
	f.DurationVar(&cfg.CheckpointRepublishInterval, "checkpoint-republish-interval", cairnlog.DefaultCheckpointRepublishInterval, "how often an unchanged tree's checkpoint is published again, freshly witnessed (keeps witness timestamps recent and lets a lagging witness catch up on an idle log)")
	f.UintVar(&cfg.BatchMaxSize, "batch-max-size", cairnlog.DefaultBatchMaxSize, "largest sequencing batch, in records")
	f.DurationVar(&cfg.BatchMaxAge, "batch-max-age", cairnlog.DefaultBatchMaxAge, "longest a record waits for its batch to fill")
	f.UintVar(&cfg.PushbackMaxOutstanding, "pushback-max-outstanding", cairnlog.DefaultPushbackMaxOutstanding, "sequenced-but-unintegrated records before appends get pushback (429/ResourceExhausted)")
	f.IntVar(&cfg.MaxRecordBytes, "max-record-bytes", cairnlog.DefaultMaxRecordBytes, "largest accepted record payload in bytes")
	f.IntVar(&cfg.MaxBatchRecords, "max-batch-records", cairnlog.DefaultMaxBatchRecords, "most records in one AppendBatch or batched POST /add")
	f.IntVar(&cfg.MaxBatchBytes, "max-batch-bytes", cairnlog.DefaultMaxBatchBytes, "largest AppendBatch message or batched POST /add body in bytes (also the gRPC receive limit)")
	f.IntVar(&cfg.DedupCacheEntries, "dedup-cache-entries", cairnlog.DefaultDedupCacheEntries, "records in Tessera's in-memory dedup cache (~550 B each, ~70 MB at the default); the persistent antispam index may trail the tree by half of it before appends get pushback")
	f.IntVar(&cfg.AntispamMemoryMiB, "antispam-memory-mib", cairnlog.DefaultAntispamMemoryMiB, "memory of the posix driver's persistent antispam index in MiB (a quarter Pebble's memtables, a quarter the identity filter before it, half its block cache)")
	f.StringVar(&cfg.DebugAddr, "debug-addr", "", "serve Go profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060; off by default, plain HTTP, keep it on loopback")
	f.DurationVar(&cfg.MaxClockSkew, "max-clock-skew", cairnlog.DefaultMaxClockSkew, "largest accepted distance between a submitter's timestamp and the log's clock")
	f.StringVar(&policyFile, "witness-policy", "", "C2SP tlog-policy file: witnesses and the quorum each checkpoint needs")
	f.DurationVar(&cfg.WitnessTimeout, "witness-timeout", cairnlog.DefaultWitnessTimeout, "how long publishing waits for the witness quorum")
	f.StringVar(&cfg.AccessFile, "access", "", "access file of tokens and certificate principals (cairn access); reloaded on SIGHUP; must not be writable by others. Without it every caller is anonymous with every role")
	f.StringVar(&cfg.ReadAccess, "read-access", cairnlog.ReadPublic, "who may read record contents (entry bundles, GetEntries, receipts): public or authenticated (read role); checkpoints and hash tiles stay public")
	f.Float64Var(&cfg.RateLimit, "rate-limit", 0, "per-principal append rate in records/s (0 = unlimited); over it: 429/ResourceExhausted")
	f.IntVar(&cfg.RateBurst, "rate-burst", 0, "per-principal burst above --rate-limit (default: one second's worth)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate for both listeners")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key for --tls-cert; must be mode 0600")
	f.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "PEM CA bundle that signs client certificates (mTLS writers); needs --access")
	f.StringVar(&cfg.TLSCA, "tls-ca", "", "PEM CA bundle trusted for the log's outgoing connections (witnesses), besides the system roots")
	f.StringVar(&cfg.KEKFile, "kek-file", "", "key-encryption key file (cairn keygen --kek) wrapping the data keys of records naming data subjects; must be mode 0600. Without it such records are refused, and a log whose key store holds keys does not start")
	f.BoolVar(&cfg.InsecurePlaintext, "insecure-plaintext", false, "serve without TLS (tokens and records in clear): for loopback tests only")
	f.StringVar(&retentionFile, "retention", "", "retention policy file (docs/retention.md): keep DURATION, grace DURATION, then purge | then archive posix:DIR|s3://BUCKET/PREFIX. Without it nothing is ever pruned")
	f.DurationVar(&cfg.RetentionInterval, "retention-interval", cairnlog.DefaultRetentionInterval, "how often the retention policy is evaluated")
	f.Int64Var(&memoryLimitMiB, "memory-limit-mib", DefaultMemoryLimitMiB, "the Go runtime's soft memory limit in MiB: the collector returns memory before the heap doubles (0: the runtime's default, or $GOMEMLIMIT)")
	f.StringVar(&logFormat, "log-format", "text", "log output: text or json")
	f.StringVar(&lv, "log-level", "info", "log level: debug, info, warn, error")
	for flag, field := range map[string]string{
		"origin": "Config.Origin", "key": "Config.PrivateKey", "storage": "Config.Storage",
		"gc-interval": "Config.GCInterval", "http": "Config.HTTPAddr", "grpc": "Config.GRPCAddr",
		"checkpoint-interval": "Config.CheckpointInterval", "checkpoint-republish-interval": "Config.CheckpointRepublishInterval",
		"batch-max-size": "Config.BatchMaxSize", "batch-max-age": "Config.BatchMaxAge",
		"pushback-max-outstanding": "Config.PushbackMaxOutstanding", "max-record-bytes": "Config.MaxRecordBytes",
		"max-clock-skew": "Config.MaxClockSkew", "witness-policy": "Config.WitnessPolicy", "witness-timeout": "Config.WitnessTimeout",
		"access": "Config.AccessFile", "read-access": "Config.ReadAccess", "rate-limit": "Config.RateLimit", "rate-burst": "Config.RateBurst",
		"tls-cert": "Config.TLSCert", "tls-key": "Config.TLSKey", "tls-client-ca": "Config.TLSClientCA", "tls-ca": "Config.TLSCA",
		"insecure-plaintext": "Config.InsecurePlaintext", "kek-file": "Config.KEKFile",
		"retention": "Config.Retention", "retention-interval": "Config.RetentionInterval",
		"max-batch-records": "Config.MaxBatchRecords", "max-batch-bytes": "Config.MaxBatchBytes",
		"dedup-cache-entries": "Config.DedupCacheEntries", "debug-addr": "Config.DebugAddr",
		"antispam-memory-mib": "Config.AntispamMemoryMiB",
	} {
		annotateField(f, flag, field)
	}
	f.StringArrayVar(&mirrorURLs, "mirror", nil, "a tlog-mirror's submission URL to push each published checkpoint and its entries to; repeatable (docs/mirror.md)")
	f.StringArrayVar(&mirrorKeys, "mirror-key", nil, "the cosignature vkey of the --mirror at the same position (default: the --witness-policy witness with that URL)")
	annotateField(f, "mirror", "Config.Mirrors")
	f.BoolVar(&cfg.DisableUI, "disable-ui", false, "do not serve the explorer web page at /ui/ (docs/explorer.md)")
	f.StringVar(&cfg.IndexURL, "index-url", "", "the search index's base URL (cairn index serve): the explorer at /ui/ shows search and history pages querying it")
	annotateField(f, "disable-ui", "Config.DisableUI")
	annotateField(f, "index-url", "Config.IndexURL")
	documentEnv(cmd)
	return cmd
}

// mirrorTargets pairs --mirror URLs with their keys: --mirror-key by
// position, else the witness-policy line with the same URL.
func mirrorTargets(urls, keys []string, witnessPolicy []byte) ([]cairnlog.MirrorTarget, error) {
	if len(keys) > len(urls) {
		return nil, fmt.Errorf("--mirror-key given %d times, --mirror only %d", len(keys), len(urls))
	}
	var byURL map[string]string
	if len(witnessPolicy) > 0 {
		p, err := policy.Parse(witnessPolicy)
		if err != nil {
			return nil, fmt.Errorf("--witness-policy: %w", err)
		}
		byURL = map[string]string{}
		for _, w := range p.Witnesses {
			byURL[strings.TrimSuffix(w.URL, "/")] = w.VKey
		}
	}
	var out []cairnlog.MirrorTarget
	for i, u := range urls {
		t := cairnlog.MirrorTarget{URL: u, VKey: byURL[strings.TrimSuffix(u, "/")]}
		if i < len(keys) {
			t.VKey = keys[i]
		}
		out = append(out, t)
	}
	return out, nil
}

// newLogger builds the one slog.Logger a command passes down.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
