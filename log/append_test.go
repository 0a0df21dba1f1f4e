package log

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/record"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// #20: now.Sub saturates at ±292 years and the negation of the saturated
// value overflowed, so far-future timestamps passed the skew check.
func TestClockSkewIsComparedInIntegers(t *testing.T) {
	now := time.UnixMilli(1795527000000) // 2026-11-24T12:50:00Z
	nowMs := uint64(now.UnixMilli())
	skew := 10 * time.Minute
	for _, c := range []struct {
		name string
		ts   uint64
		ok   bool
	}{
		{"now", nowMs, true},
		{"at the past edge", nowMs - 600_000, true},
		{"at the future edge", nowMs + 600_000, true},
		{"1 ms past the past edge", nowMs - 600_001, false},
		{"1 ms past the future edge", nowMs + 600_001, false},
		{"epoch + 1 ms", 1, false},
		{"year 2350", 12_000_000_000_000, false},
		{"2^62", 1 << 62, false},
		{"2^63-1", 1<<63 - 1, false},
		{"2^63", 1 << 63, false},
		{"2^64-1", 1<<64 - 1, false},
	} {
		err := checkClockSkew(c.ts, now, skew)
		if (err == nil) != c.ok {
			t.Errorf("%s (%d): err = %v, want ok=%v", c.name, c.ts, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: %v does not wrap ErrInvalidRecord", c.name, err)
		}
	}
}

// FuzzTimestampHeader checks the Cairn-Timestamp parse and the skew check
// against arbitrary-precision arithmetic: a header is accepted only if it is
// a decimal uint64 within maxSkew of now.
func FuzzTimestampHeader(f *testing.F) {
	f.Add("1795527000000", int64(1795527000000), int64(600_000))
	f.Add("12000000000000", int64(1795527000000), int64(600_000))
	f.Add("9223372036854775807", int64(1795527000000), int64(600_000))
	f.Add("18446744073709551615", int64(0), int64(1<<62))
	f.Add("0", int64(0), int64(0))
	f.Add("-1", int64(1), int64(1))
	f.Add("+5", int64(5), int64(0))
	f.Fuzz(func(t *testing.T, h string, nowMs, skewMs int64) {
		if nowMs < 0 || skewMs < 0 || skewMs > int64(1<<63-1)/int64(time.Millisecond) {
			return
		}
		ts, err := parseTimestamp(h)
		if err != nil {
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("parse error %v does not wrap ErrInvalidRecord", err)
			}
			if _, perr := strconv.ParseUint(h, 10, 64); perr == nil {
				t.Fatalf("refused the uint64 %q: %v", h, err)
			}
			return
		}
		if strconv.FormatUint(ts, 10) != strings.TrimLeft(h, "0") && !(ts == 0 && strings.Trim(h, "0") == "") {
			t.Fatalf("%q parsed as %d", h, ts)
		}
		err = checkClockSkew(ts, time.UnixMilli(nowMs), time.Duration(skewMs)*time.Millisecond)
		diff := new(big.Int).Sub(new(big.Int).SetUint64(ts), big.NewInt(nowMs))
		within := diff.Abs(diff).Cmp(big.NewInt(skewMs)) <= 0
		if (err == nil) != within {
			t.Fatalf("ts %d now %d skew %d ms: err = %v, but within = %v", ts, nowMs, skewMs, err, within)
		}
	})
}

// Far-future timestamps are refused on both APIs (#20), and nothing is sequenced.
func TestFarFutureTimestampsAreRejected(t *testing.T) {
	tl := newTestLog(t)
	for _, ts := range []uint64{12_000_000_000_000, 1<<63 - 1, 1 << 63, 1<<64 - 1, uint64(time.Now().Add(time.Hour).UnixMilli())} {
		_, err := tl.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: []byte("x"), IdempotencyKey: "k", TimestampUnixMillis: ts})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "allowed skew") {
			t.Errorf("gRPC timestamp %d: %v, want InvalidArgument (allowed skew)", ts, err)
		}
		code, body := postAdd(t, tl.base, []byte("x"), http.Header{"Cairn-Timestamp": {strconv.FormatUint(ts, 10)}})
		if code != http.StatusBadRequest || !strings.Contains(body, "allowed skew") {
			t.Errorf("HTTP Cairn-Timestamp %d: %d %q, want 400 (allowed skew)", ts, code, body)
		}
	}
	if r := appendGRPC(t, tl.api, "after"); r.Index != 0 {
		t.Fatalf("next record got index %d, want 0: a refused record was sequenced", r.Index)
	}
}

