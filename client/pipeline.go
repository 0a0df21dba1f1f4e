package client

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
)

// An audit reads two resources per 256 records (an entry bundle and its
// level-0 tile). Asked one at a time through net/http, each request costs
// the auditor and the log a round of system calls and goroutine wake-ups:
// in the profiles of #19 that was more CPU per record, on both sides, than
// hashing the records. So an audit pipelines its reads (RFC 9112 §9.3.2):
// on each of a few HTTP/1.1 connections it writes the requests for many
// bundles and tiles ahead and reads the answers in order, many to a read.
// net/http's client does not pipeline; the wire format is still net/http's
// own (http.ReadResponse parses every answer).
//
// A bundle or tile answered with anything but 200 is read again one request
// at a time, as before, with the same errors (a 404, a 410, an outage), and
// the rest goes on pipelined; a connection that the server ends is replaced,
// and one that delivers nothing leaves the rest to one request at a time.

// pipelineConns is how many connections an audit pipelines on; each also
// hashes what it reads. The log answers a connection's requests one after
// another, so on a loaded machine, where either process waits for a core,
// each connection is a chain of waits: with 8 a replay beside other work
// ran 1.3–1.5× faster than with 4, at the same CPU per record (#19).
const pipelineConns = 8

// pipelineChunk is how many bundles one pipelined connection reads in a
// round of an audit (client/audit.go).
const pipelineChunk = 1024

// pipelineFlush is how many bundles' requests are written per flush.
const pipelineFlush = 16

// pairFunc receives bundle k and its level-0 tile, read whole; both are
// the pipeline's buffers, overwritten after it returns (bundle may be
// overwritten by the callee too).
type pairFunc func(k uint64, bundle, tile []byte)

// pipelinePairs reads entry bundle k and level-0 tile k, for each k of ks
// in order, on pipelined connections to the log, and calls got for each
// pair. A bundle whose bundle or tile is answered with anything but 200 is
// handed to alone (the caller reads it one request at a time, with the
// errors of that path), and the rest pipelined again on a new connection;
// if a connection fails before it delivers anything, alone gets the rest.
// It stops when alone returns false (the audit is over) or ctx ends.
func (h *httpTiles) pipelinePairs(ctx context.Context, ks []uint64, size uint64, got pairFunc, alone func(k uint64) bool) {
	var bundle, tile []byte
	for len(ks) > 0 && ctx.Err() == nil {
		done, b, t, err := h.pipelineConn(ctx, ks, size, bundle, tile, got)
		bundle, tile = b, t
		ks = ks[done:]
		switch {
		case len(ks) == 0:
			return
		case errors.Is(err, errNotOK):
			if !alone(ks[0]) {
				return
			}
			ks = ks[1:]
		case done == 0:
			for _, k := range ks {
				if !alone(k) {
					return
				}
			}
			return
		}
		// Otherwise the connection ended after delivering some: the server
		// closed it (Connection: close, a limit on requests per
		// connection, often with a reset that drops the answers in
		// flight). The rest on a new one.
	}
}

// errNotOK stops a pipelined connection at an answer other than 200.
var errNotOK = errors.New("not a 200 answer")

// pipelineConn is one connection of pipelinePairs: it delivers a prefix of
// ks and says how long it is; err is nil when the server ended the
// connection cleanly.
func (h *httpTiles) pipelineConn(ctx context.Context, ks []uint64, size uint64, bundle, tile []byte, got pairFunc) (done int, b, t []byte, err error) {
	conn, err := h.dial(ctx)
	if err != nil {
		return 0, bundle, tile, err
	}
	// The connection is closed on every return, which also ends the
	// writer; ctx's cancellation closes it too (in a goroutine of
	// context's, waited for like the writer).
	cancelled := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { conn.Close(); close(cancelled) })
	var writer sync.WaitGroup
	defer func() {
		if !stop() {
			<-cancelled
		}
		conn.Close()
		writer.Wait()
	}()
	writer.Go(func() { h.writeRequests(conn, ks, size) })

	br := bufio.NewReaderSize(conn, 256<<10)
	for done < len(ks) {
		k := ks[done]
		var closing bool
		if bundle, closing, err = h.readAnswer(conn, br, bundle); err != nil {
			return done, bundle, tile, err
		}
		if closing {
			// The tile's request will not be answered.
			return done, bundle, tile, nil
		}
		if tile, closing, err = h.readAnswer(conn, br, tile); err != nil {
			return done, bundle, tile, err
		}
		h.pipelined.Add(1)
		got(k, bundle, tile)
		done++
		if closing {
			return done, bundle, tile, nil
		}
	}
	return done, bundle, tile, nil
}

