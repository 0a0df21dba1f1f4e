package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/fielderr"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Record is what a submitter appends. The log adds the authenticated
// submitter; the client fixes the timestamp and idempotency key once, so
// every retry of the same Submit is the same leaf and gets the same index.
type Record struct {
	Payload     []byte
	ContentType string
	// IdempotencyKey defaults to 128 random bits (hex).
	IdempotencyKey string
	// Timestamp defaults to now.
	Timestamp time.Time
	// Subjects name the data subjects the record is about; the log then
	// seals it under their keys (docs/erasure.md).
	Subjects []string
}

// Submitted is an acknowledged record.
type Submitted struct {
	Index     uint64
	Duplicate bool
	// Leaf is the exact leaf the log sequenced (the record envelope).
	Leaf []byte
	// Receipt is the tlog-proof, when one was waited for.
	Receipt []byte
	// Endpoint is the log endpoint that acknowledged it.
	Endpoint string
}

// SubmitterOptions configure a Submitter.
type SubmitterOptions struct {
	// TLS secures the connections; nil means plaintext (loopback demos only).
	TLS *tls.Config
	// Token is a bearer token sent with every call.
	Token string
	// Attempts bounds the tries of one record across all endpoints (default 8).
	Attempts int
	// Backoff is the first pause after every endpoint failed once; it
	// doubles up to MaxBackoff (defaults 100ms and 5s).
	Backoff, MaxBackoff time.Duration
	// CallTimeout bounds one attempt (default 30s; receipts wait longer).
	CallTimeout time.Duration
	// Policy, if set, is what a receipt must satisfy: Submit with
	// waitForReceipt verifies the receipt against it and the returned leaf,
	// and fails with an error wrapping ErrVerification if it does not verify.
	Policy *policy.Policy
}

// Submitter appends records to a log over gRPC, failing over between
// endpoints (frontends) on connection failure, Unavailable, ResourceExhausted
// or a timeout, with bounded exponential backoff.
type Submitter struct {
	endpoints []string
	conns     []*grpc.ClientConn
	opts      SubmitterOptions
	mu        sync.Mutex
	preferred int // the endpoint that last worked; guarded by mu

	// beforeSend, if set (tests only), runs in a stream's sender goroutine
	// before each record is sent.
	beforeSend func(ctx context.Context, attempt int, id uint64)
}

// Defaults of SubmitterOptions' zero fields.
const (
	DefaultAttempts    = 8
	DefaultBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
	DefaultCallTimeout = 30 * time.Second
)

// valid checks o and fills in the defaults; its errors name the field.
func (o *SubmitterOptions) valid() error {
	if err := checkToken(o.Token); err != nil {
		return fielderr.New("SubmitterOptions.Token", err)
	}
	for _, f := range []struct {
		name string
		d    *time.Duration
		def  time.Duration
	}{
		{"SubmitterOptions.Backoff", &o.Backoff, DefaultBackoff},
		{"SubmitterOptions.MaxBackoff", &o.MaxBackoff, DefaultMaxBackoff},
		{"SubmitterOptions.CallTimeout", &o.CallTimeout, DefaultCallTimeout},
	} {
		if *f.d < 0 {
			return fielderr.Errorf(f.name, "%v is negative", *f.d)
		}
		if *f.d == 0 {
			*f.d = f.def
		}
	}
	if o.Attempts < 0 {
		return fielderr.Errorf("SubmitterOptions.Attempts", "%d is negative", o.Attempts)
	}
	if o.Attempts == 0 {
		o.Attempts = DefaultAttempts
	}
	return nil
}

// checkToken refuses a bearer token that cannot be sent in a header as is
// (RFC 6750 b64token: printable ASCII, no spaces).
func checkToken(tok string) error {
	for i := 0; i < len(tok); i++ {
		if tok[i] < 0x21 || tok[i] > 0x7e {
			return fmt.Errorf("contains byte 0x%02x at offset %d; a bearer token is printable ASCII without spaces", tok[i], i)
		}
	}
	return nil
}

// NewSubmitter prepares connections to endpoints (host:port), tried in
// order. Its errors name the option at fault (fielderr): "endpoints" for
// the endpoint list, "SubmitterOptions.Token" and so on for o.
func NewSubmitter(endpoints []string, o SubmitterOptions) (*Submitter, error) {
	if len(endpoints) == 0 {
		return nil, fielderr.Errorf("endpoints", "no log endpoint given")
	}
	if err := o.valid(); err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS)
	}
	s := &Submitter{endpoints: endpoints, opts: o}
	for _, e := range endpoints {
		if strings.Contains(e, "://") || e == "" {
			s.Close()
			return nil, fielderr.Errorf("endpoints", "%q: want host:port, not a URL", e)
		}
		c, err := grpc.NewClient(e, grpc.WithTransportCredentials(creds))
		if err != nil {
			s.Close()
			return nil, fielderr.Errorf("endpoints", "%q: %w", e, err)
		}
		s.conns = append(s.conns, c)
	}
	return s, nil
}

