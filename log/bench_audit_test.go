package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/childfs"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
)

// auditBenchRecords is the size of BenchmarkAuditReplayLog's log: the
// records of client's BenchmarkAuditReplay, so the two compare (that one
// serves the same shape of log from a plain static file server).
const auditBenchRecords = 1 << 20

// auditRecord is a ~100-byte payload, like client's benchmark log.
func auditRecord(i int) []byte {
	return fmt.Appendf(nil, `{"event":"benchmark","seq":%d,"pad":"%064d"}`, i, i)
}

// buildAuditLog appends n records to a fresh log in a child process (once;
// the directory and its key are kept in the temp directory across runs) and
// returns the directory, the log's signing key and its verifier key.
func buildAuditLog(b *testing.B, n int) (dir, skey, vkey string) {
	b.Helper()
	root := filepath.Join(os.TempDir(), fmt.Sprintf("cairn-bench-auditlog-%d", n))
	dir = filepath.Join(root, "log")
	k, kerr := os.ReadFile(filepath.Join(root, "skey"))
	v, verr := os.ReadFile(filepath.Join(root, "vkey"))
	if kerr == nil && verr == nil {
		return dir, string(k), string(v)
	}
	if err := os.RemoveAll(root); err != nil {
		b.Fatal(err)
	}
	skey, vkey = newKey(b, testOrigin)
	c := startChild(b, dir, skey, envChildDefaults+"=1")
	const size, callers = 1000, 4
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range callers {
		wg.Go(func() {
			for {
				first := int(next.Add(size)) - size
				if first >= n {
					return
				}
				req := &cairnv1.AppendBatchRequest{}
				for i := first; i < min(first+size, n); i++ {
					req.Records = append(req.Records, &cairnv1.AppendRequest{Payload: auditRecord(i), IdempotencyKey: strconv.Itoa(i)})
				}
				if _, err := c.api.AppendBatch(context.Background(), req); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	// Wait for a checkpoint that covers every record, then stop cleanly.
	l := auditClient(b, c.base, vkey)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		v, err := l.Checkpoint(context.Background())
		if err == nil && v.Checkpoint.Size == uint64(n) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("no checkpoint of size %d after 2 minutes (%v)", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.stop(b)
	if err := errors.Join(os.WriteFile(filepath.Join(root, "vkey"), []byte(vkey), 0o600),
		os.WriteFile(filepath.Join(root, "skey"), []byte(skey), 0o600)); err != nil {
		b.Fatal(err)
	}
	return dir, skey, vkey
}

// auditClient is an auditor of the log at base whose key is vkey.
func auditClient(b *testing.B, base, vkey string) *client.Log {
	return auditClientWith(b, base, vkey, client.HTTPOptions{DisableCompression: true})
}

func auditClientWith(b *testing.B, base, vkey string, o client.HTTPOptions) *client.Log {
	b.Helper()
	p, err := policy.Parse([]byte("log " + vkey + "\nquorum none\n"))
	if err != nil {
		b.Fatal(err)
	}
	l, err := client.NewLog(base, p, o)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkAuditReplayLog replays a 1M-record Cairn log served by Cairn
// itself (a child process, POSIX storage): every entry hashed, every tile
// and the root recomputed. It reports records/s (auditor and log sharing
// the box) and each side's CPU per record: client-cpu-ns/record is the
// auditor's, server-cpu-ns/record the log's read path. client's
// BenchmarkAuditReplay is the same replay against a plain static file
// server. The cases:
//
//	uncompressed              cairn audit --disable-compression
//	uncompressed-one-by-one   the same with --no-pipelining
//	gzip                      cairn audit (the log gzips each bundle)
//	static-file-server        the first, the log's files served by Go's
//	                          http.FileServer in a child process instead
func BenchmarkAuditReplayLog(b *testing.B) {
	dir, skey, vkey := buildAuditLog(b, auditBenchRecords)
	c := startChild(b, dir, skey, envChildDefaults+"=1")
	for _, bc := range []struct {
		name string
		http client.HTTPOptions
		opts client.AuditOptions
	}{
		{"uncompressed", client.HTTPOptions{DisableCompression: true}, client.AuditOptions{}},
		{"uncompressed-one-by-one", client.HTTPOptions{DisableCompression: true}, client.AuditOptions{NoPipelining: true}},
		{"gzip", client.HTTPOptions{}, client.AuditOptions{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchAuditReplay(b, c.cmd.Process.Pid, auditClientWith(b, c.base, vkey, bc.http), bc.opts)
		})
	}
	b.Run("static-file-server", func(b *testing.B) {
		base, pid := childfs.Start(b, dir)
		benchAuditReplay(b, pid, auditClient(b, base, vkey), client.AuditOptions{})
	})
}

// benchAuditReplay replays the log l reads, served by process pid.
func benchAuditReplay(b *testing.B, pid int, l *client.Log, o client.AuditOptions) {
	// The first replay warms the page cache and both processes.
	if _, err := l.Audit(context.Background(), nil, o); err != nil {
		b.Fatal(err)
	}
	self0, srv0 := selfCPU(), childCPU(pid)
	b.ResetTimer()
	for range b.N {
		res, err := l.Audit(context.Background(), nil, o)
		if err != nil {
			b.Fatal(err)
		}
		if res.Records != auditBenchRecords {
			b.Fatalf("audited %d records, want %d", res.Records, auditBenchRecords)
		}
	}
	b.StopTimer()
	records := float64(auditBenchRecords * b.N)
	b.ReportMetric(records/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64((selfCPU()-self0).Nanoseconds())/records, "client-cpu-ns/record")
	b.ReportMetric(float64((childCPU(pid)-srv0).Nanoseconds())/records, "server-cpu-ns/record")
	b.ReportMetric(0, "ns/op")
}

// selfCPU is the CPU time (user + system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
