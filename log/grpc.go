package log

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cairnlog/cairn/log/access"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// maxStreamInFlight bounds the records one AppendStream has outstanding, so a
// fast submitter is slowed by flow control instead of growing memory.
const maxStreamInFlight = 8192

// Limits of the gRPC server (#20: one connection without a token opened
// 20,000 silent streams, 20,043 goroutines, and idle connections were never
// closed). docs/threat-model.md lists them under "Limits enforced by the log".
const (
	// GRPCMaxConcurrentStreams bounds the calls open at once on one
	// connection; a stream beyond it is refused (HTTP/2 REFUSED_STREAM), and
	// grpc-go clients queue such calls until a slot frees. It is above the
	// 512 concurrent unary appends of BenchmarkAppend over one connection.
	GRPCMaxConcurrentStreams = 1024
	// GRPCMaxConnectionIdle closes (GOAWAY) a connection that has had no
	// open call for this long.
	GRPCMaxConnectionIdle = 5 * time.Minute
	// GRPCKeepaliveTime is how long a connection may be silent before the
	// server pings it; GRPCKeepaliveTimeout closes it if the ping is not
	// answered, so dead peers do not hold connections.
	GRPCKeepaliveTime    = 2 * time.Minute
	GRPCKeepaliveTimeout = 20 * time.Second
	// GRPCKeepaliveMinTime is the shortest ping interval a client may use;
	// a client pinging more often is disconnected (ENHANCE_YOUR_CALM).
	// Pings are allowed on connections without calls.
	GRPCKeepaliveMinTime = 30 * time.Second
	// StreamFirstMessageTimeout ends (DeadlineExceeded) an AppendStream on
	// which no record arrives this long after it opened.
	StreamFirstMessageTimeout = 30 * time.Second
	// grpcStreamWorkers is how many goroutines the server keeps to run
	// calls on (grpc.NumStreamWorkers); a call arriving while all are busy
	// gets a goroutine of its own, as without workers. A worker keeps the
	// stack a call grew (grpc-go replaces it after 65,536 calls), so
	// unary appends stop paying for stack growth (runtime.copystack, 14%
	// of BenchmarkAppend's profile: Tessera's dedup and its OpenTelemetry
	// attributes run on the caller's goroutine) on a fresh goroutine's stack.
	// Sized for the 512 concurrent unary appends of BenchmarkAppend with
	// room (512 workers left some calls to fresh goroutines); the workers
	// keep their stacks while idle: 16–22 MiB of stacks after that
	// benchmark, against 1–5 MiB without workers.
	grpcStreamWorkers = 1024
	// appendRequestOverhead is the room an AppendRequest needs besides its
	// payload: idempotency key and content type (≤ 255 bytes each), two
	// varints, a bool, field tags and lengths.
	appendRequestOverhead = 1 << 10
)

// grpcServerOptions returns the gRPC server's limits for cfg. A message over
// MaxRecvMsgSize (MaxBatchBytes, the largest AppendBatch) is refused by gRPC
// with ResourceExhausted before it is decoded, the same code the log gives a
// payload over MaxRecordBytes.
func grpcServerOptions(cfg Config) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(max(cfg.MaxRecordBytes+appendRequestOverhead, cfg.MaxBatchBytes)),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.NumStreamWorkers(grpcStreamWorkers),
		grpc.MaxConcurrentStreams(GRPCMaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: GRPCMaxConnectionIdle,
			Time:              GRPCKeepaliveTime,
			Timeout:           GRPCKeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             GRPCKeepaliveMinTime,
			PermitWithoutStream: true,
		}),
	}
}

// grpcServer implements cairnv1.LogServer on a Log.
type grpcServer struct {
	cairnv1.UnimplementedLogServer
	l *Log
	// firstMessageTimeout overrides StreamFirstMessageTimeout when non-zero (tests).
	firstMessageTimeout time.Duration
}

func submissionOf(r *cairnv1.AppendRequest) Submission {
	return Submission{
		Payload:        r.GetPayload(),
		ContentType:    r.GetContentType(),
		IdempotencyKey: r.GetIdempotencyKey(),
		Timestamp:      r.GetTimestampUnixMillis(),
		Subjects:       r.GetSubject(),
	}
}

// writer authenticates a gRPC caller, checks the append role and takes one
// record from its rate; the principal's name becomes the record's submitter.
func (s *grpcServer) writer(ctx context.Context) (string, error) {
	p, err := s.l.guard.fromGRPC(ctx)
	if err != nil {
		return "", err
	}
	if err := s.l.guard.authorize(p, access.RoleAppend); err != nil {
		return "", err
	}
	return p.name, s.l.guard.allow(p)
}

// streamPrincipal is an AppendStream's caller as last identified, and the
// access file in force then.
type streamPrincipal struct {
	file *access.File
	p    principal
	ok   bool
}

