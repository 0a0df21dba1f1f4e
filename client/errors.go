package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/cairnlog/cairn/format/policy"
)

// ErrVerification is wrapped by every error meaning "what was checked is
// wrong" (a bad signature, a failed proof, a fork, a record that does not
// match its leaf), as opposed to an error that prevented checking (network,
// TLS, I/O). The CLI exits 1 for the former and 2 for the latter. It is the
// policy package's sentinel, so a checkpoint that fails the policy is one too.
var ErrVerification = policy.ErrVerification

// ErrNotInLog is wrapped by the error for an index at or beyond the verified
// tree size: the record is not in the log at this size (it may be sequenced
// but not yet published). Nothing served was wrong, so it is not a
// verification failure; ask again after a larger checkpoint.
var ErrNotInLog = errors.New("not in the log at this size")

// VerificationError is a verification failure found by this package. Its
// message is the reason alone ("entry 300 in tile/entries/001.p/104 hashes
// to …"); errors.Is(err, ErrVerification) holds for it.
type VerificationError struct {
	Reason string
}

func (e *VerificationError) Error() string { return e.Reason }

// Is makes a VerificationError match ErrVerification.
func (e *VerificationError) Is(target error) bool { return target == ErrVerification }

// verifyErr returns a VerificationError with a formatted reason.
func verifyErr(format string, a ...any) error {
	return &VerificationError{Reason: fmt.Sprintf(format, a...)}
}

// notInLog is the error for an index ≥ size.
func notInLog(index, size uint64) error {
	return fmt.Errorf("index %d is %w %d (the latest verified checkpoint)", index, ErrNotInLog, size)
}

// TLSProblem says why a connection failed in a way no retry can fix.
type TLSProblem int

const (
	// UntrustedCertificate: the server's certificate does not verify
	// against the client's roots (unknown authority, wrong name, expired).
	UntrustedCertificate TLSProblem = iota + 1
	// PlaintextServer: the client speaks TLS, the server does not.
	PlaintextServer
	// TLSServer: the client speaks plaintext, the server speaks TLS.
	TLSServer
)

// TLSError is a connection failure that no retry or failover can fix: the
// client's TLS setup does not match the server. Submitter and Log return it
// at once instead of retrying.
type TLSError struct {
	Problem TLSProblem
	Err     error
}

func (e *TLSError) Error() string {
	var what string
	switch e.Problem {
	case UntrustedCertificate:
		what = "the server's TLS certificate is not trusted (is its CA among the client's roots?)"
	case PlaintextServer:
		what = "the server does not speak TLS (the client does)"
	case TLSServer:
		what = "the server speaks TLS (the client does not)"
	}
	return what + ": " + e.Err.Error()
}

func (e *TLSError) Unwrap() error { return e.Err }

// tlsProblem classifies err as a TLS mismatch, or returns 0. gRPC flattens
// transport errors into status messages, so the messages are matched too.
func tlsProblem(err error) TLSProblem {
	if err == nil {
		return 0
	}
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var he x509.HostnameError
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &he) || errors.As(err, &ve) {
		return UntrustedCertificate
	}
	// Tessera's fetcher and gRPC keep only the message of the cause.
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "x509: "), strings.Contains(msg, "tls: failed to verify certificate"):
		return UntrustedCertificate
	case strings.Contains(msg, "first record does not look like a tls handshake"):
		return PlaintextServer
	case strings.Contains(msg, "server gave http response to https client"):
		return PlaintextServer
	case strings.Contains(msg, "http request to an https server"), strings.Contains(msg, "plain http request was sent to https port"):
		return TLSServer
	case strings.Contains(msg, "malformed http response"):
		// an http:// client reading a TLS alert or handshake record
		return TLSServer
	case strings.Contains(msg, "error reading server preface") && strings.Contains(msg, "http2: frame too large"):
		// a plaintext gRPC client reading the TLS server's alert as HTTP/2
		return TLSServer
	}
	return 0
}

// asTLSError wraps err as a *TLSError when it is a TLS mismatch.
func asTLSError(err error) error {
	var te *TLSError
	if errors.As(err, &te) {
		return err
	}
	if p := tlsProblem(err); p != 0 {
		return &TLSError{Problem: p, Err: err}
	}
	return err
}
