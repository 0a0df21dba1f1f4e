package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/testport"

	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"golang.org/x/mod/sumdb/note"
)

// The benchmarks run the log in a child process (real sockets, real fsync)
// and drive it with a fixed number of records per iteration; run them with
// -benchtime=1x (make bench does). They report:
//   records/s        sustained append throughput
//   p50/p99-index-ms time from sending a record to its durable index
//   p50/p99-integ-ms time from sending a record to a published checkpoint covering it

const benchRecords = 60000

// latencies collects per-record send times and completion times.
type latencies struct {
	mu      sync.Mutex
	index   []time.Duration
	indexOf map[uint64]time.Time // index → send time, for integration latency
	integ   []time.Duration
}

func newLatencies(n int) *latencies {
	return &latencies{indexOf: make(map[uint64]time.Time, n)}
}

func (l *latencies) done(idx uint64, sent time.Time) {
	now := time.Now()
	l.mu.Lock()
	l.index = append(l.index, now.Sub(sent))
	if _, ok := l.indexOf[idx]; !ok {
		l.indexOf[idx] = sent
	}
	l.mu.Unlock()
}

// followCheckpoints polls the checkpoint and turns newly covered indices into
// integration latencies, until every index in want is covered or ctx ends.
func (l *latencies) followCheckpoints(ctx context.Context, base, vkey string, want uint64) {
	v, _ := note.NewVerifier(vkey)
	var covered uint64
	for covered < want {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
		resp, err := http.Get(base + "/checkpoint")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		n, err := note.Open(b, note.VerifierList(v))
		if err != nil {
			continue
		}
		size, _ := strconv.ParseUint(strings.Split(n.Text, "\n")[1], 10, 64)
		if size <= covered {
			continue
		}
		now := time.Now()
		l.mu.Lock()
		for i := covered; i < size; i++ {
			if sent, ok := l.indexOf[i]; ok {
				l.integ = append(l.integ, now.Sub(sent))
			}
		}
		l.mu.Unlock()
		covered = size
	}
}

func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[int(float64(len(s)-1)*p)].Microseconds()) / 1000
}

func (l *latencies) report(b *testing.B, n int, elapsed time.Duration) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "records/s")
	b.ReportMetric(percentile(l.index, 0.50), "p50-index-ms")
	b.ReportMetric(percentile(l.index, 0.99), "p99-index-ms")
	b.ReportMetric(percentile(l.integ, 0.50), "p50-integ-ms")
	b.ReportMetric(percentile(l.integ, 0.99), "p99-integ-ms")
	b.ReportMetric(0, "ns/op")
}

// benchLog starts a fresh child-process log for one benchmark iteration.
func benchLog(b *testing.B, env ...string) (*childLog, string) {
	skey, vkey := newKey(b, testOrigin)
	return startChild(b, b.TempDir(), skey, append(env, envChildDefaults+"=1")...), vkey
}

func runBench(b *testing.B, drive func(c *childLog, lat *latencies, n int) error) {
	runBenchWith(b, nil, nil, drive)
}

// runBenchWith is runBench on a child log with extra environment env,
// prepared by setup (if any) before the clock starts.
func runBenchWith(b *testing.B, env []string, setup func(c *childLog), drive func(c *childLog, lat *latencies, n int) error) {
	for range b.N {
		b.StopTimer()
		c, vkey := benchLog(b, env...)
		if setup != nil {
			setup(c)
		}
		lat := newLatencies(benchRecords)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		followed := make(chan struct{})
		go func() { lat.followCheckpoints(ctx, c.base, vkey, benchRecords); close(followed) }()
		cpu0 := childCPU(c.cmd.Process.Pid)
		c.startProfile()
		b.StartTimer()
		start := time.Now()
		if err := drive(c, lat, benchRecords); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		reportCPU(b, childCPU(c.cmd.Process.Pid)-cpu0, benchRecords)
		<-followed
		cancel()
		lat.report(b, benchRecords, elapsed)
		c.stop(b)
		// CPU time of the log process per record (start-up, setup and
		// drain included): a figure a loaded machine distorts far less
		// than records/s.
		cpu := c.cmd.ProcessState.UserTime() + c.cmd.ProcessState.SystemTime()
		b.ReportMetric(float64(cpu.Microseconds())/benchRecords, "cpu-us/record")
	}
}

func payload(i int) []byte { return fmt.Appendf(nil, `{"bench":%d,"pad":"%0200d"}`, i, i) }

// BenchmarkAppend: unary gRPC Append from 512 concurrent submitters.
func BenchmarkAppend(b *testing.B) {
	runBench(b, func(c *childLog, lat *latencies, n int) error {
		const workers = 512
		var next atomic.Int64
		var wg sync.WaitGroup
		var firstErr atomic.Value
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					sent := time.Now()
					r, err := c.api.Append(context.Background(), &cairnv1.AppendRequest{Payload: payload(i), IdempotencyKey: strconv.Itoa(i)})
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					lat.done(r.Index, sent)
				}
			})
		}
		wg.Wait()
		if err, ok := firstErr.Load().(error); ok {
			return err
		}
		return nil
	})
}

// The subject benchmarks follow BenchmarkAppend here, not in
// bench_subject_test.go, so that go test runs them right after it: their
// target is a ratio to it (≥ 0.8×), and in file order they ran after the
// mysql+s3 and retention benchmarks, inside those engines' writeback.

