package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/internal/certpool"
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
	// disableCompression: ask for bundles without gzip (audit only).
	disableCompression bool
}

func (c *clientFlags) register(f *pflag.FlagSet, log, grpc, pol bool) {
	if log {
		f.StringVar(&c.log, "log", "", "the log's HTTP base URL (tlog-tiles), e.g. https://log.example.com; several URLs (the log and its mirrors, each mirror URL ending in /<hex sha256(origin)>) are tried in order: URL[,URL…]")
		annotateField(f, "log", "Log.URL")
	}
	if grpc {
		f.StringVar(&c.grpc, "grpc", "", "the log's gRPC endpoints, host:port[,host:port…], tried in order")
		annotateField(f, "grpc", "endpoints")
	}
	if pol {
		f.StringVar(&c.policy, "policy", "", "C2SP tlog-policy file: the trusted log key and witness quorum")
	}
	f.StringVar(&c.output, "output", "text", "output format: text or json")
	f.StringVar(&c.ca, "ca", "", "PEM CA bundle to trust for the log's TLS certificate (besides system roots)")
	f.StringVar(&c.cert, "cert", "", "PEM client certificate (mTLS)")
	f.StringVar(&c.key, "key", "", "PEM key of --cert (no environment variable: $CAIRN_KEY is a server's private key file)")
	noEnv(f, "key")
	f.StringVar(&c.tokenFile, "token-file", "", "file holding a bearer token (or set $CAIRN_TOKEN)")
	f.BoolVar(&c.insecure, "insecure-plaintext", false, "talk to a gRPC endpoint without TLS (loopback demos only)")
	annotateField(f, "token-file", "SubmitterOptions.Token")
	annotateField(f, "token-file", "HTTPOptions.Token")
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
	return client.NewLogFromURLs(strings.Split(c.log, ","), p, client.HTTPOptions{TLS: t, Token: tok, DisableCompression: c.disableCompression})
}

// submitter connects to --grpc; receipts, if any, must satisfy p.
func (c *clientFlags) submitter(p *policy.Policy) (*client.Submitter, error) {
	if c.grpc == "" {
		return nil, errors.New("--grpc is required (host:port[,host:port…])")
	}
	o := client.SubmitterOptions{Policy: p}
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

// explain adds to a client error what the user can do about it. Whether
// the command exits 1 or 2 is decided by the error itself (main: errors.Is
// client.ErrVerification), not here.
func (c *clientFlags) explain(err error) error {
	var te *client.TLSError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		grpc := c.log == ""
		switch {
		case te.Problem == client.UntrustedCertificate:
			return fmt.Errorf("%w\nhint: pass the CA that signed the server's certificate, e.g. --ca data/tls/ca.pem (cairn dev's)", err)
		case te.Problem == client.PlaintextServer && grpc:
			return fmt.Errorf("%w\nhint: the endpoint is plaintext: add --insecure-plaintext (loopback demos only)", err)
		case te.Problem == client.PlaintextServer:
			return fmt.Errorf("%w\nhint: the log serves plain HTTP: use an http:// URL for --log", err)
		case te.Problem == client.TLSServer && grpc:
			return fmt.Errorf("%w\nhint: the endpoint speaks TLS: drop --insecure-plaintext (and pass --ca data/tls/ca.pem for cairn dev)", err)
		case te.Problem == client.TLSServer:
			return fmt.Errorf("%w\nhint: the log speaks TLS: use an https:// URL for --log (and --ca data/tls/ca.pem for cairn dev)", err)
		}
	case errors.Is(err, client.ErrNotInLog):
		return fmt.Errorf("%w; the record may not be published yet: try again after the next checkpoint", err)
	}
	return err
}

// parseIndex parses the decimal record index given as argument name.
func parseIndex(name, s string) (uint64, error) {
	i, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a record index (a decimal number from 0 to 2^64-1)", name, s)
	}
	return i, nil
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

