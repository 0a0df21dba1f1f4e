package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cairnlog/cairn/internal/certpool"
	"github.com/cairnlog/cairn/internal/keyfile"
	cairnlog "github.com/cairnlog/cairn/log"
	"github.com/cairnlog/cairn/migrate"
	"github.com/spf13/cobra"
	fnote "github.com/transparency-dev/formats/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Import an existing log into Cairn storage, every hash unchanged",
	}
	cmd.AddCommand(newMigrateTrillianCmd())
	return cmd
}

func newMigrateTrillianCmd() *cobra.Command {
	var (
		cfg                           migrate.Config
		addr, caFile, keyFile, origin string
		plaintext                     bool
		logFormat, lv                 string
	)
	cmd := &cobra.Command{
		Use:   "trillian --trillian ADDR --tree-id N --origin ORIGIN --key FILE --storage posix:DIR|mysql+s3 [flags]",
		Short: "Copy a Trillian v1 log into Cairn storage and prove the roots match",
		Long: `Copy every leaf of a Trillian v1 log (tree --tree-id on the log server at
--trillian) into the storage a Cairn log will serve, through Tessera's migration
support, and check that the root Tessera computes equals Trillian's latest log root.

Leaves are read with Trillian's API (GetLatestSignedLogRoot, GetLeavesByRange); each
leaf value must hash (RFC 6962) to the leaf hash Trillian holds for it. A mismatch,
or a root that differs, stops the migration with the first leaf index where the
trees diverge and exit status 1: the target is then not fit to serve.

Rerun it to catch up with a Trillian log that keeps taking writes: each run copies
only what the target lacks, up to Trillian's latest root. A run that was killed
(kill -9 included) resumes where the target's integrated tree ends; nothing integrated
is copied again (bundles copied but not yet integrated are rewritten, byte for byte).
Migrated leaves are Trillian's raw leaf values, not Cairn records: each pass records
the migration boundary beside the tiles, which the log serves at /migration-boundary
and appends as its first own record; cairn get and audit show the legacy leaves.

Cut-over (docs/migrate-trillian.md): stop Trillian's writers, run this once more,
then 'cairn log serve' with the same --origin, --key and --storage: its first
checkpoint covers exactly Trillian's last root, and the log appends from there.
Nothing may serve from --storage while a migration runs.`,
		Example: `  # Assumes a Trillian log server on 127.0.0.1:8090 with tree 1234 (see
  # docs/migrate-trillian.md), and a key made with cairn keygen.
  cairn keygen --name example.com/log --out data/example
  cairn migrate trillian --trillian 127.0.0.1:8090 --trillian-plaintext --tree-id 1234 \
    --origin example.com/log --key data/example.key --storage posix:./data/migrated
  # Then serve it (a second log beside make run's):
  cairn log serve --origin example.com/log --key data/example.key --storage posix:./data/migrated \
    --http 127.0.0.1:8091 --grpc 127.0.0.1:9096 --tls-cert data/tls/log.pem --tls-key data/tls/log.key`,
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
			if addr == "" {
				return fmt.Errorf("--trillian is required (the Trillian log server's gRPC address)")
			}
			// The key is checked now so that the log served from this
			// storage later signs with the origin the migration was for.
			if keyFile == "" {
				return fmt.Errorf("--key is required: the key 'cairn log serve' will sign the migrated log's checkpoints with")
			}
			key, err := keyfile.Read(keyFile)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			s, _, err := fnote.NewEd25519SignerVerifier(strings.TrimSpace(string(key)))
			if err != nil {
				return fmt.Errorf("--key: not an Ed25519 signed-note private key: %w", err)
			}
			if origin != s.Name() {
				return fmt.Errorf("--origin %q does not match the key name %q (tlog-checkpoint: the origin is the key's name)", origin, s.Name())
			}
			creds := insecure.NewCredentials()
			if !plaintext {
				tc := &tls.Config{MinVersion: tls.VersionTLS12}
				if caFile != "" {
					if tc.RootCAs, err = certpool.LoadWithSystem(caFile); err != nil {
						return fmt.Errorf("--trillian-ca: %w", err)
					}
				}
				creds = credentials.NewTLS(tc)
			}
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxTrillianMessage)))
			if err != nil {
				return fmt.Errorf("--trillian %s: %w", addr, err)
			}
			defer conn.Close()
			cfg.Trillian = conn
			syscall.Umask(0o077)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := migrate.Trillian(ctx, cfg)
			if err != nil {
				return flagError(cmd, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "migrated tree %d: size %d, root %x equals Trillian's (this pass took %s)\n", cfg.TreeID, res.Size, res.Root, res.Elapsed.Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "trillian", "", "the Trillian log server's gRPC address, host:port")
	f.BoolVar(&plaintext, "trillian-plaintext", false, "connect to --trillian without TLS (a loopback or otherwise private network)")
	f.StringVar(&caFile, "trillian-ca", "", "PEM CA bundle trusted for --trillian's TLS certificate, besides the system roots")
	f.Int64Var(&cfg.TreeID, "tree-id", 0, "the Trillian tree to migrate")
	f.StringVar(&origin, "origin", "", "the Cairn log's checkpoint origin; must equal the key name")
	f.StringVar(&keyFile, "key", "", "the Cairn log's Ed25519 private key (cairn keygen), the one 'cairn log serve' will use; must be mode 0600")
	f.UintVar(&cfg.Workers, "batch", migrate.DefaultWorkers, "entry bundles (256 leaves each) copied at once; Trillian is read four bundles per GetLeavesByRange call")
	f.StringVar(&cfg.Target.Storage, "storage", cairnlog.DefaultStorage, "target storage: posix:DIR, or mysql+s3 (the flags below)")
	registerMySQLS3(f, &cfg.Target.AWS, "tiles and bundles")
	f.StringVar(&logFormat, "log-format", "text", "log output: text or json")
	f.StringVar(&lv, "log-level", "info", "log level: debug, info, warn, error")
	for flag, field := range map[string]string{
		"trillian": "Config.Trillian", "tree-id": "Config.TreeID", "batch": "Config.Workers",
		"storage": "Config.Storage",
	} {
		annotateField(f, flag, field)
	}
	documentEnv(cmd)
	return cmd
}

// maxTrillianMessage bounds one answer from Trillian: a GetLeavesByRange of
// four entry bundles of the largest leaves (4 × 256 × 64 KiB) fits.
const maxTrillianMessage = 80 << 20