// streamWriter is writer for one record of a stream: the caller is
// identified again (its token decoded and hashed, 1–2 µs) only when the
// access file in force has changed since c was filled, so a revoked token
// stops the stream at the next reload, as with a check per record. The role
// and the rate are checked per record.
func (s *grpcServer) streamWriter(ctx context.Context, c *streamPrincipal) (string, error) {
	g := s.l.guard
	// Read before identifying: a reload in between leaves c with the
	// older file, and the next record identifies again.
	if f := g.inForce(); !c.ok || f != c.file {
		p, err := g.fromGRPC(ctx)
		if err != nil {
			c.ok = false
			return "", err
		}
		*c = streamPrincipal{file: f, p: p, ok: true}
	}
	if err := g.authorize(c.p, access.RoleAppend); err != nil {
		return "", err
	}
	return c.p.name, g.allow(c.p)
}

// reader authorizes reading record contents.
func (s *grpcServer) reader(ctx context.Context) error {
	p, err := s.l.guard.fromGRPC(ctx)
	return s.l.guard.canReadContents(p, err)
}

func (s *grpcServer) Append(ctx context.Context, r *cairnv1.AppendRequest) (*cairnv1.AppendResponse, error) {
	s.l.metrics.requests.WithLabelValues("grpc").Inc()
	who, err := s.writer(ctx)
	if err != nil {
		s.l.metrics.rejected.Inc()
		return nil, grpcStatus(err)
	}
	sub := submissionOf(r)
	ctx = withRetry(ctx, nil)
	if r.GetWaitForReceipt() {
		a, rc, err := s.l.AppendAndWait(ctx, sub, who)
		if err != nil {
			return nil, grpcStatus(err)
		}
		return &cairnv1.AppendResponse{Id: r.GetId(), Index: a.Index, Duplicate: a.Duplicate, Leaf: a.Leaf, Receipt: rc}, nil
	}
	a, err := s.l.Append(ctx, sub, who)
	if err != nil {
		return nil, grpcStatus(err)
	}
	return &cairnv1.AppendResponse{Id: r.GetId(), Index: a.Index, Duplicate: a.Duplicate, Leaf: a.Leaf}, nil
}

// AppendStream pipelines appends: each request is enqueued as soon as it is
// read, and its response is sent once Tessera durably assigns its index.
func (s *grpcServer) AppendStream(stream grpc.BidiStreamingServer[cairnv1.AppendRequest, cairnv1.AppendResponse]) error {
	ctx := withRetry(stream.Context(), nil)
	// Authenticate before reading any record, so an unauthenticated stream
	// ends with Unauthenticated/PermissionDenied and nothing sequenced.
	if _, err := s.writer(ctx); err != nil {
		s.l.metrics.rejected.Inc()
		return grpcStatus(err)
	}
	r, err := s.recvFirst(stream)
	if err != nil {
		return err
	}
	results := make(chan *cairnv1.AppendResponse, 1024)
	slots := make(chan struct{}, maxStreamInFlight)
	queued := make(chan queuedAppend, maxStreamInFlight)
	sendErr := make(chan error, 1)

	// The sender owns stream.Send; it ends when results is closed.
	go func() {
		var err error
		for resp := range results {
			if err == nil {
				err = stream.Send(resp)
			}
			<-slots
		}
		sendErr <- err
	}()
	// The awaiter owns the futures: it waits for them in the order the
	// records were enqueued (the order Tessera's queue sequences them in,
	// so few wait behind a slower one) and closes results after the last.
	// One goroutine per stream rather than one per record: those were a
	// tenth of a stream's CPU (creation, scheduling, their stacks scanned
	// by every GC) in the profiles of #19.
	go func() {
		defer close(results)
		for q := range queued {
			a, err := q.f()
			resp := &cairnv1.AppendResponse{Id: q.id}
			if err != nil {
				resp.ErrorCode = int32(grpcCode(err))
				resp.ErrorMessage = err.Error()
			} else {
				resp.Index, resp.Duplicate = a.Index, a.Duplicate
			}
			results <- resp
		}
	}()

	var recvErr error
	var caller streamPrincipal
	requests := s.l.metrics.requests.WithLabelValues("stream")
	for r != nil {
		requests.Inc()
		slots <- struct{}{}
		// Checked per record: a revoked token stops an open stream (at the
		// access file's next reload), and the rate limit applies to
		// records, not streams.
		var f func() (Appended, error)
		if who, err := s.streamWriter(ctx, &caller); err != nil {
			s.l.metrics.rejected.Inc()
			f = func() (Appended, error) { return Appended{}, err }
		} else {
			_, f = s.l.add(ctx, submissionOf(r), who)
		}
		// slots bounds the records in flight to queued's capacity, so
		// this never blocks.
		queued <- queuedAppend{id: r.GetId(), f: f}
		if r, err = stream.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				recvErr = err
			}
			break
		}
	}
	// The awaiter finishes every outstanding future, then stops the sender.
	close(queued)
	if err := <-sendErr; err != nil {
		return err
	}
	if recvErr != nil {
		return fmt.Errorf("receiving from stream: %w", recvErr)
	}
	return nil
}

// queuedAppend is a stream's record waiting for its index.
type queuedAppend struct {
	id uint64
	f  func() (Appended, error)
}

