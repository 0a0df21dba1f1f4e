package main

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cairnlog/cairn/internal/certpool"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// auditorCmds returns the client-side commands.
func auditorCmds() []*cobra.Command {
	return []*cobra.Command{newSubmitCmd(), newCheckpointCmd(), newVerifyCmd(), newGetCmd(), newAuditCmd(), newMonitorCmd()}
}

// clientFlags are the flags every client command shares.
type clientFlags struct {
	log, grpc, policy, output string
	ca, cert, key, tokenFile  string
	insecure                  bool
}

func (c *clientFlags) register(f *pflag.FlagSet, log, grpc, pol bool) {
	if log {
		f.StringVar(&c.log, "log", "", "the log's HTTP base URL (tlog-tiles), e.g. https://log.example.com")
	}
	if grpc {
		f.StringVar(&c.grpc, "grpc", "", "the log's gRPC endpoints, host:port[,host:port…], tried in order")
	}
	if pol {
		f.StringVar(&c.policy, "policy", "", "C2SP tlog-policy file: the trusted log key and witness quorum")
	}
	f.StringVar(&c.output, "output", "text", "output format: text or json")
	f.StringVar(&c.ca, "ca", "", "PEM CA bundle to trust for the log's TLS certificate (besides system roots)")
	f.StringVar(&c.cert, "cert", "", "PEM client certificate (mTLS)")
	f.StringVar(&c.key, "key", "", "PEM key of --cert")
	f.StringVar(&c.tokenFile, "token-file", "", "file holding a bearer token (or set $CAIRN_TOKEN)")
	f.BoolVar(&c.insecure, "insecure-plaintext", false, "talk to a gRPC endpoint without TLS (loopback demos only)")
}

func (c *clientFlags) loadPolicy() (*policy.Policy, error) {
	if c.policy == "" {
		return nil, errors.New("--policy is required: without a policy nothing is verified")
	}
	b, err := os.ReadFile(c.policy)
	if err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	p, err := policy.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("--policy %s: %w", c.policy, err)
	}
	return p, nil
}

