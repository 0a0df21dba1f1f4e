package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/internal/archive"
	"github.com/cairnlog/cairn/internal/keyfile"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// archiveFlags name a retention archive for cairn audit.
type archiveFlags struct {
	spec                         string
	endpoint, region             string
	pathStyle                    bool
	accessKeyFile, secretKeyFile string
}

func (a *archiveFlags) register(f *pflag.FlagSet) {
	f.StringVar(&a.spec, "archive", "", "the log's retention archive, posix:DIR or s3://BUCKET/PREFIX: verify the archived bundles below the minimum index")
	f.StringVar(&a.endpoint, "archive-s3-endpoint", "", "s3:// archive: object store URL, e.g. http://127.0.0.1:9000 (empty: AWS S3)")
	f.StringVar(&a.region, "archive-s3-region", "", "s3:// archive: region, e.g. us-east-1")
	f.BoolVar(&a.pathStyle, "archive-s3-path-style", false, "s3:// archive: path-style bucket addressing (MinIO)")
	f.StringVar(&a.accessKeyFile, "archive-s3-access-key-file", "", "s3:// archive: file holding the access key ID")
	f.StringVar(&a.secretKeyFile, "archive-s3-secret-key-file", "", "s3:// archive: file holding the secret access key; must be mode 0600")
}

// open opens --archive; nil without it.
func (a *archiveFlags) open() (archive.Store, error) {
	if a.spec == "" {
		return nil, nil
	}
	var s3o *archive.S3Options
	if strings.HasPrefix(a.spec, "s3://") {
		if a.region == "" || a.accessKeyFile == "" || a.secretKeyFile == "" {
			return nil, errors.New("--archive s3://…: needs --archive-s3-region, --archive-s3-access-key-file and --archive-s3-secret-key-file")
		}
		ak, err := os.ReadFile(a.accessKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--archive-s3-access-key-file: %w", err)
		}
		sk, err := keyfile.Read(a.secretKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--archive-s3-secret-key-file: %w", err)
		}
		s3o = &archive.S3Options{Endpoint: a.endpoint, Region: a.region, PathStyle: a.pathStyle,
			AccessKey: strings.TrimSpace(string(ak)), SecretKey: strings.TrimSpace(string(sk))}
	}
	st, err := archive.Open(a.spec, s3o)
	if err != nil {
		return nil, fmt.Errorf("--archive: %w", err)
	}
	return st, nil
}

// prunedText is the audit's line about the pruned range, if any.
func prunedText(res *client.AuditResult) string {
	if res.MinimumIndex == 0 {
		return ""
	}
	return fmt.Sprintf("pruned: records 0-%d are below the minimum index %d (their leaf hashes verified in the tree; %d of their bundles verified in the archive)\n",
		res.MinimumIndex-1, res.MinimumIndex, res.ArchivedBundles)
}

func newLogHoldCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hold",
		Short: "Place, release and list legal holds (admin role)",
		Long: `A legal hold keeps records from being pruned by the log's retention policy: an
index range [--from, --to), every record of a --principal, or every record naming
a data --subject (which also refuses the subject's erasure). Placing and releasing
a hold is itself appended to the log as an audit record (docs/retention.md).
Releasing a hold prunes nothing at once; the next policy evaluation does.
These commands need the admin role when the log has an access file.`,
	}
	cmd.AddCommand(newHoldAddCmd(), newHoldReleaseCmd(), newHoldListCmd())
	return cmd
}