// recvFirst waits for an AppendStream's first message, at most
// StreamFirstMessageTimeout. A stream that ends cleanly first gives
// (nil, nil). On timeout the handler returns, gRPC ends the stream, and that
// ends the receiving goroutine: the stream owns it.
func (s *grpcServer) recvFirst(stream grpc.BidiStreamingServer[cairnv1.AppendRequest, cairnv1.AppendResponse]) (*cairnv1.AppendRequest, error) {
	timeout := s.firstMessageTimeout
	if timeout == 0 {
		timeout = StreamFirstMessageTimeout
	}
	type received struct {
		r   *cairnv1.AppendRequest
		err error
	}
	got := make(chan received, 1)
	go func() {
		r, err := stream.Recv()
		got <- received{r, err}
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-got:
		if errors.Is(m.err, io.EOF) {
			return nil, nil
		}
		if m.err != nil {
			return nil, fmt.Errorf("receiving from stream: %w", m.err)
		}
		return m.r, nil
	case <-t.C:
		return nil, status.Errorf(codes.DeadlineExceeded, "no record within %v of opening the stream", timeout)
	}
}

func (s *grpcServer) GetCheckpoint(ctx context.Context, _ *cairnv1.GetCheckpointRequest) (*cairnv1.GetCheckpointResponse, error) {
	cp, err := s.l.checkpoint(ctx)
	if err != nil {
		return nil, grpcStatus(err)
	}
	return &cairnv1.GetCheckpointResponse{Checkpoint: cp}, nil
}

func (s *grpcServer) GetEntries(ctx context.Context, r *cairnv1.GetEntriesRequest) (*cairnv1.GetEntriesResponse, error) {
	if err := s.reader(ctx); err != nil {
		return nil, grpcStatus(err)
	}
	if r.GetDecrypt() {
		if err := s.l.guard.canDecrypt(s.l.guard.fromGRPC(ctx)); err != nil {
			return nil, grpcStatus(err)
		}
	}
	budget := MaxEntriesResponseBytes - entriesResponseOverhead
	if r.GetDecrypt() {
		budget = decryptedEntriesBudget
	}
	entries, truncated, err := s.l.entriesWithin(ctx, r.GetStart(), r.GetCount(), budget)
	if err != nil {
		return nil, grpcStatus(err)
	}
	resp := &cairnv1.GetEntriesResponse{Entries: entries, Truncated: truncated}
	if r.GetDecrypt() {
		if resp.Records, err = s.l.decodeAll(ctx, r.GetStart(), entries); err != nil {
			return nil, grpcStatus(err)
		}
	}
	return resp, nil
}

func (s *grpcServer) GetInclusionProof(ctx context.Context, r *cairnv1.GetInclusionProofRequest) (*cairnv1.GetInclusionProofResponse, error) {
	size, p, err := s.l.inclusionProof(ctx, r.GetIndex(), r.GetTreeSize())
	if err != nil {
		return nil, grpcStatus(err)
	}
	return &cairnv1.GetInclusionProofResponse{Index: r.GetIndex(), TreeSize: size, Proof: p}, nil
}

func (s *grpcServer) GetConsistencyProof(ctx context.Context, r *cairnv1.GetConsistencyProofRequest) (*cairnv1.GetConsistencyProofResponse, error) {
	to, p, err := s.l.consistencyProof(ctx, r.GetFromSize(), r.GetToSize())
	if err != nil {
		return nil, grpcStatus(err)
	}
	return &cairnv1.GetConsistencyProofResponse{FromSize: r.GetFromSize(), ToSize: to, Proof: p}, nil
}

func (s *grpcServer) GetReceipt(ctx context.Context, r *cairnv1.GetReceiptRequest) (*cairnv1.GetReceiptResponse, error) {
	if err := s.reader(ctx); err != nil {
		return nil, grpcStatus(err)
	}
	rc, leaf, err := s.l.Receipt(ctx, r.GetIndex())
	if err != nil {
		return nil, grpcStatus(err)
	}
	return &cairnv1.GetReceiptResponse{Receipt: rc, Leaf: leaf}, nil
}

// decryptedEntriesBudget is the leaves' share of a GetEntries answer with
// decrypt: every entry comes twice (leaf and record, the record no larger
// than the leaf) with at most recordOverhead bytes of fields besides.
const (
	recordOverhead         = 512
	decryptedEntriesBudget = (MaxEntriesResponseBytes - entriesResponseOverhead - MaxEntriesPerCall*recordOverhead) / 2
)

func (s *grpcServer) Erase(ctx context.Context, r *cairnv1.EraseRequest) (*cairnv1.EraseResponse, error) {
	who, err := s.l.guard.admin(s.l.guard.fromGRPC(ctx))
	if err != nil {
		return nil, grpcStatus(err)
	}
	e, err := s.l.Erase(ctx, r.GetSubject(), r.GetReason(), who)
	if err != nil {
		return nil, grpcStatus(err)
	}
	return &cairnv1.EraseResponse{SubjectHash: e.SubjectHash[:], Index: e.Index, AlreadyErased: e.AlreadyErased,
		ErasedAtUnixMillis: e.ErasedAt.UnixMilli(), Leaf: e.Leaf}, nil
}