func (c *clientFlags) tlsConfig() (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.ca != "" {
		pool, err := certpool.LoadWithSystem(c.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		t.RootCAs = pool
	}
	if c.cert != "" || c.key != "" {
		cert, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

func (c *clientFlags) token() (string, error) {
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(os.Getenv("CAIRN_TOKEN")), nil
}

func (c *clientFlags) openLog(p *policy.Policy) (*client.Log, error) {
	if c.log == "" {
		return nil, errors.New("--log is required (the log's HTTP base URL)")
	}
	t, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	return client.NewLog(c.log, p, client.HTTPOptions{TLS: t, Token: tok})
}

func (c *clientFlags) submitter() (*client.Submitter, error) {
	if c.grpc == "" {
		return nil, errors.New("--grpc is required (host:port[,host:port…])")
	}
	o := client.SubmitterOptions{}
	if !c.insecure {
		t, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		o.TLS = t
	}
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	o.Token = tok
	return client.NewSubmitter(strings.Split(c.grpc, ","), o)
}

// check maps a client error to the CLI's exit codes: verification failures exit 1.
func check(err error) error {
	if err != nil && errors.Is(err, client.ErrVerification) {
		return failedVerification(err)
	}
	return err
}

// emit prints v as JSON, or text as text.
func (c *clientFlags) emit(w io.Writer, v any, text string) error {
	switch c.output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "text":
		_, err := io.WriteString(w, text)
		return err
	default:
		return fmt.Errorf("--output %q: want text or json", c.output)
	}
}

// checkpointJSON is the JSON form of a verified checkpoint.
type checkpointJSON struct {
	Origin   string               `json:"origin"`
	Size     uint64               `json:"size"`
	Root     string               `json:"root"`
	Cosigned map[string]time.Time `json:"cosigned_by"`
	Note     string               `json:"note"`
}

func cpJSON(v *policy.Verified) checkpointJSON {
	return checkpointJSON{v.Checkpoint.Origin, v.Checkpoint.Size, base64.StdEncoding.EncodeToString(v.Checkpoint.Root[:]), v.Cosigned, string(v.Raw)}
}

func cpText(v *policy.Verified) string {
	s := fmt.Sprintf("origin   %s\nsize     %d\nroot     %s\n", v.Checkpoint.Origin, v.Checkpoint.Size, base64.StdEncoding.EncodeToString(v.Checkpoint.Root[:]))
	for w, t := range v.Cosigned {
		ts := "no timestamp"
		if !t.IsZero() {
			ts = t.UTC().Format(time.RFC3339)
		}
		s += fmt.Sprintf("witness  %s (cosigned %s)\n", w, ts)
	}
	return s
}

func newCheckpointCmd() *cobra.Command {
	var c clientFlags
	cmd := &cobra.Command{
		Use:     "checkpoint --log URL --policy FILE",
		Short:   "Fetch the log's checkpoint and verify it against the policy",
		Example: `  cairn checkpoint --log http://127.0.0.1:8080 --policy data/policy.txt`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			p, err := c.loadPolicy()
			if err != nil {
				return err
			}
			l, err := c.openLog(p)
			if err != nil {
				return err
			}
			v, err := l.Checkpoint(cmd.Context())
			if err != nil {
				return check(err)
			}
			return c.emit(cmd.OutOrStdout(), cpJSON(v), cpText(v))
		},
	}
	c.register(cmd.Flags(), true, false, true)
	documentEnv(cmd)
	return cmd
}

func newSubmitCmd() *cobra.Command {
	var c clientFlags
	var contentType, receiptOut, recordOut, key string
	cmd := &cobra.Command{
		Use:   "submit --grpc ADDR[,ADDR…] FILE|-",
		Short: "Append a record (a file or stdin) and print its index",
		Long: `Append one record over gRPC. Several endpoints fail over in order; a retry
reuses the record's timestamp and idempotency key, so it never becomes two records.
With --receipt it waits until a checkpoint that satisfies --policy covers the
record, verifies the receipt, and writes it (a C2SP tlog-proof).`,
		Example: `  echo '{"event":"login"}' | cairn submit --grpc 127.0.0.1:9090 --insecure-plaintext -
  cairn submit --grpc a:9090,b:9090 --ca ca.pem --token-file token --content-type application/json \
      --policy policy.txt --receipt r.tlog-proof --record-out r.leaf event.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			var payload []byte
			var err error
			if args[0] == "-" {
				payload, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
			} else {
				payload, err = os.ReadFile(args[0])
			}
			if err != nil {
				return fmt.Errorf("reading the record: %w", err)
			}
			var p *policy.Policy
			if receiptOut != "" {
				if p, err = c.loadPolicy(); err != nil {
					return err
				}
			}
			s, err := c.submitter()
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := s.Submit(cmd.Context(), client.Record{Payload: payload, ContentType: contentType, IdempotencyKey: key}, receiptOut != "")
			if err != nil {
				return err
			}
			if recordOut != "" {
				if err := os.WriteFile(recordOut, res.Leaf, 0o644); err != nil {
					return err
				}
			}
			out := map[string]any{"index": res.Index, "duplicate": res.Duplicate, "endpoint": res.Endpoint, "leaf_hash": hex.EncodeToString(leafHash(res.Leaf))}
			text := fmt.Sprintf("%d\n", res.Index)
			if receiptOut != "" {
				if _, err := client.VerifyReceipt(p, res.Leaf, res.Receipt); err != nil {
					return check(fmt.Errorf("the log's receipt does not verify: %w", err))
				}
				if err := os.WriteFile(receiptOut, res.Receipt, 0o644); err != nil {
					return err
				}
				out["receipt"] = receiptOut
			}
			return c.emit(cmd.OutOrStdout(), out, text)
		},
	}
	c.register(cmd.Flags(), false, true, true)
	cmd.Flags().StringVar(&contentType, "content-type", "", "the record's media type, e.g. application/json")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "reuse a key to make a resubmission resolve to the first index (default: random)")
	cmd.Flags().StringVar(&receiptOut, "receipt", "", "wait for a checkpoint satisfying --policy and write the receipt (.tlog-proof) here")
	cmd.Flags().StringVar(&recordOut, "record-out", "", "write the exact leaf bytes (for cairn verify receipt --record) here")
	documentEnv(cmd)
	return cmd
}

func newVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify a receipt offline, or inclusion and consistency against a live log",
	}
	cmd.AddCommand(newVerifyReceiptCmd(), newVerifyInclusionCmd(), newVerifyConsistencyCmd())
	return cmd
}

func newVerifyReceiptCmd() *cobra.Command {
	var c clientFlags
	var recordFile string
	cmd := &cobra.Command{
		Use:   "receipt --policy FILE --record LEAF RECEIPT",
		Short: "Verify a tlog-proof receipt offline: no network, only the policy",
		Long: `Verify a C2SP tlog-proof offline. --record is the exact leaf (what
'cairn get --raw' prints, or 'cairn submit --record-out' writes), so a tlog-proof
from any tlog-tiles log verifies, Cairn's or not.`,
		Example: `  cairn verify receipt --policy data/policy.txt --record alice.leaf alice.tlog-proof`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			p, err := c.loadPolicy()
			if err != nil {
				return err
			}
			if recordFile == "" {
				return errors.New("--record is required (the exact leaf bytes)")
			}
			leaf, err := os.ReadFile(recordFile)
			if err != nil {
				return fmt.Errorf("--record: %w", err)
			}
			rc, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("reading the receipt: %w", err)
			}
			vr, err := client.VerifyReceipt(p, leaf, rc)
			if err != nil {
				return check(err)
			}
			text := fmt.Sprintf("verified: record at index %d of %s\n%s", vr.Receipt.Index, vr.Checkpoint.Checkpoint.Origin, cpText(vr.Checkpoint))
			text += describeRecord(leaf)
			return c.emit(cmd.OutOrStdout(), map[string]any{"verified": true, "index": vr.Receipt.Index, "checkpoint": cpJSON(vr.Checkpoint), "record": recordJSON(leaf)}, text)
		},
	}
	c.register(cmd.Flags(), false, false, true)
	cmd.Flags().StringVar(&recordFile, "record", "", "file with the exact leaf bytes")
	documentEnv(cmd)
	return cmd
}