// Without an Idempotency-Key every request is its own record, stamped with
// the log's receive time; with the same key a repeat is the same record.
func TestAddWithoutKeyIsItsOwnRecord(t *testing.T) {
	tl := newTestLog(t)
	body := []byte("user alice logged in")
	before := uint64(time.Now().UnixMilli())
	code1, idx1 := postAdd(t, tl.base, body, nil)
	code2, idx2 := postAdd(t, tl.base, body, nil)
	if code1 != 200 || code2 != 200 || idx1 == idx2 {
		t.Fatalf("two identical bodies without a key: %d %q and %d %q, want two indices", code1, idx1, code2, idx2)
	}
	keyed := http.Header{"Idempotency-Key": {"login-1"}}
	code3, idx3 := postAdd(t, tl.base, body, keyed)
	code4, idx4 := postAdd(t, tl.base, body, keyed)
	if code3 != 200 || code4 != 200 || idx3 != idx4 || idx3 == idx1 || idx3 == idx2 {
		t.Fatalf("the same body with the same key: %d %q and %d %q, want one new index", code3, idx3, code4, idx4)
	}

	// gRPC: an empty key and timestamp 0 follow the same rule.
	req := &cairnv1.AppendRequest{Payload: body}
	g1, err1 := tl.api.Append(context.Background(), req)
	g2, err2 := tl.api.Append(context.Background(), req)
	if err1 != nil || err2 != nil || g1.Index == g2.Index || g2.Duplicate {
		t.Fatalf("gRPC without a key: %v %v, %v %v; want two records", g1, err1, g2, err2)
	}
	after := uint64(time.Now().UnixMilli())
	for _, g := range []*cairnv1.AppendResponse{g1, g2} {
		r, err := record.Decode(g.Leaf)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.IdempotencyKey, autoKeyPrefix) || len(r.IdempotencyKey) != len(autoKeyPrefix)+32 {
			t.Errorf("log-picked key %q, want %s + 32 hex digits", r.IdempotencyKey, autoKeyPrefix)
		}
		if r.Timestamp < before || r.Timestamp > after {
			t.Errorf("log-stamped time %d, want the receive time in [%d, %d]", r.Timestamp, before, after)
		}
	}
	req.IdempotencyKey = "login-2"
	g3, err3 := tl.api.Append(context.Background(), req)
	g4, err4 := tl.api.Append(context.Background(), req)
	if err3 != nil || err4 != nil || g3.Index != g4.Index || !g4.Duplicate {
		t.Fatalf("gRPC with the same key: %v %v, %v %v; want one record", g3, err3, g4, err4)
	}

	// The records without a key are distinct leaves in the published tree.
	tl.waitForSize(t, tl.vkey, 5)
	n1, _ := strconv.ParseUint(strings.TrimSpace(idx1), 10, 64)
	n2, _ := strconv.ParseUint(strings.TrimSpace(idx2), 10, 64)
	for _, n := range []uint64{n1, n2} {
		e, err := tl.api.GetEntries(context.Background(), &cairnv1.GetEntriesRequest{Start: n, Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		r, err := record.Decode(e.Entries[0])
		if err != nil {
			t.Fatal(err)
		}
		if r.Timestamp < before || r.Timestamp > after || !strings.HasPrefix(r.IdempotencyKey, autoKeyPrefix) {
			t.Errorf("HTTP record %d: timestamp %d key %q, want the receive time and a log-picked key", n, r.Timestamp, r.IdempotencyKey)
		}
	}
}

// A body over --max-record-bytes is answered 413 while the client is still
// sending: the log reads no more than the limit (plus socket buffers).
func TestOversizedBodyIs413WithoutReadingIt(t *testing.T) {
	tl := newTestLog(t)
	const declared = 1 << 30
	for _, chunked := range []bool{false, true} {
		conn, err := net.Dial("tcp", tl.HTTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		head := "POST /add HTTP/1.1\r\nHost: cairn\r\n"
		if chunked {
			head += "Transfer-Encoding: chunked\r\n\r\n"
		} else {
			head += fmt.Sprintf("Content-Length: %d\r\n\r\n", declared)
		}
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		sent := make(chan int64, 1)
		go func() {
			chunk := make([]byte, 32<<10)
			if chunked {
				chunk = append(fmt.Appendf(nil, "%x\r\n", len(chunk)), append(chunk, "\r\n"...)...)
			}
			var n int64
			for n < declared {
				w, err := conn.Write(chunk)
				n += int64(w)
				if err != nil {
					break
				}
			}
			sent <- n
		}()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("chunked=%v: no answer while sending: %v", chunked, err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked=%v: %s %q, want 413", chunked, resp.Status, msg)
		}
		conn.Close()
		// The writer stops when the server closes; everything it managed to
		// write is bounded by the limit plus loopback socket buffers.
		if n := <-sent; n >= declared || n > DefaultMaxRecordBytes+32<<20 {
			t.Fatalf("chunked=%v: the client sent %d bytes before being stopped", chunked, n)
		}
	}
}

// Too large is ResourceExhausted on gRPC, whether the log or gRPC's receive
// limit refuses it; JSON that is not JSON is 400/InvalidArgument with the offset.
func TestRecordSizeAndJSONErrors(t *testing.T) {
	tl := newTestLog(t)
	ctx := context.Background()
	for _, n := range []int{DefaultMaxRecordBytes + 1, DefaultMaxRecordBytes + 4<<10, 1 << 20} {
		_, err := tl.api.Append(ctx, &cairnv1.AppendRequest{Payload: make([]byte, n), IdempotencyKey: "big"})
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("gRPC payload of %d bytes: %v, want ResourceExhausted", n, err)
		}
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON"} {
		_, err := tl.api.Append(ctx, &cairnv1.AppendRequest{Payload: []byte(`{"a":1,}`), ContentType: ct, IdempotencyKey: "j"})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "offset 8") {
			t.Errorf("gRPC %s that is not JSON: %v, want InvalidArgument at offset 8", ct, err)
		}
		code, body := postAdd(t, tl.base, []byte(`{"a":1} {`), http.Header{"Content-Type": {ct}})
		if code != http.StatusBadRequest || !strings.Contains(body, "offset 9") {
			t.Errorf("HTTP %s that is not JSON: %d %q, want 400 at offset 9", ct, code, body)
		}
	}
	if code, body := postAdd(t, tl.base, []byte(`{"a":1}`), http.Header{"Content-Type": {"application/json; charset=utf-8"}}); code != 200 || strings.TrimSpace(body) != "0" {
		t.Fatalf("valid JSON: %d %q, want index 0 (nothing refused was sequenced)", code, body)
	}
	// Not declared JSON: not checked.
	if code, body := postAdd(t, tl.base, []byte(`{"a":1,}`), http.Header{"Content-Type": {"text/plain"}}); code != 200 {
		t.Fatalf("text/plain: %d %q", code, body)
	}
}