// readAnswer reads one pipelined answer into buf (grown if needed) and
// whether the server closes the connection after it.
func (h *httpTiles) readAnswer(conn net.Conn, br *bufio.Reader, buf []byte) ([]byte, bool, error) {
	if err := conn.SetReadDeadline(time.Now().Add(h.timeout)); err != nil {
		return buf, false, err
	}
	return parseAnswer(br, buf)
}

// parseAnswer reads one HTTP/1.1 answer from br, its body (gunzipped if
// gzipped) into buf, grown if needed: the server's bytes, untrusted
// (FuzzParseAnswer).
func parseAnswer(br *bufio.Reader, buf []byte) ([]byte, bool, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return buf, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return buf, false, fmt.Errorf("%w: %s", errNotOK, resp.Status)
	}
	var body io.Reader = resp.Body
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return buf, false, err
		}
		body = zr
		resp.ContentLength = -1
	}
	switch {
	case resp.ContentLength > maxResource:
		return buf, false, fmt.Errorf("%d bytes, more than a tile or bundle can be", resp.ContentLength)
	case resp.ContentLength >= 0:
		if int64(cap(buf)) < resp.ContentLength {
			buf = make([]byte, resp.ContentLength)
		}
		buf = buf[:resp.ContentLength]
		_, err = io.ReadFull(body, buf)
	default:
		buf = buf[:0]
		for err == nil && len(buf) <= maxResource {
			if len(buf) == cap(buf) {
				buf = append(buf, 0)[:len(buf)]
			}
			var n int
			n, err = body.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		if len(buf) > maxResource {
			err = fmt.Errorf("more than a tile or bundle can be (%d bytes)", maxResource)
		}
	}
	return buf, resp.Close, err
}

// writeRequests writes the GETs of entry bundle k and level-0 tile k for
// each k of ks, flushing every pipelineFlush bundles; it returns at the
// first failed write (the reader closed the connection).
func (h *httpTiles) writeRequests(conn net.Conn, ks []uint64, size uint64) {
	bw := bufio.NewWriterSize(conn, 32<<10)
	var req []byte
	for i, k := range ks {
		p := layout.PartialTileSize(0, k, size)
		req = h.appendGET(req[:0], layout.EntriesPath(k, p))
		req = h.appendGET(req, layout.TilePath(0, k, p))
		if _, err := bw.Write(req); err != nil {
			return
		}
		if i%pipelineFlush == pipelineFlush-1 || i == len(ks)-1 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}

// appendGET appends a GET request of path below the log's URL.
func (h *httpTiles) appendGET(b []byte, path string) []byte {
	b = append(b, "GET "...)
	uri := h.root.JoinPath(path).RequestURI()
	if !strings.HasPrefix(uri, "/") {
		// The log's URL has no path: JoinPath leaves it relative.
		b = append(b, '/')
	}
	b = append(b, uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, h.root.Host...)
	b = append(b, "\r\nUser-Agent: cairn-audit\r\n"...)
	if h.auth != "" {
		b = append(b, "Authorization: "...)
		b = append(b, h.auth...)
		b = append(b, "\r\n"...)
	}
	if !h.noGzip {
		b = append(b, "Accept-Encoding: gzip\r\n"...)
	}
	return append(b, "\r\n"...)
}

// dial connects to the log as the HTTP client would: TLS with its
// configuration (HTTP/1.1 only) for https.
func (h *httpTiles) dial(ctx context.Context) (net.Conn, error) {
	addr := h.root.Host
	if h.root.Port() == "" {
		if h.root.Scheme == "https" {
			addr = net.JoinHostPort(h.root.Hostname(), "443")
		} else {
			addr = net.JoinHostPort(h.root.Hostname(), "80")
		}
	}
	dctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	if h.root.Scheme != "https" {
		var d net.Dialer
		return d.DialContext(dctx, "tcp", addr)
	}
	cfg := &tls.Config{}
	if h.tls != nil {
		cfg = h.tls.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = h.root.Hostname()
	}
	cfg.NextProtos = []string{"http/1.1"}
	d := tls.Dialer{Config: cfg}
	return d.DialContext(dctx, "tcp", addr)
}