func newVerifyInclusionCmd() *cobra.Command {
	var c clientFlags
	var index uint64
	var recordFile string
	cmd := &cobra.Command{
		Use:   "inclusion --log URL --policy FILE --index N [--record LEAF]",
		Short: "Prove that a record is in the log's latest verified checkpoint",
		Example: `  cairn verify inclusion --log http://127.0.0.1:8080 --policy data/policy.txt --index 3
  cairn verify inclusion --log http://127.0.0.1:8080 --policy data/policy.txt --index 3 --record alice.leaf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			p, err := c.loadPolicy()
			if err != nil {
				return err
			}
			l, err := c.openLog(p)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			v, err := l.Checkpoint(ctx)
			if err != nil {
				return check(err)
			}
			if !cmd.Flags().Changed("index") {
				return errors.New("--index is required")
			}
			if index >= v.Checkpoint.Size {
				return check(fmt.Errorf("%w: index %d is not in the tree of size %d", client.ErrVerification, index, v.Checkpoint.Size))
			}
			var leaf []byte
			if recordFile != "" {
				if leaf, err = os.ReadFile(recordFile); err != nil {
					return fmt.Errorf("--record: %w", err)
				}
				err = l.VerifyInclusion(ctx, v, index, leafHash(leaf))
			} else {
				leaf, err = l.Entry(ctx, v, index)
			}
			if err != nil {
				return check(err)
			}
			return c.emit(cmd.OutOrStdout(), map[string]any{"verified": true, "index": index, "checkpoint": cpJSON(v)},
				fmt.Sprintf("verified: index %d (leaf hash %x) is in the tree of size %d\n", index, leafHash(leaf), v.Checkpoint.Size))
		},
	}
	c.register(cmd.Flags(), true, false, true)
	cmd.Flags().Uint64Var(&index, "index", 0, "the record's index")
	cmd.Flags().StringVar(&recordFile, "record", "", "the exact leaf bytes to prove (default: the leaf the log serves)")
	documentEnv(cmd)
	return cmd
}

func newVerifyConsistencyCmd() *cobra.Command {
	var c clientFlags
	var fromFile string
	cmd := &cobra.Command{
		Use:     "consistency --log URL --policy FILE --from CHECKPOINT",
		Short:   "Prove that the log's latest checkpoint extends an earlier one",
		Example: `  cairn verify consistency --log http://127.0.0.1:8080 --policy data/policy.txt --from old-checkpoint.txt`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			p, err := c.loadPolicy()
			if err != nil {
				return err
			}
			if fromFile == "" {
				return errors.New("--from is required (an earlier checkpoint)")
			}
			b, err := os.ReadFile(fromFile)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			old, err := p.Verify(b)
			if err != nil {
				return check(fmt.Errorf("--from: %w", err))
			}
			l, err := c.openLog(p)
			if err != nil {
				return err
			}
			v, err := l.Checkpoint(cmd.Context())
			if err != nil {
				return check(err)
			}
			if v.Checkpoint.Size < old.Checkpoint.Size {
				return check(fmt.Errorf("%w: the log serves size %d, smaller than the earlier %d", client.ErrVerification, v.Checkpoint.Size, old.Checkpoint.Size))
			}
			if err := l.VerifyConsistency(cmd.Context(), old.Checkpoint.Size, old.Checkpoint.Root[:], v); err != nil {
				return check(err)
			}
			return c.emit(cmd.OutOrStdout(), map[string]any{"verified": true, "from": cpJSON(old), "to": cpJSON(v)},
				fmt.Sprintf("verified: size %d extends size %d\n", v.Checkpoint.Size, old.Checkpoint.Size))
		},
	}
	c.register(cmd.Flags(), true, false, true)
	cmd.Flags().StringVar(&fromFile, "from", "", "an earlier checkpoint (signed note) of the same log")
	documentEnv(cmd)
	return cmd
}