func newHoldAddCmd() *cobra.Command {
	var c clientFlags
	var from, to uint64
	var principal, subject, reason string
	cmd := &cobra.Command{
		Use:   "add --log URL (--from N --to M | --principal NAME | --subject ID) --reason TEXT",
		Short: "Hold an index range, a principal's or a data subject's records against pruning",
		Example: `  # After 'make run', with its admin token (data/admin.token):
  cairn log hold add --log https://127.0.0.1:8080 --ca data/tls/ca.pem --token-file data/admin.token \
    --from 0 --to 100 --reason "case 2026-17"
  cairn log hold add --log https://127.0.0.1:8080 --ca data/tls/ca.pem --token-file data/admin.token \
    --principal demo-writer --reason "litigation hold"
  cairn log hold add --log https://127.0.0.1:8080 --ca data/tls/ca.pem --token-file data/admin.token \
    --subject customer-4711 --reason "regulator inquiry 88"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			if reason == "" {
				return errors.New("--reason is required")
			}
			kinds := 0
			for _, given := range []bool{to != 0 || from != 0, principal != "", subject != ""} {
				if given {
					kinds++
				}
			}
			if kinds != 1 {
				return errors.New("give exactly one of --from/--to (an index range), --principal or --subject")
			}
			l, err := c.openLog(nil)
			if err != nil {
				return err
			}
			var h client.Hold
			if subject != "" {
				h, err = l.AddSubjectHold(cmd.Context(), subject, reason)
			} else {
				h, err = l.AddHold(cmd.Context(), from, to, principal, reason)
			}
			if err != nil {
				return c.explain(err)
			}
			return c.emit(cmd.OutOrStdout(), h, holdText(h))
		},
	}
	c.register(cmd.Flags(), true, false, false)
	cmd.Flags().Uint64Var(&from, "from", 0, "first held index")
	cmd.Flags().Uint64Var(&to, "to", 0, "end of the held range (exclusive)")
	cmd.Flags().StringVar(&principal, "principal", "", "hold every record this principal submitted")
	cmd.Flags().StringVar(&subject, "subject", "", "hold every record naming this data subject (needs the log's --kek-file); refuses its erasure")
	cmd.Flags().StringVar(&reason, "reason", "", "why (logged with the hold)")
	documentEnv(cmd)
	return cmd
}

func newHoldReleaseCmd() *cobra.Command {
	var c clientFlags
	var reason string
	cmd := &cobra.Command{
		Use:   "release --log URL --reason TEXT ID",
		Short: "Release a hold (nothing is pruned until the next evaluation)",
		Example: `  # With make run's admin token (see 'cairn log hold add --help'); ID from 'cairn log hold list':
  cairn log hold release --log https://127.0.0.1:8080 --ca data/tls/ca.pem --token-file data/admin.token \
    --reason "case closed" ID`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			if reason == "" {
				return errors.New("--reason is required")
			}
			l, err := c.openLog(nil)
			if err != nil {
				return err
			}
			h, err := l.ReleaseHold(cmd.Context(), args[0], reason)
			if err != nil {
				return c.explain(err)
			}
			return c.emit(cmd.OutOrStdout(), h, "released "+holdText(h))
		},
	}
	c.register(cmd.Flags(), true, false, false)
	cmd.Flags().StringVar(&reason, "reason", "", "why (logged with the release)")
	documentEnv(cmd)
	return cmd
}

func newHoldListCmd() *cobra.Command {
	var c clientFlags
	cmd := &cobra.Command{
		Use:   "list --log URL",
		Short: "List the holds in force and the minimum index",
		Example: `  # With make run's admin token (see 'cairn log hold add --help'):
  cairn log hold list --log https://127.0.0.1:8080 --ca data/tls/ca.pem --token-file data/admin.token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			l, err := c.openLog(nil)
			if err != nil {
				return err
			}
			m, holds, err := l.Holds(cmd.Context())
			if err != nil {
				return c.explain(err)
			}
			text := fmt.Sprintf("minimum index %d\n", m)
			for _, h := range holds {
				text += holdText(h)
			}
			return c.emit(cmd.OutOrStdout(), struct {
				MinimumIndex uint64        `json:"minimum_index"`
				Holds        []client.Hold `json:"holds"`
			}{m, append([]client.Hold{}, holds...)}, text)
		},
	}
	c.register(cmd.Flags(), true, false, false)
	documentEnv(cmd)
	return cmd
}

func holdText(h client.Hold) string {
	what := fmt.Sprintf("records %d-%d", h.From, h.To-1)
	switch {
	case h.Principal != "":
		what = "principal " + h.Principal
	case h.SubjectHash != "":
		what = "data subject " + h.SubjectHash
	}
	return fmt.Sprintf("hold %s: %s, by %s at %s: %s\n", h.ID, what, h.By, h.Created.Format("2006-01-02T15:04:05Z07:00"), h.Reason)
}
