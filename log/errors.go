package log

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Outcomes a caller branches on. Every error the log returns wraps one of
// these; grpcStatus and httpStatus are the one place each protocol maps them.
var (
	// ErrInvalidRecord: the submission cannot become a record (empty, too large, bad field).
	ErrInvalidRecord = errors.New("invalid record")
	// errUnsupportedMediaType: POST /add got a body it does not take (HTTP 415).
	errUnsupportedMediaType = errors.New("unsupported media type")
	// ErrRecordTooLarge: the payload is over the log's --max-record-bytes
	// (HTTP 413, gRPC ResourceExhausted, as gRPC answers a message over its
	// receive limit).
	ErrRecordTooLarge = errors.New("record too large")
	// ErrInvalidRequest: a read request asks for something malformed.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrNotFound: the requested entry, tile or checkpoint does not exist (yet).
	ErrNotFound = errors.New("not found")
	// ErrPushback: the log is saturated; retry later.
	ErrPushback = errors.New("pushback")
	// ErrUnavailable: storage or Tessera failed; nothing was acknowledged.
	ErrUnavailable = errors.New("unavailable")
	// ErrShuttingDown: the log is draining and accepts no more records.
	ErrShuttingDown = errors.New("log is shutting down")
	// ErrFailedPrecondition: the request is well-formed but the log's state
	// refuses it: an erased subject, a subject under a legal hold, a log
	// without a key-encryption key (gRPC FailedPrecondition, HTTP 409).
	ErrFailedPrecondition = errors.New("failed precondition")
)

// grpcCode maps a log error to its gRPC status code.
func grpcCode(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, ErrPruned):
		return codes.FailedPrecondition
	case errors.Is(err, ErrInvalidRecord), errors.Is(err, ErrInvalidRequest), errors.Is(err, errUnsupportedMediaType):
		return codes.InvalidArgument
	case errors.Is(err, ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ErrFailedPrecondition):
		return codes.FailedPrecondition
	case errors.Is(err, ErrUnauthenticated):
		return codes.Unauthenticated
	case errors.Is(err, ErrPermissionDenied):
		return codes.PermissionDenied
	case errors.Is(err, ErrPushback), errors.Is(err, ErrRateLimited), errors.Is(err, ErrRecordTooLarge):
		return codes.ResourceExhausted
	case errors.Is(err, ErrShuttingDown), errors.Is(err, ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	default:
		return codes.Internal
	}
}

// retryDelay is the wait a pushed-back caller is told (HTTP Retry-After,
// gRPC RetryInfo).
const retryDelay = time.Second

// retryLater reports whether err is a refusal that the same request may get
// past later: pushback, a rate limit, a draining or failing frontend.
func retryLater(err error) bool {
	return errors.Is(err, ErrPushback) || errors.Is(err, ErrRateLimited) ||
		errors.Is(err, ErrShuttingDown) || errors.Is(err, ErrUnavailable)
}

// grpcStatus converts a log error to a gRPC status error. A refusal worth
// retrying carries a google.rpc.RetryInfo detail: that is how a client tells
// pushback (ResourceExhausted with RetryInfo) from a record that is too large
// (ResourceExhausted without), which no retry fixes.
func grpcStatus(err error) error {
	if err == nil {
		return nil
	}
	st := status.New(grpcCode(err), err.Error())
	if retryLater(err) {
		if d, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryDelay)}); derr == nil {
			st = d
		}
	}
	return st.Err()
}

// httpStatus maps a log error to its HTTP status code.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, ErrRecordTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errUnsupportedMediaType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, ErrPruned):
		return http.StatusGone
	}
	switch grpcCode(err) {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.FailedPrecondition:
		return http.StatusConflict
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable, codes.Canceled:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

// writeHTTPError answers with the status for err, a Retry-After where a retry
// may succeed, and the error text as a plain-text body.
func writeHTTPError(w http.ResponseWriter, err error) {
	code := httpStatus(err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if retryLater(err) {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryDelay/time.Second)))
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cairn"`)
	}
	w.WriteHeader(code)
	_, _ = w.Write([]byte(err.Error() + "\n"))
}
