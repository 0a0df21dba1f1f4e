package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/search"
	"github.com/spf13/cobra"
)

// indexFlags are the flags of the commands that query an index.
type indexFlags struct {
	clientFlags
	index string
}

func (c *indexFlags) register(cmd *cobra.Command) {
	c.clientFlags.register(cmd.Flags(), false, false, true)
	c.registerIndex(cmd)
}

// registerHistory is register without --key, which cairn history uses for
// the key whose versions it prints: --cert's key is --cert-key there.
func (c *indexFlags) registerHistory(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.policy, "policy", "", "C2SP tlog-policy file: the trusted log key and witness quorum")
	f.StringVar(&c.output, "output", "text", "output format: text or json")
	f.StringVar(&c.ca, "ca", "", "PEM CA bundle to trust for the index's TLS certificate (besides system roots)")
	f.StringVar(&c.cert, "cert", "", "PEM client certificate (mTLS)")
	f.StringVar(&c.key, "cert-key", "", "PEM key of --cert")
	f.StringVar(&c.tokenFile, "token-file", "", "file holding a bearer token (or set $CAIRN_TOKEN)")
	c.registerIndex(cmd)
}

func (c *indexFlags) registerIndex(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.index, "index", "", "the search index's base URL (cairn index serve), e.g. http://127.0.0.1:8480")
	annotateField(cmd.Flags(), "index", "Index.URL")
}

func (c *indexFlags) open() (*client.Index, *policy.Policy, error) {
	if c.index == "" {
		return nil, nil, errors.New("--index is required (the index's base URL)")
	}
	p, err := c.loadPolicy()
	if err != nil {
		return nil, nil, err
	}
	t, err := c.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	tok, err := c.token()
	if err != nil {
		return nil, nil, err
	}
	x, err := client.NewIndex(c.index, p, client.HTTPOptions{TLS: t, Token: tok})
	return x, p, err
}

// hitJSON is one line of --output json: the verified hit, decoded.
type hitJSON struct {
	Index         uint64            `json:"index"`
	Timestamp     string            `json:"timestamp,omitempty"`
	Principal     string            `json:"principal"`
	ContentType   string            `json:"content_type"`
	State         string            `json:"state"`
	SubjectHashes []string          `json:"subject_hashes,omitempty"`
	Fields        map[string]string `json:"fields,omitempty"`
	// Record is the payload: JSON as is, other text as a string.
	Record     any    `json:"record,omitempty"`
	Checkpoint uint64 `json:"checkpoint_size"`
}

func decodedHit(h *search.Hit, size uint64) hitJSON {
	out := hitJSON{Index: h.Index, Timestamp: h.Timestamp, Principal: h.Principal, ContentType: h.ContentType, State: h.State,
		SubjectHashes: h.SubjectHashes, Fields: h.Fields, Checkpoint: size}
	if p := h.Payload(); p != nil {
		if json.Valid(p) {
			out.Record = json.RawMessage(p)
		} else {
			out.Record = string(p)
		}
	}
	return out
}

func hitText(h *search.Hit) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s %s", h.Index, orDash(h.Timestamp), h.Principal)
	if h.ContentType != "" {
		fmt.Fprintf(&b, " %s", h.ContentType)
	}
	if h.State != "plain" {
		fmt.Fprintf(&b, " [%s]", h.State)
	}
	if p := h.Payload(); p != nil {
		fmt.Fprintf(&b, "\n    %s", safeText(strings.TrimRight(string(p), "\n")))
	}
	return b.String() + "\n"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func checkpointSize(h *search.Hit, p *policy.Policy) uint64 {
	v, err := p.Verify([]byte(h.Checkpoint))
	if err != nil {
		return 0
	}
	return v.Checkpoint.Size
}

func newSearchCmd() *cobra.Command {
	var c indexFlags
	var fields []string
	var principal, subject, contentType, since, until string
	var limit int
	cmd := &cobra.Command{
		Use:   "search --index URL --policy FILE [--field NAME=VALUE]… [--principal P] [--since T] [--until T]",
		Short: "Find records through a search index; every hit is verified",
		Long: `Ask a search index (cairn index serve) for the records matching every condition,
in log order, and verify each hit before printing it: its checkpoint must satisfy
--policy, its leaf must be proven at its index, and what the index says about it
(principal, timestamp, fields, ...) must be what the proven record says and match
the query. A hit that fails is reported with its index (exit 1): the index is not
trusted. The index can leave records out; cairn audit --index checks that.

Times are RFC 3339; --since is inclusive, --until exclusive. --output json prints
one JSON object a line: index, timestamp, principal, content_type, state, fields
and the decoded record.`,
		Example: `  # Assumes cairn index serve beside 'make run' (see cairn index serve --help):
  cairn search --index http://127.0.0.1:8480 --policy data/policy.txt --field actor=alice
  cairn search --index http://127.0.0.1:8480 --policy data/policy.txt --principal demo \
    --since 2026-11-24T00:00:00Z --until 2026-11-25T00:00:00Z --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			if c.output != "text" && c.output != "json" {
				return fmt.Errorf("--output %q: want text or json", c.output)
			}
			x, p, err := c.open()
			if err != nil {
				return err
			}
			q := search.Query{Fields: map[string]string{}, Principal: principal, Subject: subject, ContentType: contentType, Limit: limit}
			for _, f := range fields {
				name, value, ok := strings.Cut(f, "=")
				if !ok {
					return fmt.Errorf("--field %q: want NAME=VALUE", f)
				}
				q.Fields[name] = value
			}
			if q.Since, err = flagTime("since", since); err != nil {
				return err
			}
			if q.Until, err = flagTime("until", until); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			n := 0
			err = x.Search(cmd.Context(), q, func(h *search.Hit) error {
				n++
				return printHit(out, c.output, h, p)
			})
			if err != nil {
				return searchError(err)
			}
			if c.output == "text" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d records, each verified against a checkpoint that satisfies the policy\n", n)
			}
			return nil
		},
	}
	c.register(cmd)
	f := cmd.Flags()
	f.StringArrayVar(&fields, "field", nil, "condition on an indexed field: NAME=VALUE; repeatable (all must hold)")
	f.StringVar(&principal, "principal", "", "only records submitted by this principal")
	f.StringVar(&subject, "subject", "", "only records about this keyed subject hash (64 hex digits)")
	f.StringVar(&contentType, "content-type", "", "only records of this content type")
	f.StringVar(&since, "since", "", "only records with a timestamp at or after this RFC 3339 time")
	f.StringVar(&until, "until", "", "only records with a timestamp before this RFC 3339 time")
	f.IntVar(&limit, "page-size", 0, "hits per request to the index (1..1000; default 100)")
	documentEnv(cmd)
	return cmd
}

func flagTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time, e.g. 2026-11-24T12:50:00Z", name, s)
	}
	return t, nil
}

func printHit(w io.Writer, output string, h *search.Hit, p *policy.Policy) error {
	if output == "json" {
		b, err := json.Marshal(decodedHit(h, checkpointSize(h, p)))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := io.WriteString(w, hitText(h))
	return err
}

// searchError says what a failed search means.
func searchError(err error) error {
	switch {
	case errors.Is(err, client.ErrVerification):
		return fmt.Errorf("search FAILED, the index answered a record that does not verify: %w", err)
	case errors.Is(err, client.ErrBadQuery):
		return fmt.Errorf("bad query: %w", err)
	}
	return fmt.Errorf("could not search: %w", err)
}
