package log

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// #20: one connection opened 20,000 streams that never sent a message. The
// log now refuses streams beyond GRPCMaxConcurrentStreams on a connection;
// this speaks raw HTTP/2 to ignore the server's SETTINGS as an attacker would.
func TestGRPCRefusesStreamsBeyondTheLimit(t *testing.T) {
	tl := newTestLog(t)
	conn, err := net.Dial("tcp", tl.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/cairn.v1.Log/AppendStream"},
		{":authority", "cairn"}, {"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	const extra = 50
	opened := GRPCMaxConcurrentStreams + extra
	// Write from a goroutine: the server's frames must be read meanwhile.
	writeErr := make(chan error, 1)
	go func() {
		for i := range opened {
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	refused := 0
	for refused < extra {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d refused streams: %v", refused, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok && v != GRPCMaxConcurrentStreams {
				t.Errorf("server advertises %d concurrent streams, want %d", v, GRPCMaxConcurrentStreams)
			}
		case *http2.RSTStreamFrame:
			if f.ErrCode != http2.ErrCodeRefusedStream {
				t.Fatalf("stream %d reset with %v, want REFUSED_STREAM", f.StreamID, f.ErrCode)
			}
			if f.StreamID <= 2*GRPCMaxConcurrentStreams {
				t.Fatalf("stream %d refused, but only %d were open", f.StreamID, (f.StreamID+1)/2-1)
			}
			refused++
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v after %d refused streams", f.ErrCode, refused)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
}

// A stream that sends nothing is ended by the server (StreamFirstMessageTimeout;
// shortened here on a server of the test's own over the same Log).
func TestSilentAppendStreamIsClosed(t *testing.T) {
	tl := newTestLog(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpcServerOptions(tl.cfg)...)
	cairnv1.RegisterLogServer(srv, &grpcServer{l: tl.Log, firstMessageTimeout: 300 * time.Millisecond})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api := cairnv1.NewLogClient(cc)

	silent, err := api.AppendStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := silent.Recv(); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("silent stream: %v, want DeadlineExceeded from the server", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the client's own deadline ended the stream, not the server")
	}

	// A stream that sends at once is served as before.
	st, err := api.AppendStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&cairnv1.AppendRequest{Id: 7, Payload: []byte("prompt"), IdempotencyKey: "p"}); err != nil {
		t.Fatal(err)
	}
	r, err := st.Recv()
	if err != nil || r.Id != 7 || r.ErrorCode != 0 {
		t.Fatalf("prompt stream: %v %v", r, err)
	}
	_ = st.CloseSend()
	// A stream closed without any record ends cleanly.
	empty, err := api.AppendStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = empty.CloseSend()
	if _, err := empty.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("empty stream: %v, want EOF", err)
	}
}