// BenchmarkAppendSubject is BenchmarkAppend with every record naming one
// of benchSubjects known data subjects, so sealed (envelope version 2)
// under that subject's data key: the steady state. Compare its records/s
// with BenchmarkAppend's (target ≥ 0.8×).
func BenchmarkAppendSubject(b *testing.B) {
	benchSubjectAppends(b, true)
}

// BenchmarkAppendNewSubjects is the cold start: the benchSubjects subjects
// are new, so each one's data key is created (and made durable) by its
// first record, inside the measured time.
func BenchmarkAppendNewSubjects(b *testing.B) {
	benchSubjectAppends(b, false)
}

// BenchmarkAppendStream: 4 concurrent AppendStream streams.
func BenchmarkAppendStream(b *testing.B) { runBench(b, driveStreams) }

// BenchmarkAppendStreamSeq2048 is BenchmarkAppendStream with the sequencing
// batch docs/log.md suggests for batched sources (throughputBatching).
func BenchmarkAppendStreamSeq2048(b *testing.B) {
	runBenchWith(b, []string{envChildBatching + "=" + throughputBatching}, nil, driveStreams)
}

// driveStreams appends n records over 4 concurrent AppendStream streams.
func driveStreams(c *childLog, lat *latencies, n int) error {
	const streams = 4
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for s := range streams {
		wg.Go(func() {
			st, err := c.api.AppendStream(context.Background())
			if err != nil {
				errs <- err
				return
			}
			per := n / streams
			sent := make([]time.Time, per)
			go func() {
				for i := range per {
					sent[i] = time.Now()
					if err := st.Send(&cairnv1.AppendRequest{Id: uint64(i), Payload: payload(s*per + i), IdempotencyKey: strconv.Itoa(s*per + i)}); err != nil {
						return
					}
				}
				_ = st.CloseSend()
			}()
			for got := 0; got < per; got++ {
				r, err := st.Recv()
				if err != nil {
					errs <- err
					return
				}
				if r.ErrorCode != 0 {
					errs <- errors.New(r.ErrorMessage)
					return
				}
				lat.done(r.Index, sent[r.Id])
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// BenchmarkHTTPAdd: POST /add from 256 concurrent HTTP clients, the load
// shape of Tessera's hammer against its example server.
func BenchmarkHTTPAdd(b *testing.B) {
	runBench(b, func(c *childLog, lat *latencies, n int) error {
		return driveHTTPAdd([]string{c.base}, 256, n, lat.done)
	})
}

// driveHTTPAdd posts n distinct payloads to /add from the given number of
// workers, spread round-robin over the frontends in bases.
func driveHTTPAdd(bases []string, workers, n int, done func(uint64, time.Time)) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := range workers {
		base := bases[w%len(bases)]
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				sent := time.Now()
			retry:
				resp, err := client.Post(base+"/add", "", bytes.NewReader(payload(i)))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
					time.Sleep(10 * time.Millisecond) // pushback: retry the same record
					goto retry
				}
				if resp.StatusCode != http.StatusOK {
					firstErr.CompareAndSwap(nil, fmt.Errorf("/add: %s: %s", resp.Status, body))
					return
				}
				idx, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(string(body), "\n", 2)[0]), 10, 64)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				done(idx, sent)
			}
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return err
	}
	return nil
}

// BenchmarkTesseraExampleHTTPAdd is the reference: Tessera's own POSIX example
// server (cmd/conformance/posix from the pinned Tessera module, built from the
// module cache) under the same load generator as BenchmarkHTTPAdd.
func BenchmarkTesseraExampleHTTPAdd(b *testing.B) {
	dir := b.TempDir()
	bin := dir + "/tessera-posix"
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/transparency-dev/tessera/cmd/conformance/posix").CombinedOutput(); err != nil {
		b.Skipf("cannot build Tessera's example server: %v\n%s", err, out)
	}
	skey, _ := newKey(b, "example.test/tessera")
	if err := os.WriteFile(dir+"/key", []byte(skey), 0o600); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		b.StopTimer()
		addr := testport.Addr(b)
		benchExternal(b, exec.Command(bin, "--storage_dir="+b.TempDir(), "--listen="+addr, "--private_key="+dir+"/key"), "http://"+addr, 256)
	}
}

// benchExternal starts a reference server (Tessera's examples), waits for its
// checkpoint, drives it with the same load generator and reports.
func benchExternal(b *testing.B, cmd *exec.Cmd, base string, workers int) {
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for deadline := time.Now().Add(60 * time.Second); ; {
		if resp, err := http.Get(base + "/checkpoint"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not start", cmd.Path)
		}
		time.Sleep(50 * time.Millisecond)
	}
	lat := newLatencies(benchRecords)
	cpu0 := childCPU(cmd.Process.Pid)
	b.StartTimer()
	start := time.Now()
	err := driveHTTPAdd([]string{base}, workers, benchRecords, lat.done)
	elapsed := time.Since(start)
	b.StopTimer()
	reportCPU(b, childCPU(cmd.Process.Pid)-cpu0, benchRecords)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(benchRecords)/elapsed.Seconds(), "records/s")
	b.ReportMetric(percentile(lat.index, 0.50), "p50-index-ms")
	b.ReportMetric(percentile(lat.index, 0.99), "p99-index-ms")
	b.ReportMetric(0, "ns/op")
}
