package log

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairnlog/cairn/log/access"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/grpc"
)

// maxStreamInFlight bounds the records one AppendStream has outstanding, so a
// fast submitter is slowed by flow control instead of growing memory.
const maxStreamInFlight = 8192

// grpcServer implements cairnv1.LogServer on a Log.
type grpcServer struct {
	cairnv1.UnimplementedLogServer
	l *Log
}

func submissionOf(r *cairnv1.AppendRequest) Submission {
	return Submission{
		Payload:        r.GetPayload(),
		ContentType:    r.GetContentType(),
		IdempotencyKey: r.GetIdempotencyKey(),
		Timestamp:      r.GetTimestampUnixMillis(),
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
	results := make(chan *cairnv1.AppendResponse, 1024)
	slots := make(chan struct{}, maxStreamInFlight)
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

	var recvErr error
	var pending sync.WaitGroup
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			recvErr = err
			break
		}
		s.l.metrics.requests.WithLabelValues("stream").Inc()
		slots <- struct{}{}
		id := r.GetId()
		// Re-check per record: a revoked token stops an open stream, and
		// the rate limit applies to records, not streams.
		var f func() (Appended, error)
		if who, err := s.writer(ctx); err != nil {
			s.l.metrics.rejected.Inc()
			f = func() (Appended, error) { return Appended{}, err }
		} else {
			_, f = s.l.add(ctx, submissionOf(r), who)
		}
		pending.Go(func() {
			a, err := f()
			resp := &cairnv1.AppendResponse{Id: id}
			if err != nil {
				resp.ErrorCode = int32(grpcCode(err))
				resp.ErrorMessage = err.Error()
			} else {
				resp.Index, resp.Duplicate = a.Index, a.Duplicate
			}
			results <- resp
		})
	}
	// Wait for every outstanding future, then stop the sender.
	pending.Wait()
	close(results)
	if err := <-sendErr; err != nil {
		return err
	}
	if recvErr != nil {
		return fmt.Errorf("receiving from stream: %w", recvErr)
	}
	return nil
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
	entries, err := s.l.entries(ctx, r.GetStart(), r.GetCount())
	if err != nil {
		return nil, grpcStatus(err)
	}
	return &cairnv1.GetEntriesResponse{Entries: entries}, nil
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