// Close closes every connection.
func (s *Submitter) Close() error {
	for _, c := range s.conns {
		c.Close()
	}
	return nil
}

// ctx adds the token and, when an earlier attempt may have been sequenced,
// the retry mark: it makes a frontend wait for the shared antispam index
// before assigning a new index, so the retry finds the earlier one.
func (s *Submitter) ctx(ctx context.Context, retry bool) context.Context {
	if s.opts.Token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.opts.Token)
	}
	if retry {
		ctx = metadata.AppendToOutgoingContext(ctx, cairnv1.RetryHeader, "1")
	}
	return ctx
}

// retryable reports whether another endpoint (or a later try) may succeed.
// Nothing was acknowledged when these are returned, and a retry of the same
// leaf can only yield the same index. A TLS mismatch (an untrusted
// certificate, TLS against plaintext) is Unavailable too, but no retry can
// fix it: it is not retryable.
func retryable(err error) bool {
	var te *TLSError
	if errors.As(err, &te) || tlsProblem(err) != 0 {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Internal:
		return true
	case codes.ResourceExhausted:
		// Pushback and rate limits carry google.rpc.RetryInfo; a record
		// over the log's size limit (the log's answer or gRPC's own receive
		// limit) does not, and no retry would fix it.
		return hasRetryInfo(err)
	}
	return false
}

// hasRetryInfo reports whether err's gRPC status carries a RetryInfo detail.
func hasRetryInfo(err error) bool {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.RetryInfo); ok {
			return true
		}
	}
	return false
}

// diagnose tells a plaintext client talking to a TLS endpoint apart from an
// endpoint that merely closed the connection: both read EOF where the
// HTTP/2 preface should be. It then tries a TLS handshake with endpoint i
// (no certificate check, nothing sent: it only asks whether the server
// speaks TLS) and, if the server answers one, returns a *TLSError.
func (s *Submitter) diagnose(ctx context.Context, i int, err error) error {
	if s.opts.TLS != nil || status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "error reading server preface") {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} // a probe: no data is sent
	c, perr := d.DialContext(ctx, "tcp", s.endpoints[i])
	if perr != nil {
		return err
	}
	c.Close()
	return &TLSError{Problem: TLSServer, Err: err}
}

// request fixes a record's timestamp and idempotency key.
func request(r Record) (*cairnv1.AppendRequest, error) {
	if r.IdempotencyKey == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		r.IdempotencyKey = hex.EncodeToString(b)
	}
	if r.Timestamp.IsZero() {
		r.Timestamp = time.Now()
	}
	return &cairnv1.AppendRequest{
		Payload:             r.Payload,
		ContentType:         r.ContentType,
		IdempotencyKey:      r.IdempotencyKey,
		TimestampUnixMillis: uint64(r.Timestamp.UnixMilli()),
		Subject:             r.Subjects,
	}, nil
}

