package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/devpki"
	"github.com/cairnlog/cairn/internal/fielderr"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// brokenStream takes one record of an AppendStream, then breaks the stream.
type brokenStream struct {
	cairnv1.UnimplementedLogServer
}

func (brokenStream) AppendStream(st cairnv1.Log_AppendStreamServer) error {
	if _, err := st.Recv(); err != nil {
		return err
	}
	return status.Error(codes.Unavailable, "stream broken after the first record")
}

// ackingStream acknowledges every record of an AppendStream at 1000+id; it
// closes started when its first stream begins.
type ackingStream struct {
	cairnv1.UnimplementedLogServer
	once    sync.Once
	started chan struct{}
}

func (a *ackingStream) AppendStream(st cairnv1.Log_AppendStreamServer) error {
	a.once.Do(func() { close(a.started) })
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := st.Send(&cairnv1.AppendResponse{Id: r.Id, Index: 1000 + r.Id}); err != nil {
			return err
		}
	}
}

// countingListener counts the connections a server accepted.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// serveGRPC runs srv with a Log on 127.0.0.1 and returns its address and
// its accepted-connection counter.
func serveGRPC(t *testing.T, log cairnv1.LogServer, opts ...grpc.ServerOption) (string, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := grpc.NewServer(opts...)
	cairnv1.RegisterLogServer(srv, log)
	go srv.Serve(cl)
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), cl
}

// goroutinesIn counts the goroutines whose stack contains fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