// AppendStream waits for its records' indices in one goroutine per stream
// (#19); every record still gets exactly one response: invalid ones their
// error, repeats of a key the first occurrence's index, marked duplicate.
// On mysql+s3 it also proves that the awaiter does not serialise the
// batched antispam lookups (before, each record waited out a sequencing
// batch and the stream did not finish within its minute).
func TestAppendStreamAnswersEveryRecordOnceAmongRejectsAndDuplicates(t *testing.T) {
	forEachDriver(t, testAppendStreamAnswersEveryRecordOnce)
}

func testAppendStreamAnswersEveryRecordOnce(t *testing.T, tl *testLog) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := tl.api.AppendStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	// Every 10th record is invalid (empty payload); records from 2000 on
	// repeat the keys of records 0..999.
	key := func(i int) int {
		if i >= 2000 {
			return i - 2000
		}
		return i
	}
	go func() {
		for i := range n {
			r := &cairnv1.AppendRequest{Id: uint64(i), Payload: fmt.Appendf(nil, "record %d", key(i)), IdempotencyKey: strconv.Itoa(key(i))}
			if i%10 == 9 {
				r.Payload = nil
			}
			if err := st.Send(r); err != nil {
				return
			}
		}
		_ = st.CloseSend()
	}()
	got := map[uint64]*cairnv1.AppendResponse{}
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got[r.Id] != nil {
			t.Fatalf("two responses for record %d", r.Id)
		}
		got[r.Id] = r
	}
	if len(got) != n {
		t.Fatalf("%d responses for %d records", len(got), n)
	}
	indices := map[uint64]int{}
	for i := range n {
		r := got[uint64(i)]
		switch {
		case i%10 == 9:
			if codes.Code(r.ErrorCode) != codes.InvalidArgument {
				t.Fatalf("record %d (empty payload): code %v %q, want InvalidArgument", i, codes.Code(r.ErrorCode), r.ErrorMessage)
			}
		case r.ErrorCode != 0:
			t.Fatalf("record %d: %s", i, r.ErrorMessage)
		case i >= 2000:
			first := got[uint64(i-2000)]
			if !r.Duplicate || r.Index != first.Index {
				t.Fatalf("record %d repeats record %d's key: index %d duplicate %v, want index %d duplicate", i, i-2000, r.Index, r.Duplicate, first.Index)
			}
		default:
			if r.Duplicate {
				t.Fatalf("record %d is new but answered duplicate", i)
			}
			if j, ok := indices[r.Index]; ok {
				t.Fatalf("records %d and %d both got index %d", j, i, r.Index)
			}
			indices[r.Index] = i
		}
	}
}