func newGetCmd() *cobra.Command {
	var c clientFlags
	var raw bool
	cmd := &cobra.Command{
		Use:   "get --log URL --policy FILE INDEX",
		Short: "Print a record, verified to be in the log",
		Long: `Fetch record INDEX, prove it is in the latest checkpoint (which must satisfy
--policy), and print it decoded: submitter, time, content type, payload. --raw
prints the exact leaf bytes instead (what 'cairn verify receipt --record' takes).`,
		Example: `  cairn get --log http://127.0.0.1:8080 --policy data/policy.txt 0
  cairn get --log http://127.0.0.1:8080 --policy data/policy.txt --raw 0 > record.leaf`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			var index uint64
			if _, err := fmt.Sscan(args[0], &index); err != nil {
				return fmt.Errorf("INDEX %q is not a number", args[0])
			}
			p, err := c.loadPolicy()
			if err != nil {
				return err
			}
			l, err := c.openLog(p)
			if err != nil {
				return err
			}
			v, err := l.Checkpoint(cmd.Context())
			if err != nil {
				return check(err)
			}
			if index >= v.Checkpoint.Size {
				return fmt.Errorf("index %d is beyond the tree size %d", index, v.Checkpoint.Size)
			}
			leaf, err := l.Entry(cmd.Context(), v, index)
			if err != nil {
				return check(err)
			}
			if raw {
				_, err := cmd.OutOrStdout().Write(leaf)
				return err
			}
			j := recordJSON(leaf)
			j["index"] = index
			return c.emit(cmd.OutOrStdout(), j, fmt.Sprintf("index         %d\n", index)+describeRecord(leaf))
		},
	}
	c.register(cmd.Flags(), true, false, true)
	cmd.Flags().BoolVar(&raw, "raw", false, "print the exact leaf bytes")
	documentEnv(cmd)
	return cmd
}

