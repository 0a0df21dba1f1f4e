package main

import (
	"bytes"
	"errors"

	"encoding/json"
	"fmt"
	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/cairnlog/cairn/format/search"
	"github.com/spf13/cobra"
)

func newHistoryCmd() *cobra.Command {
	var c indexFlags
	var key string
	cmd := &cobra.Command{
		Use:   "history --index URL --policy FILE --key NAME=VALUE",
		Short: "Print every version of one key in log order, with the diff between versions",
		Long: `Ask a search index for every record whose indexed field NAME equals VALUE (e.g.
--key resource=fw-policy), verify each one as cairn search does, and print them in
log order with the difference between consecutive JSON versions:
  + PATH: VALUE   added      - PATH: VALUE   removed      ~ PATH: OLD → NEW   changed
--output json prints one object a version: index, timestamp, principal, the record
and "changes" (the same diff as a list).`,
		Example: `  # Assumes cairn index serve beside 'make run' with --field resource=.resource.id:
  cairn history --index http://127.0.0.1:8480 --policy data/policy.txt --key resource=fw-policy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			if key == "" {
				return errors.New("--key is required: NAME=VALUE, e.g. --key resource=fw-policy")
			}
			name, value, ok := strings.Cut(key, "=")
			if !ok || name == "" {
				return fmt.Errorf("--key %q: want NAME=VALUE, e.g. resource=fw-policy", key)
			}
			if c.output != "text" && c.output != "json" {
				return fmt.Errorf("--output %q: want text or json", c.output)
			}
			x, p, err := c.open()
			if err != nil {
				return err
			}
			hits, err := x.History(cmd.Context(), name, value)
			if err != nil {
				return searchError(err)
			}
			out := cmd.OutOrStdout()
			var prev []byte
			for i, h := range hits {
				cur := h.Payload()
				changes := diffJSON(prev, cur, i == 0)
				if c.output == "json" {
					v := struct {
						hitJSON
						Changes []string `json:"changes"`
					}{decodedHit(h, checkpointSize(h, p)), changes}
					b, err := json.Marshal(v)
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "%s\n", b)
				} else {
					fmt.Fprintf(out, "#%d %s %s", h.Index, orDash(h.Timestamp), h.Principal)
					if h.State != "plain" {
						fmt.Fprintf(out, " [%s]", h.State)
					}
					fmt.Fprintln(out)
					printChanges(out, changes)
				}
				prev = cur
			}
			if c.output == "text" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d versions of %s=%s, each verified\n", len(hits), name, value)
			}
			return nil
		},
	}
	c.registerHistory(cmd)
	cmd.Flags().StringVar(&key, "key", "", "the key: an indexed field and its value, NAME=VALUE (no environment variable: $CAIRN_KEY is log serve's private key file)")
	noEnv(cmd.Flags(), "key")
	documentEnv(cmd)
	return cmd
}

func printChanges(w io.Writer, changes []string) {
	for _, ch := range changes {
		fmt.Fprintf(w, "    %s\n", safeText(ch))
	}
}

// diffJSON lists the differences between two JSON documents as
// "+ PATH: V", "- PATH: V", "~ PATH: OLD → NEW" (paths in the --field
// syntax). The first version lists everything as added; a version that is
// not JSON (or unreadable: erased) is one line.
func diffJSON(prev, cur []byte, first bool) []string {
	if cur == nil {
		return []string{"(record not readable)"}
	}
	b, okB := flatten(cur)
	if !okB {
		return []string{"(not JSON) " + string(cur)}
	}
	a := map[string]string{}
	if !first && prev != nil {
		if fa, ok := flatten(prev); ok {
			a = fa
		}
	}
	var out []string
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.Sort(sorted)
	for _, k := range sorted {
		av, inA := a[k]
		bv, inB := b[k]
		switch {
		case inA && !inB:
			out = append(out, fmt.Sprintf("- %s: %s", k, av))
		case !inA && inB:
			out = append(out, fmt.Sprintf("+ %s: %s", k, bv))
		case av != bv:
			out = append(out, fmt.Sprintf("~ %s: %s → %s", k, av, bv))
		}
	}
	if len(out) == 0 {
		out = []string{"(no change)"}
	}
	return out
}

// flatten maps every scalar (and empty container) of a JSON document to its path.
func flatten(doc []byte) (map[string]string, bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	out := map[string]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				out[path] = "{}"
			}
			for k, e := range x {
				walk(path+memberPath(k), e)
			}
		case []any:
			if len(x) == 0 {
				out[path] = "[]"
			}
			for i, e := range x {
				walk(path+"["+strconv.Itoa(i)+"]", e)
			}
		default:
			b, _ := json.Marshal(x)
			if path == "" {
				path = "."
			}
			out[path] = string(b)
		}
	}
	walk("", v)
	return out, true
}

func memberPath(k string) string {
	if _, err := search.ParsePath("." + k); err == nil && k != "" {
		return "." + k
	}
	b, _ := json.Marshal(k)
	return "[" + string(b) + "]"
}

// checkIndexFlag is cairn audit --index: after the audit passed, every
// record of the audited tree must be in the index, correctly attributed.
func checkIndexFlag(cmd *cobra.Command, c *clientFlags, l *client.Log, v *policy.Verified, indexURL string) error {
	t, err := c.tlsConfig()
	if err != nil {
		return err
	}
	tok, err := c.token()
	if err != nil {
		return err
	}
	x, err := client.NewIndex(indexURL, l.Policy, client.HTTPOptions{TLS: t, Token: tok})
	if err != nil {
		return err
	}
	chk, err := l.CheckIndex(cmd.Context(), v, x)
	if chk != nil {
		for _, m := range chk.Missing {
			fmt.Fprintf(cmd.ErrOrStderr(), "index: record %d: %s\n", m.Index, m.Reason)
		}
	}
	switch {
	case errors.Is(err, client.ErrVerification):
		return fmt.Errorf("audit FAILED: %w", err)
	case err != nil:
		return fmt.Errorf("could not check the index: %w", err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "index %s: all %d records present and correctly attributed\n", indexURL, chk.Size)
	return nil
}