// Submit appends one record; with waitForReceipt it also waits for a
// published checkpoint and returns the receipt, verified against
// SubmitterOptions.Policy when one is set. A TLS mismatch fails at once
// with a *TLSError.
func (s *Submitter) Submit(ctx context.Context, r Record, waitForReceipt bool) (*Submitted, error) {
	req, err := request(r)
	if err != nil {
		return nil, err
	}
	req.WaitForReceipt = waitForReceipt
	var resp *cairnv1.AppendResponse
	i, err := s.withFailover(ctx, waitForReceipt, "the record", func(ctx context.Context, c cairnv1.LogClient) (err error) {
		resp, err = c.Append(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	sub := &Submitted{Index: resp.Index, Duplicate: resp.Duplicate, Leaf: resp.Leaf, Receipt: resp.Receipt, Endpoint: s.endpoints[i]}
	if waitForReceipt && s.opts.Policy != nil {
		if _, err := VerifyReceipt(s.opts.Policy, sub.Leaf, sub.Receipt); err != nil {
			return nil, fmt.Errorf("the receipt from %s does not verify: %w", s.endpoints[i], err)
		}
	}
	return sub, nil
}

// withFailover makes one call on one endpoint after another, the preferred
// one first, pausing (doubling from Backoff up to MaxBackoff) after each
// full round, until a call succeeds, fails in a way no retry fixes, or
// Attempts run out. After an ambiguous failure (anything but pushback,
// which refuses before sequencing) every attempt is marked as a retry, so
// the next endpoint looks for the first attempt's record. It returns the
// endpoint that answered; what names the request in the final error.
func (s *Submitter) withFailover(ctx context.Context, waitForReceipt bool, what string, call func(context.Context, cairnv1.LogClient) error) (int, error) {
	timeout := s.opts.CallTimeout
	if waitForReceipt {
		timeout = max(timeout, 2*time.Minute)
	}
	var last error
	ambiguous := false
	backoff := s.opts.Backoff
	s.mu.Lock()
	first := s.preferred
	s.mu.Unlock()
	for attempt := 0; attempt < s.opts.Attempts; attempt++ {
		i := (first + attempt) % len(s.conns)
		if attempt > 0 && attempt%len(s.conns) == 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.opts.MaxBackoff)
		}
		cctx, cancel := context.WithTimeout(s.ctx(ctx, ambiguous), timeout)
		err := call(cctx, cairnv1.NewLogClient(s.conns[i]))
		cancel()
		if err == nil {
			s.mu.Lock()
			s.preferred = i
			s.mu.Unlock()
			return i, nil
		}
		err = s.diagnose(ctx, i, err)
		last = fmt.Errorf("%s: %w", s.endpoints[i], asTLSError(err))
		if !retryable(err) || ctx.Err() != nil {
			return 0, last
		}
		// Pushback is a refusal before sequencing; anything else may have
		// sequenced the record, which the next endpoint must look for.
		ambiguous = ambiguous || status.Code(err) != codes.ResourceExhausted
	}
	return 0, fmt.Errorf("no endpoint accepted %s after %d attempts: %w", what, s.opts.Attempts, last)
}

// SubmitStream appends many records over one AppendStream, failing over to
// the next endpoint if the stream breaks; records not yet acknowledged are
// re-sent with the same idempotency keys, so none is appended twice. It
// returns the results in the order of records.
func (s *Submitter) SubmitStream(ctx context.Context, records []Record) ([]*Submitted, error) {
	reqs := make([]*cairnv1.AppendRequest, len(records))
	for i, r := range records {
		req, err := request(r)
		if err != nil {
			return nil, err
		}
		req.Id = uint64(i)
		reqs[i] = req
	}
	out := make([]*Submitted, len(records))
	remaining := len(records)
	var last error
	backoff := s.opts.Backoff
	for attempt := 0; attempt < s.opts.Attempts && remaining > 0; attempt++ {
		if attempt > 0 && attempt%len(s.conns) == 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.opts.MaxBackoff)
		}
		i := attempt % len(s.conns)
		err := s.stream(ctx, i, attempt, reqs, out, &remaining)
		if err == nil {
			continue
		}
		err = s.diagnose(ctx, i, err)
		last = fmt.Errorf("%s: %w", s.endpoints[i], asTLSError(err))
		if !retryable(err) && status.Code(err) != codes.Canceled {
			return nil, last
		}
	}
	if remaining > 0 {
		return nil, fmt.Errorf("%d records unacknowledged after %d attempts: %w", remaining, s.opts.Attempts, last)
	}
	return out, nil
}

// stream runs one AppendStream on endpoint i for the records not yet in out.
// Its sender goroutine is joined on every return path, and it never reads
// out (the receiver writes it): it sends a list taken before it starts.
func (s *Submitter) stream(ctx context.Context, i, attempt int, reqs []*cairnv1.AppendRequest, out []*Submitted, remaining *int) error {
	ctx, cancel := context.WithCancel(s.ctx(ctx, attempt > 0))
	defer cancel()
	st, err := cairnv1.NewLogClient(s.conns[i]).AppendStream(ctx)
	if err != nil {
		return err
	}
	pending := make([]*cairnv1.AppendRequest, 0, *remaining)
	for _, r := range reqs {
		if out[r.Id] == nil {
			pending = append(pending, r)
		}
	}
	var sendErr error
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for _, r := range pending {
			if s.beforeSend != nil {
				s.beforeSend(ctx, attempt, r.Id)
			}
			if sendErr = st.Send(r); sendErr != nil {
				return
			}
		}
		sendErr = st.CloseSend()
	}()
	// Cancelling the stream unblocks a Send waiting for flow control.
	defer func() { cancel(); <-sent }()
	for *remaining > 0 {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if resp.ErrorCode != 0 {
			e := status.Error(codes.Code(resp.ErrorCode), resp.ErrorMessage)
			if retryable(e) {
				continue // re-sent on the next attempt
			}
			return fmt.Errorf("record %d: %w", resp.Id, e)
		}
		if resp.Id < uint64(len(out)) && out[resp.Id] == nil {
			out[resp.Id] = &Submitted{Index: resp.Index, Duplicate: resp.Duplicate, Endpoint: s.endpoints[i]}
			*remaining--
		}
	}
	<-sent
	if sendErr != nil && !errors.Is(sendErr, io.EOF) {
		return sendErr
	}
	if *remaining > 0 {
		return status.Error(codes.Unavailable, "stream ended with records unacknowledged")
	}
	return nil
}
