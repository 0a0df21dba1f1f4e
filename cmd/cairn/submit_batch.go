package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/cairnlog/cairn/client"
	"github.com/spf13/cobra"
)

// maxBatchLine bounds one JSON line of cairn submit --batch: a record's
// payload (the log's limit is below 64 KiB).
const maxBatchLine = 1 << 16

// batchRecords reads the records of a batched submit: one record per file,
// or with lines one record per non-empty line of stdin ("-") or of each
// file (JSON lines). Errors name the file and line.
func batchRecords(stdin io.Reader, args []string, lines bool, contentType string) ([]client.Record, error) {
	var recs []client.Record
	for _, name := range args {
		var r io.Reader
		if name == "-" {
			r = stdin
		} else {
			f, err := os.Open(name)
			if err != nil {
				return nil, fmt.Errorf("reading the records: %w", err)
			}
			defer f.Close()
			r = f
		}
		if !lines {
			b, err := io.ReadAll(io.LimitReader(r, 1<<20))
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", name, err)
			}
			recs = append(recs, client.Record{Payload: b, ContentType: contentType})
			continue
		}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), maxBatchLine+1)
		for n := 1; sc.Scan(); n++ {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			recs = append(recs, client.Record{Payload: bytes.Clone(line), ContentType: contentType})
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading %s: %w (a line is one record, at most %d bytes)", name, err, maxBatchLine)
		}
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("no records to submit (empty input)")
	}
	return recs, nil
}

// runSubmitBatch appends recs with AppendBatch and prints one index per
// record, in order (--output json: an array of results).
func runSubmitBatch(cmd *cobra.Command, c *clientFlags, recs []client.Record) error {
	s, err := c.submitter(nil)
	if err != nil {
		return err
	}
	defer s.Close()
	res, err := s.SubmitBatch(cmd.Context(), recs, false)
	if err != nil {
		return c.explain(err)
	}
	out := make([]submitJSON, len(res))
	var text bytes.Buffer
	for i, r := range res {
		out[i] = submitJSON{Index: r.Index, Duplicate: r.Duplicate, Endpoint: r.Endpoint, LeafHash: leafHash(r.Leaf)}
		fmt.Fprintf(&text, "%d\n", r.Index)
	}
	return c.emit(cmd.OutOrStdout(), out, text.String())
}