func newCheckpointCmd() *cobra.Command {
	var c clientFlags
	cmd := &cobra.Command{
		Use:     "checkpoint --log URL --policy FILE",
		Short:   "Fetch the log's checkpoint and verify it against the policy",
		Example: `  cairn checkpoint --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt`,
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
				return c.explain(err)
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
	var subjects []string
	var batchLines bool
	cmd := &cobra.Command{
		Use:   "submit --grpc ADDR[,ADDR…] FILE|- [FILE…]",
		Short: "Append records (files or stdin) and print their indices",
		Long: `Append one record over gRPC. Several endpoints fail over in order; a retry
reuses the record's timestamp and idempotency key, so it never becomes two records.
With --receipt it waits until a checkpoint that satisfies --policy covers the
record, verifies the receipt, and writes it (a C2SP tlog-proof).
With --subject the log seals the record (envelope version 2): the leaf holds
its ciphertext and the subject's keyed hash, never the identifier.

Several files, or --batch (each non-empty line of the input is one record:
JSON lines), append in AppendBatch calls of up to 1000 records and print one
index per record, in input order. --receipt, --record-out and
--idempotency-key take a single record.`,
		Example: `  echo '{"event":"login"}' | cairn submit --grpc 127.0.0.1:9090 --ca data/tls/ca.pem --token-file data/demo.token -
  echo '{"event":"login"}' > event.json
  cairn submit --grpc 127.0.0.1:9090 --ca data/tls/ca.pem --token-file data/demo.token --content-type application/json \
      --policy data/policy.txt --receipt r.tlog-proof --record-out r.leaf event.json
  # a record about a data subject, sealed so that it can be erased (cairn erase):
  cairn submit --grpc 127.0.0.1:9090 --ca data/tls/ca.pem --token-file data/demo.token --subject customer-4711 event.json
  # two frontends (cairn dev --ha: log-a and log-b) fail over in order:
  cairn submit --grpc 127.0.0.1:9090,127.0.0.1:9091 --ca data-ha/tls/ca.pem --token-file data-ha/demo.token event.json
  # a batch: one record per JSON line on stdin
  printf '{"n":1}\n{"n":2}\n' | cairn submit --grpc 127.0.0.1:9090 --ca data/tls/ca.pem --token-file data/demo.token --content-type application/json --batch -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			if batchLines || len(args) > 1 {
				if receiptOut != "" || recordOut != "" || key != "" {
					return fmt.Errorf("--receipt, --record-out and --idempotency-key take a single record, not several files or --batch")
				}
				recs, err := batchRecords(cmd.InOrStdin(), args, batchLines, contentType)
				if err != nil {
					return err
				}
				return runSubmitBatch(cmd, &c, recs)
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
			s, err := c.submitter(p)
			if err != nil {
				return err
			}
			defer s.Close()
			// With a policy, Submit verifies the receipt (exit 1 if it does not).
			res, err := s.Submit(cmd.Context(), client.Record{Payload: payload, ContentType: contentType, IdempotencyKey: key, Subjects: subjects}, receiptOut != "")
			if err != nil {
				return c.explain(err)
			}
			if recordOut != "" {
				if err := os.WriteFile(recordOut, res.Leaf, 0o644); err != nil {
					return err
				}
			}
			out := submitJSON{Index: res.Index, Duplicate: res.Duplicate, Endpoint: res.Endpoint, LeafHash: leafHash(res.Leaf)}
			if receiptOut != "" {
				if err := os.WriteFile(receiptOut, res.Receipt, 0o644); err != nil {
					return err
				}
				out.Receipt = receiptOut
			}
			return c.emit(cmd.OutOrStdout(), out, fmt.Sprintf("%d\n", res.Index))
		},
	}
	c.register(cmd.Flags(), false, true, true)
	cmd.Flags().StringVar(&contentType, "content-type", "", "the record's media type, e.g. application/json")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "reuse a key to make a resubmission resolve to the first index (default: random)")
	cmd.Flags().StringVar(&receiptOut, "receipt", "", "wait for a checkpoint satisfying --policy and write the receipt (.tlog-proof) here")
	cmd.Flags().StringArrayVar(&subjects, "subject", nil, "a data subject the record is about (repeat for several); the log seals the record under the subject's key so that 'cairn erase' can erase it")
	cmd.Flags().BoolVar(&batchLines, "batch", false, "each non-empty line of the input is one record (JSON lines), appended in batches")
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
		Example: `  # alice.leaf and alice.tlog-proof as written by the cairn submit example that cairn dev prints
  cairn verify receipt --policy data/policy.txt --record alice.leaf alice.tlog-proof`,
		Args: cobra.ExactArgs(1),
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
				return err
			}
			text := fmt.Sprintf("verified: record at index %d of %s\n%s", vr.Receipt.Index, safeText(vr.Checkpoint.Checkpoint.Origin), cpText(vr.Checkpoint))
			text += describeRecord(leaf)
			return c.emit(cmd.OutOrStdout(), verifyReceiptJSON{Verified: true, Index: vr.Receipt.Index, Checkpoint: cpJSON(vr.Checkpoint), Record: recordOf(leaf)}, text)
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
		Long: `Prove that record --index is in the log's latest checkpoint (which must satisfy
--policy). With --record, the given leaf must be the log's leaf at that index: a
different one fails with "the record does not match leaf N" (exit 1). An index at or
beyond the checkpoint's size is not in the log at this size (exit 2: nothing was
wrong, the record may not be published yet).`,
		Example: `  cairn verify inclusion --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --index 0
  # alice.leaf as written by cairn submit --record-out, at the index it printed:
  cairn verify inclusion --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --index 0 --record alice.leaf`,
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
			if !cmd.Flags().Changed("index") {
				return errors.New("--index is required")
			}
			var leaf []byte
			if recordFile != "" {
				if leaf, err = os.ReadFile(recordFile); err != nil {
					return fmt.Errorf("--record: %w", err)
				}
			}
			ctx := cmd.Context()
			v, err := l.Checkpoint(ctx)
			if err != nil {
				return c.explain(err)
			}
			if leaf != nil {
				err = l.VerifyRecord(ctx, v, index, leaf)
			} else {
				leaf, err = l.Entry(ctx, v, index)
			}
			if err != nil {
				return c.explain(err)
			}
			h := leafHash(leaf)
			return c.emit(cmd.OutOrStdout(), verifyInclusionJSON{Verified: true, Index: index, LeafHash: h, Checkpoint: cpJSON(v)},
				fmt.Sprintf("verified: index %d (leaf hash %s) is in the tree of size %d\n", index, h, v.Checkpoint.Size))
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
		Use:   "consistency --log URL --policy FILE --from CHECKPOINT",
		Short: "Prove that the log's latest checkpoint extends an earlier one",
		Long: `Prove that the log's latest checkpoint (which must satisfy --policy) extends the
earlier checkpoint --from. A smaller tree than --from (a rollback) or a tree that does
not extend it is a verification failure (exit 1).`,
		Example: `  curl -s --cacert data/tls/ca.pem https://127.0.0.1:8080/checkpoint > old-checkpoint.txt
  # later:
  cairn verify consistency --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --from old-checkpoint.txt`,
		Args: cobra.NoArgs,
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
				return fmt.Errorf("--from: %w", err)
			}
			l, err := c.openLog(p)
			if err != nil {
				return err
			}
			v, err := l.Checkpoint(cmd.Context())
			if err != nil {
				return c.explain(err)
			}
			// The client decides: a rollback, a fork and a failed proof are
			// verification failures (exit 1).
			if err := l.VerifyConsistency(cmd.Context(), old.Checkpoint.Size, old.Checkpoint.Root[:], v); err != nil {
				return c.explain(err)
			}
			return c.emit(cmd.OutOrStdout(), verifyConsistencyJSON{Verified: true, From: cpJSON(old), To: cpJSON(v)},
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
prints the exact leaf bytes instead (what 'cairn verify receipt --record' takes).

A sealed record (one naming data subjects) is stored encrypted: get asks the
log to decrypt it (GET /record/N), which needs --token-file with the read
role, and checks the answer against the proved leaf. An erased record prints
"erased on DATE"; one whose ciphertext was altered fails (exit 1).

Text output writes every non-printable character of a record as an escape (\r,
\x1b, \u202e, \n), so a record cannot drive the terminal; --output json is exact.
An INDEX at or beyond the checkpoint's size is not in the log at this size (exit 2).
An INDEX below the log's minimum index was pruned by its retention policy: "pruned:
below minimum index N, archived at …" (exit 3); 'cairn verify receipt' still
verifies its receipt offline, and 'cairn audit --archive' checks the archived copy.`,
		Example: `  cairn get --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt 0
  cairn get --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --raw 0 > record.leaf`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			index, err := parseIndex("INDEX", args[0])
			if err != nil {
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
				return c.explain(err)
			}
			leaf, err := l.Entry(cmd.Context(), v, index)
			if err != nil {
				return c.explain(err)
			}
			if raw {
				_, err := cmd.OutOrStdout().Write(leaf)
				return err
			}
			if record.LeafVersion(leaf) == record.SealedVersion {
				return c.emitSealed(cmd, l, index, leaf)
			}
			j, text := getJSON{Index: index, recordJSON: recordOf(leaf)}, fmt.Sprintf("index         %d\n", index)+describeRecord(leaf)
			if !j.CairnRecord {
				if j.Legacy, err = legacyOf(cmd.Context(), l, v, index); err != nil {
					return c.explain(err)
				}
				if j.Legacy != "" {
					text = fmt.Sprintf("index         %d\nlegacy leaf   %s\nleaf (base64) %s\n", index, j.Legacy, b64(leaf))
				}
			}
			return c.emit(cmd.OutOrStdout(), j, text)
		},
	}
	c.register(cmd.Flags(), true, false, true)
	cmd.Flags().BoolVar(&raw, "raw", false, "print the exact leaf bytes")
	documentEnv(cmd)
	return cmd
}

