package log

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cairnlog/cairn/client"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestOnlyRetryableRefusalsCarryRetryInfo: pushback and rate limits tell the
// client to come back (google.rpc.RetryInfo); a record over the size limit,
// which has the same gRPC code, does not.
func TestOnlyRetryableRefusalsCarryRetryInfo(t *testing.T) {
	for _, c := range []struct {
		err   error
		retry bool
	}{
		{ErrPushback, true},
		{ErrRateLimited, true},
		{ErrShuttingDown, true},
		{ErrRecordTooLarge, false},
		{ErrInvalidRecord, false},
	} {
		st := status.Convert(grpcStatus(c.err))
		got := false
		for _, d := range st.Details() {
			if _, ok := d.(*errdetails.RetryInfo); ok {
				got = true
			}
		}
		if got != c.retry {
			t.Errorf("%v (%v): RetryInfo %v, want %v", c.err, st.Code(), got, c.retry)
		}
	}
}

// TestClientDoesNotRetryAnOversizedRecord: the Go client gives up at once on a
// record the log refuses as too large. Its backoff is an hour, so a retry
// would show as the context's deadline instead of the log's answer.
func TestClientDoesNotRetryAnOversizedRecord(t *testing.T) {
	tl := newTestLogWith(t, func(c *Config) { c.MaxRecordBytes = 1024 })
	s, err := client.NewSubmitter([]string{tl.GRPCAddr()}, client.SubmitterOptions{
		Attempts: 3, Backoff: time.Hour, MaxBackoff: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = s.Submit(ctx, client.Record{Payload: make([]byte, 2048), ContentType: "application/octet-stream"}, false)
	if status.Code(errors.Unwrap(err)) != codes.ResourceExhausted && status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Submit of an oversized record: %v, want the log's ResourceExhausted at once", err)
	}
}
