package index

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"github.com/cairnlog/cairn/format/search"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	grpcstatus "google.golang.org/grpc/status"
)

// grpcStatus maps a domain error to its gRPC status: the one place.
func grpcStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, search.ErrBadQuery):
		code = codes.InvalidArgument
	case errors.Is(err, ErrUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, ErrPermissionDenied):
		code = codes.PermissionDenied
	case errors.Is(err, errNotReady):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return grpcstatus.Error(code, err.Error())
}

type grpcServer struct {
	cairnv1.UnimplementedIndexServer
	x *Index
}

// RegisterGRPC registers the cairn.v1.Index service on s.
func (x *Index) RegisterGRPC(s *grpc.Server) {
	cairnv1.RegisterIndexServer(s, &grpcServer{x: x})
}

func (g *grpcServer) Search(req *cairnv1.SearchRequest, stream grpc.ServerStreamingServer[cairnv1.SearchResponse]) error {
	start := time.Now()
	ctx := stream.Context()
	var auth string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			auth = v[0]
		}
	}
	var tlsState *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			tlsState = &ti.State
		}
	}
	err := g.x.guard.check(auth, tlsState)
	if err != nil {
		return grpcStatus(err)
	}
	q, err := search.QueryFromRequest(req, g.x.known)
	if err != nil {
		return grpcStatus(err)
	}
	next, err := g.x.Search(ctx, q, func(h *search.Hit) error {
		return stream.Send(&cairnv1.SearchResponse{Hit: h.ToProto()})
	})
	if err != nil {
		return grpcStatus(err)
	}
	if next != "" {
		if err := stream.Send(&cairnv1.SearchResponse{NextPage: next}); err != nil {
			return err
		}
	}
	g.x.m.queries.WithLabelValues("grpc").Observe(time.Since(start).Seconds())
	return nil
}