func newAuditCmd() *cobra.Command {
	var c clientFlags
	var af archiveFlags
	var statePath, indexURL string
	var quiet, noPipelining bool
	cmd := &cobra.Command{
		Use:   "audit --log URL --policy FILE [--state FILE]",
		Short: "Replay the log and recompute every leaf, tile and the root",
		Long: `Fetch the latest checkpoint (verified against --policy), every entry bundle and
every hash tile; recompute each leaf hash, each tile and the root; report the first
disagreement with its index and path. With --state, the audit resumes from the last
verified tree and checks the new one extends it, then saves the new state.

Bundles and level-0 tiles are read pipelined on eight HTTP/1.1 connections (the
requests written ahead, the answers read in order); whatever a connection does
not deliver is read again one request at a time. --no-pipelining reads each with
a request of its own.

"audit FAILED" (exit 1) means the log's data is wrong; an audit that could not run
(unreachable log, TLS mismatch, a bad flag) exits 2 and says why.

A log with a retention policy serves no records below its minimum index: the audit
verifies the whole tree from the hash tiles, the records from the minimum index up,
and with --archive (posix:DIR or s3://BUCKET/PREFIX, the policy's "then archive")
the archived bundles against the log's tiles; it reports the pruned range. It fails
if records are gone at or above the minimum index, or (with --state) if the minimum
index moved backwards.`,
		Example: `  cairn audit --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt
  # Assumes cairn index serve beside 'make run' (cairn index serve --help):
  cairn audit --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --index http://127.0.0.1:8480
  cairn audit --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --state audit.state --output json
  cairn audit --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --disable-compression
  cairn audit --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --no-pipelining
  # Assumes a log whose retention policy archives to /srv/cairn-archive:
  cairn audit --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --archive posix:/srv/cairn-archive`,
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
			o := client.AuditOptions{NoPipelining: noPipelining}
			if o.Archive, err = af.open(); err != nil {
				return err
			}
			printed := false
			if !quiet {
				o.Progress = func(done, total uint64) {
					if time.Since(last) > 200*time.Millisecond || done == total {
						last, printed = time.Now(), true
						fmt.Fprintf(errw, "\r%s %d/%d records, %.0f records/s", bar(done, total), done, total, float64(done)/time.Since(start).Seconds())
					}
				}
			}
			res, err := l.Audit(cmd.Context(), from, o)
			if printed {
				fmt.Fprintln(errw)
			}
			switch {
			case errors.Is(err, client.ErrVerification):
				return fmt.Errorf("audit FAILED: %w", err)
			case err != nil:
				return c.explain(fmt.Errorf("could not audit: %w", err))
			}
			// Several URLs (the log and its mirrors): every copy's checkpoint
			// must be consistent with the audited tree.
			checks, err := l.CheckSources(cmd.Context())
			if err != nil {
				return fmt.Errorf("audit FAILED: %w", err)
			}
			if statePath != "" {
				if err := res.State.Save(statePath); err != nil {
					return err
				}
			}
			for _, ch := range checks {
				if ch.Err != "" {
					fmt.Fprintf(errw, "note: %s: %s\n", ch.URL, ch.Err)
				} else {
					fmt.Fprintf(errw, "%s: checkpoint at size %d is consistent\n", ch.URL, ch.Size)
				}
			}
			legacy, legacyText, err := legacyLeaves(cmd.Context(), l, res.Checkpoint)
			switch {
			case errors.Is(err, client.ErrVerification):
				return fmt.Errorf("audit FAILED: %w", err)
			case err != nil:
				return c.explain(fmt.Errorf("could not audit: %w", err))
			}
			if indexURL != "" {
				if err := checkIndexFlag(cmd, &c, l, res.Checkpoint, indexURL); err != nil {
					return err
				}
			}
			rate := float64(res.Records) / res.Elapsed.Seconds()
			return c.emit(cmd.OutOrStdout(), auditJSON{Verified: true, From: res.From, Records: res.Records, Seconds: res.Elapsed.Seconds(), RecordsPerSecond: rate, Checkpoint: cpJSON(res.Checkpoint), MinimumIndex: res.MinimumIndex, ArchivedBundles: res.ArchivedBundles, LegacyLeaves: legacy},
				fmt.Sprintf("audit PASSED: %d records (from %d to %d) in %.2fs, %.0f records/s; every leaf, tile and the root agree with the checkpoint\n%s%s%s",
					res.Records, res.From, res.Checkpoint.Checkpoint.Size, res.Elapsed.Seconds(), rate, prunedText(res), legacyText, cpText(res.Checkpoint)))
		},
	}
	c.register(cmd.Flags(), true, false, true)
	cmd.Flags().StringVar(&statePath, "state", "", "state file: resume from it and save the new verified state")
	cmd.Flags().StringVar(&indexURL, "index", "", "also check that this search index (cairn index serve) answers every record of the audited tree, correctly attributed")
	af.register(cmd.Flags())
	cmd.Flags().BoolVar(&quiet, "quiet", false, "no progress bar")
	cmd.Flags().BoolVar(&c.disableCompression, "disable-compression", false, "fetch bundles uncompressed: less CPU on both sides, more bytes (for a log on the same host or LAN)")
	annotateField(cmd.Flags(), "disable-compression", "HTTPOptions.DisableCompression")
	cmd.Flags().BoolVar(&noPipelining, "no-pipelining", false, "read each bundle and tile with a request of its own (by default they are pipelined on a few HTTP/1.1 connections; for a proxy that mishandles that)")
	annotateField(cmd.Flags(), "no-pipelining", "AuditOptions.NoPipelining")
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
		Example: `  cairn monitor --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --state monitor.state --interval 30s
  cairn monitor --log https://127.0.0.1:8080 --ca data/tls/ca.pem --policy data/policy.txt --state monitor.state --once --output json`,
		Args: cobra.NoArgs,
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
					_ = c.emit(out, monitorJSON{Time: ev.Time, Alarm: ev.Err.Error()}, fmt.Sprintf("%s ALARM: %s\n", ev.Time.Format(time.RFC3339), safeText(ev.Err.Error())))
					cancel()
				case ev.Err != nil:
					_ = c.emit(out, monitorJSON{Time: ev.Time, Error: ev.Err.Error()}, fmt.Sprintf("%s could not check: %s\n", ev.Time.Format(time.RFC3339), safeText(c.explain(ev.Err).Error())))
				default:
					cp := cpJSON(ev.Checkpoint)
					_ = c.emit(out, monitorJSON{Time: ev.Time, OK: true, Advanced: ev.Advanced, Checkpoint: &cp},
						fmt.Sprintf("%s ok: size %d, cosigned by %d witnesses%s\n", ev.Time.Format(time.RFC3339), ev.Checkpoint.Checkpoint.Size, len(ev.Checkpoint.Cosigned), keyTypeSummary(ev.Checkpoint)))
				}
			})
			if alarm != nil {
				return alarm
			}
			return c.explain(err)
		},
	}
	c.register(cmd.Flags(), true, false, true)
	cmd.Flags().StringVar(&statePath, "state", "", "state file holding the last verified checkpoint")
	cmd.Flags().DurationVar(&interval, "interval", 30*time.Second, "time between checks")
	cmd.Flags().BoolVar(&once, "once", false, "check once and exit")
	documentEnv(cmd)
	return cmd
}
