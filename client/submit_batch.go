package client

import (
	"context"
	"fmt"

	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
)

// DefaultBatchRecords is how many records SubmitBatch sends per AppendBatch
// call: within the log's default limit (4096 records, 8 MiB) for records of
// up to ~8 KiB, and large enough to amortise a call over many records.
const DefaultBatchRecords = 1000

// SubmitBatch appends records with AppendBatch calls of at most
// DefaultBatchRecords records each and returns the results in the order of
// records. Every record's timestamp and idempotency key are fixed before the
// first call, so a call retried on another endpoint (with the same failover
// and backoff as Submit) resolves the records it already sequenced to their
// first indices. A record the log refuses (invalid, too large) fails its
// whole call, naming its position in records; the calls before it stay
// appended. With waitForReceipt every result carries its receipt, verified
// against SubmitterOptions.Policy when one is set.
func (s *Submitter) SubmitBatch(ctx context.Context, records []Record, waitForReceipt bool) ([]*Submitted, error) {
	reqs := make([]*cairnv1.AppendRequest, len(records))
	for i, r := range records {
		req, err := request(r)
		if err != nil {
			return nil, err
		}
		req.Id = uint64(i)
		req.WaitForReceipt = waitForReceipt
		reqs[i] = req
	}
	out := make([]*Submitted, 0, len(records))
	for start := 0; start < len(reqs); start += DefaultBatchRecords {
		chunk := reqs[start:min(start+DefaultBatchRecords, len(reqs))]
		res, err := s.submitChunk(ctx, chunk, waitForReceipt)
		if err != nil {
			return nil, fmt.Errorf("records %d–%d: %w", start, start+len(chunk)-1, err)
		}
		out = append(out, res...)
	}
	return out, nil
}

// submitChunk sends one AppendBatch, failing over like Submit.
func (s *Submitter) submitChunk(ctx context.Context, reqs []*cairnv1.AppendRequest, waitForReceipt bool) ([]*Submitted, error) {
	var resp *cairnv1.AppendBatchResponse
	i, err := s.withFailover(ctx, waitForReceipt, "the batch", func(ctx context.Context, c cairnv1.LogClient) (err error) {
		resp, err = c.AppendBatch(ctx, &cairnv1.AppendBatchRequest{Records: reqs})
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.batchResults(resp, reqs, s.endpoints[i], waitForReceipt)
}

// batchResults checks that resp answers reqs one for one, in order, and
// verifies the receipts.
func (s *Submitter) batchResults(resp *cairnv1.AppendBatchResponse, reqs []*cairnv1.AppendRequest, endpoint string, waitForReceipt bool) ([]*Submitted, error) {
	if len(resp.GetResults()) != len(reqs) {
		return nil, fmt.Errorf("%s answered %d results for %d records", endpoint, len(resp.GetResults()), len(reqs))
	}
	out := make([]*Submitted, len(reqs))
	for j, r := range resp.GetResults() {
		if r.GetId() != reqs[j].GetId() {
			return nil, fmt.Errorf("%s answered record %d with the result for id %d", endpoint, reqs[j].GetId(), r.GetId())
		}
		sub := &Submitted{Index: r.Index, Duplicate: r.Duplicate, Leaf: r.Leaf, Receipt: r.Receipt, Endpoint: endpoint}
		if waitForReceipt && s.opts.Policy != nil {
			if _, err := VerifyReceipt(s.opts.Policy, sub.Leaf, sub.Receipt); err != nil {
				return nil, fmt.Errorf("the receipt for record %d from %s does not verify: %w", reqs[j].GetId(), endpoint, err)
			}
		}
		out[j] = sub
	}
	return out, nil
}