func newAuditCmd() *cobra.Command {
	var c clientFlags
	var statePath string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "audit --log URL --policy FILE [--state FILE]",
		Short: "Replay the log and recompute every leaf, tile and the root",
		Long: `Fetch the latest checkpoint (verified against --policy), every entry bundle and
every hash tile; recompute each leaf hash, each tile and the root; report the first
disagreement with its index and path. With --state, the audit resumes from the last
verified tree and checks the new one extends it, then saves the new state.`,
		Example: `  cairn audit --log http://127.0.0.1:8080 --policy data/policy.txt
  cairn audit --log http://127.0.0.1:8080 --policy data/policy.txt --state audit.state --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			p, err := c.loadPolicy()
			if err != nil {
				return err
			}
			l, err := c.openLog(p)
			if err != nil {
				return err
			}
			var from *client.State
			if statePath != "" {
				if from, err = client.LoadState(statePath); err != nil {
					return err
				}
			}
			errw := cmd.ErrOrStderr()
			last := time.Now()
			start := time.Now()
			o := client.AuditOptions{}
			if !quiet {
				o.Progress = func(done, total uint64) {
					if time.Since(last) > 200*time.Millisecond || done == total {
						last = time.Now()
						fmt.Fprintf(errw, "\r%s %d/%d records, %.0f records/s", bar(done, total), done, total, float64(done)/time.Since(start).Seconds())
					}
				}
			}
			res, err := l.Audit(cmd.Context(), from, o)
			if !quiet && o.Progress != nil {
				fmt.Fprintln(errw)
			}
			if err != nil {
				return check(fmt.Errorf("audit FAILED: %w", err))
			}
			if statePath != "" {
				if err := res.State.Save(statePath); err != nil {
					return err
				}
			}
			rate := float64(res.Records) / res.Elapsed.Seconds()
			return c.emit(cmd.OutOrStdout(), map[string]any{"verified": true, "from": res.From, "records": res.Records, "seconds": res.Elapsed.Seconds(), "records_per_second": rate, "checkpoint": cpJSON(res.Checkpoint)},
				fmt.Sprintf("audit PASSED: %d records (from %d to %d) in %.2fs, %.0f records/s; every leaf, tile and the root agree with the checkpoint\n%s",
					res.Records, res.From, res.Checkpoint.Checkpoint.Size, res.Elapsed.Seconds(), rate, cpText(res.Checkpoint)))
		},
	}
	c.register(cmd.Flags(), true, false, true)
	cmd.Flags().StringVar(&statePath, "state", "", "state file: resume from it and save the new verified state")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "no progress bar")
	documentEnv(cmd)
	return cmd
}

func bar(done, total uint64) string {
	const width = 30
	n := width
	if total > 0 {
		n = int(done * width / total)
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(" ", width-n) + "]"
}

func newMonitorCmd() *cobra.Command {
	var c clientFlags
	var statePath string
	var interval time.Duration
	var once bool
	cmd := &cobra.Command{
		Use:   "monitor --log URL --policy FILE --state FILE [--interval D]",
		Short: "Follow a log and raise an alarm on any inconsistency or split view",
		Long: `Check the log every --interval: the checkpoint must satisfy --policy and be
consistent with the last verified one, kept in --state. On an alarm (a checkpoint
failing the policy, two roots for one size, a tree that does not extend the known
one) it prints ALARM and exits 1. Runs until stopped, or once with --once.`,
		Example: `  cairn monitor --log http://127.0.0.1:8080 --policy data/policy.txt --state monitor.state --interval 30s`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			if statePath == "" {
				return errors.New("--state is required")
			}
			p, err := c.loadPolicy()
			if err != nil {
				return err
			}
			l, err := c.openLog(p)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var alarm error
			ctx, cancel := signalContext(cmd)
			defer cancel()
			err = l.Monitor(ctx, statePath, interval, once, func(ev client.MonitorEvent) {
				switch {
				case ev.Err != nil && errors.Is(ev.Err, client.ErrVerification):
					alarm = ev.Err
					_ = c.emit(out, map[string]any{"time": ev.Time, "alarm": ev.Err.Error()}, fmt.Sprintf("%s ALARM: %v\n", ev.Time.Format(time.RFC3339), ev.Err))
					cancel()
				case ev.Err != nil:
					_ = c.emit(out, map[string]any{"time": ev.Time, "error": ev.Err.Error()}, fmt.Sprintf("%s could not check: %v\n", ev.Time.Format(time.RFC3339), ev.Err))
				default:
					_ = c.emit(out, map[string]any{"time": ev.Time, "ok": true, "advanced": ev.Advanced, "checkpoint": cpJSON(ev.Checkpoint)},
						fmt.Sprintf("%s ok: size %d, cosigned by %d witnesses\n", ev.Time.Format(time.RFC3339), ev.Checkpoint.Checkpoint.Size, len(ev.Checkpoint.Cosigned)))
				}
			})
			if alarm != nil {
				return failedVerification(alarm)
			}
			return err
		},
	}
	c.register(cmd.Flags(), true, false, true)
	cmd.Flags().StringVar(&statePath, "state", "", "state file holding the last verified checkpoint")
	cmd.Flags().DurationVar(&interval, "interval", 30*time.Second, "time between checks")
	cmd.Flags().BoolVar(&once, "once", false, "check once and exit")
	documentEnv(cmd)
	return cmd
}