// TestSubmitStreamJoinsItsSenderBeforeFailingOver forces the window of the
// old data race: the first endpoint breaks the stream after one record while
// the sender goroutine is held between two records until its attempt has
// given up (its context ends). A sender that is not joined then sees the
// failover attempt start on the second endpoint and goes on reading the
// results that attempt writes: the test fails, and -race reports the race.
// A joined sender is waited for, so the failover cannot start while it runs
// (the hold then ends after a bound, which costs a passing run 200 ms).
func TestSubmitStreamJoinsItsSenderBeforeFailingOver(t *testing.T) {
	broken, _ := serveGRPC(t, brokenStream{})
	ack := &ackingStream{started: make(chan struct{})}
	acking, _ := serveGRPC(t, ack)
	s, err := NewSubmitter([]string{broken, acking}, SubmitterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var outlived atomic.Bool
	s.beforeSend = func(ctx context.Context, attempt int, id uint64) {
		if attempt == 0 && id == 1 {
			<-ctx.Done() // the attempt has given up
			select {
			case <-ack.started:
				outlived.Store(true)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	records := make([]Record, 64)
	for i := range records {
		records[i] = Record{Payload: []byte{byte(i)}}
	}
	out, err := s.SubmitStream(context.Background(), records)
	if err != nil {
		t.Fatal(err)
	}
	if outlived.Load() {
		t.Fatal("the first attempt's sender was still running when the failover attempt started")
	}
	for i, r := range out {
		if r == nil || r.Index != 1000+uint64(i) || r.Endpoint != acking {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	if n := goroutinesIn("client.(*Submitter).stream"); n != 0 {
		t.Fatalf("%d stream goroutines still running after SubmitStream returned", n)
	}
}

// tlsServerConfig is a TLS config with a loopback certificate from a fresh
// CA, and that CA's pool.
func tlsServerConfig(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	ca, err := devpki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Loopback("test server")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := iss.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, ca.Pool()
}

// TestSubmitFailsAtOnceOnATLSMismatch: an untrusted server certificate, a
// TLS client against a plaintext server and a plaintext client against a TLS
// server are not retried (the old client made 8 attempts over 11 s,
// reconnecting each time): one attempt, a *TLSError that says which
// mismatch it is. The server counts the connections: one, plus the TLS
// probe that tells a TLS server from one that closed the connection.
func TestSubmitFailsAtOnceOnATLSMismatch(t *testing.T) {
	srvTLS, _ := tlsServerConfig(t)
	untrusted, untrustedConns := serveGRPC(t, &fakeLog{}, grpc.Creds(credentials.NewTLS(srvTLS)))
	tlsOnly, tlsOnlyConns := serveGRPC(t, &fakeLog{}, grpc.Creds(credentials.NewTLS(srvTLS)))
	plaintext, plaintextConns := serveGRPC(t, &fakeLog{})
	for _, c := range []struct {
		name      string
		addr      string
		clientTLS *tls.Config
		conns     *countingListener
		want      TLSProblem
		wantConns int64
	}{
		// System roots only: the test CA is not among them.
		{"untrusted certificate", untrusted, &tls.Config{}, untrustedConns, UntrustedCertificate, 1},
		{"plaintext server", plaintext, &tls.Config{}, plaintextConns, PlaintextServer, 1},
		{"plaintext client, TLS server", tlsOnly, nil, tlsOnlyConns, TLSServer, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSubmitter([]string{c.addr}, SubmitterOptions{TLS: c.clientTLS})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Submit(context.Background(), Record{Payload: []byte("x")}, false)
			s.Close()
			var te *TLSError
			if !errors.As(err, &te) || te.Problem != c.want {
				t.Fatalf("Submit: %v, want a *TLSError of kind %d", err, c.want)
			}
			if n := c.conns.accepted.Load(); n != c.wantConns {
				t.Fatalf("the server saw %d connections, want %d (no retry)", n, c.wantConns)
			}
		})
	}
}

// TestLogFailsAtOnceOnATLSMismatch: the HTTP read client reports an
// untrusted certificate, an https:// URL for a plaintext server and an
// http:// URL for a TLS server as *TLSError after one request (the last
// with one TLS probe, since a TLS server answers plaintext with a bare 400).
func TestLogFailsAtOnceOnATLSMismatch(t *testing.T) {
	srvTLS, _ := tlsServerConfig(t)
	serve := func(tlsOn bool) (string, *countingListener) {
		srv := httptest.NewUnstartedServer(http.NotFoundHandler())
		cl := &countingListener{Listener: srv.Listener}
		srv.Listener = cl
		if tlsOn {
			srv.TLS = srvTLS
			srv.StartTLS()
		} else {
			srv.Start()
		}
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String(), cl
	}
	tlsAddr, tlsConns := serve(true)
	tlsAddr2, tlsConns2 := serve(true)
	plainAddr, plainConns := serve(false)
	p := loadPolicy(t, "../testdata/interop.policy")
	for _, c := range []struct {
		name      string
		url       string
		conns     *countingListener
		want      TLSProblem
		wantConns int64
	}{
		{"untrusted certificate", "https://" + tlsAddr, tlsConns, UntrustedCertificate, 1},
		{"https URL for a plaintext server", "https://" + plainAddr, plainConns, PlaintextServer, 1},
		{"http URL for a TLS server", "http://" + tlsAddr2, tlsConns2, TLSServer, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := NewLog(c.url, p, HTTPOptions{TLS: &tls.Config{}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = l.Checkpoint(context.Background())
			var te *TLSError
			if !errors.As(err, &te) || te.Problem != c.want || errors.Is(err, ErrVerification) {
				t.Fatalf("Checkpoint: %v, want a *TLSError of kind %d", err, c.want)
			}
			if n := c.conns.accepted.Load(); n != c.wantConns {
				t.Fatalf("the server saw %d connections, want %d", n, c.wantConns)
			}
		})
	}
}

// TestOptionErrorsNameTheField: constructors name the option at fault, so
// the CLI can name its flag.
func TestOptionErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		field string
		err   error
	}{
		{"endpoints", func() error { _, err := NewSubmitter(nil, SubmitterOptions{}); return err }()},
		{"endpoints", func() error { _, err := NewSubmitter([]string{"https://a:1"}, SubmitterOptions{}); return err }()},
		{"SubmitterOptions.Token", func() error {
			_, err := NewSubmitter([]string{"127.0.0.1:1"}, SubmitterOptions{Token: "abc\ndef"})
			return err
		}()},
		{"SubmitterOptions.Attempts", func() error {
			_, err := NewSubmitter([]string{"127.0.0.1:1"}, SubmitterOptions{Attempts: -1})
			return err
		}()},
		{"SubmitterOptions.Backoff", func() error {
			_, err := NewSubmitter([]string{"127.0.0.1:1"}, SubmitterOptions{Backoff: -1})
			return err
		}()},
		{"Log.URL", func() error { _, err := NewLog("ftp://x", nil, HTTPOptions{}); return err }()},
		{"HTTPOptions.Token", func() error { _, err := NewLog("http://x", nil, HTTPOptions{Token: "a b"}); return err }()},
	} {
		fe, ok := fielderr.As(c.err)
		if !ok || fe.Field != c.field {
			t.Errorf("%v: want a field error naming %s", c.err, c.field)
		}
	}
}
