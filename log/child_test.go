package log

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/childfs"
	"github.com/cairnlog/cairn/internal/notrace"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Child-process mode: the test binary re-executes itself to run a log in a
// process of its own, so tests can stop it with real signals.
const (
	envChildDir = "CAIRN_TEST_CHILD_DIR"
	envChildKey = "CAIRN_TEST_CHILD_KEY"
	// envChildDefaults makes the child use the default batching and checkpoint interval.
	envChildDefaults = "CAIRN_TEST_CHILD_DEFAULTS"
	// envChildAWS (JSON of AWSConfig) puts the child on mysql+s3.
	envChildAWS = "CAIRN_TEST_CHILD_AWS"
	// envChildRetention is the child's retention policy; with
	// envChildRetentionKill (before-delete or after-delete) the child
	// evaluates it at once and kills itself with SIGKILL at that point.
	envChildRetention     = "CAIRN_TEST_CHILD_RETENTION"
	envChildRetentionKill = "CAIRN_TEST_CHILD_RETENTION_KILL"
	// envChildKEK is the child's Config.KEKFile.
	envChildKEK = "CAIRN_TEST_CHILD_KEK"
	// envChildEraseCrash makes the child kill -9 itself at this step of Erase.
	envChildEraseCrash = "CAIRN_TEST_CHILD_ERASE_CRASH"
	// envChildDebug, inherited from the environment of go test, serves
	// the child's profiles there (Config.DebugAddr): profile a benchmark
	// with CAIRN_TEST_CHILD_DEBUG=127.0.0.1:6060 go test -bench ….
	envChildDebug = "CAIRN_TEST_CHILD_DEBUG"
	// envChildOTelDefault, inherited like envChildDebug, keeps
	// OpenTelemetry's default global tracer in the child instead of the
	// no-op one cmd/cairn installs: set it to measure what that saves.
	envChildOTelDefault = "CAIRN_TEST_CHILD_OTEL_DEFAULT"
	// envChildBatching, inherited like envChildDebug, overrides the
	// child's sequencing batch as "SIZE,AGE" (e.g. "1024,10ms") to compare
	// batching choices under the same benchmark.
	envChildBatching = "CAIRN_TEST_CHILD_BATCHING"
	// envChildCPUProfile, inherited like envChildDebug, writes the
	// child's CPU profile to this file (suffixed with the child's pid)
	// from the moment a benchmark starts its clock (runBenchWith signals
	// the child with SIGUSR1) until the child exits: the measured load's
	// profile, without the set-up's.
	envChildCPUProfile = "CAIRN_TEST_CHILD_CPUPROFILE"
)

func TestMain(m *testing.M) {
	childfs.ServeIfChild() // BenchmarkAuditReplayLog's yardstick
	if dir := os.Getenv(envChildDir); dir != "" {
		os.Exit(runChild(dir, os.Getenv(envChildKey)))
	}
	os.Exit(m.Run())
}

func runChild(dir, skey string) int {
	if os.Getenv(envChildOTelDefault) == "" {
		notrace.Install() // as cmd/cairn does
	}
	if p := os.Getenv(envChildCPUProfile); p != "" {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			<-usr1
			if f, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid())); err == nil {
				_ = pprof.StartCPUProfile(f)
			}
		}()
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := testConfig(dir, skey)
	if os.Getenv(envChildDefaults) != "" {
		// Benchmarks measure the production defaults.
		cfg.BatchMaxAge, cfg.CheckpointInterval = 0, 0
	}
	if v := os.Getenv(envChildBatching); v != "" {
		var err error
		if cfg.BatchMaxSize, cfg.BatchMaxAge, err = parseBatching(v); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
	}
	cfg.DebugAddr = os.Getenv(envChildDebug)
	if j := os.Getenv(envChildAWS); j != "" {
		cfg.Storage, cfg.CheckpointInterval = "mysql+s3", time.Second
		if err := json.Unmarshal([]byte(j), &cfg.AWS); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
	}
	cfg.Retention = []byte(os.Getenv(envChildRetention))
	cfg.KEKFile = os.Getenv(envChildKEK)
	l, err := New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if at := os.Getenv(envChildRetentionKill); at != "" {
		kill := func([]uint64) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		switch at {
		case "before-delete":
			l.retainer.beforeDelete = kill
		case "after-delete":
			l.retainer.afterDelete = kill
		}
		// Evaluate until killed, or, with "finish", keep evaluating while
		// serving. Deletion waits for the antispam follower: the kill
		// points expect the whole log in one batch, so the first run
		// starts once the follower has read every entry (a loaded machine
		// would otherwise archive and delete the bundles in two batches).
		go func() {
			waitFollowed(ctx, l)
			every(ctx, 100*time.Millisecond, func() { _ = l.EvaluateRetention(ctx) })
		}()
	}
	if step := os.Getenv(envChildEraseCrash); step != "" {
		l.eraseHook = func(s string) {
			if s == step {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	fmt.Printf("LISTENING %s %s\n", l.HTTPAddr(), l.GRPCAddr())
	if err := l.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

type childLog struct {
	*testLog
	cmd *exec.Cmd
}

func startChild(t testing.TB, dir, skey string, env ...string) *childLog {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), envChildDir+"="+dir, envChildKey+"="+skey), env...)
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &childLog{cmd: cmd}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addrs := make(chan []string, 1)
	go func() {
		re := regexp.MustCompile(`^LISTENING (\S+) (\S+)$`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1:]
			}
		}
		close(addrs)
	}()
	var a []string
	select {
	case a = <-addrs:
	case <-time.After(60 * time.Second):
	}
	if a == nil {
		t.Fatal("child log did not start")
	}
	conn, err := grpc.NewClient(a[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.testLog = &testLog{conn: conn, api: cairnv1.NewLogClient(conn), base: "http://" + a[0]}
	return c
}

// startProfile starts the child's CPU profile (envChildCPUProfile), if
// one was asked for.
func (c *childLog) startProfile() {
	if os.Getenv(envChildCPUProfile) != "" {
		_ = c.cmd.Process.Signal(syscall.SIGUSR1)
	}
}

// stop sends SIGTERM and requires a clean exit.
func (c *childLog) stop(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("log exited uncleanly after SIGTERM: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("log did not exit within 90s of SIGTERM")
	}
}

// waitFollowed waits (up to a minute) until the antispam follower has read
// every entry of the log's published checkpoint.
func waitFollowed(ctx context.Context, l *Log) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		cp, err := l.checkpoint(ctx)
		if err != nil {
			continue
		}
		lines := strings.SplitN(string(cp), "\n", 3)
		if len(lines) < 3 {
			continue
		}
		size, err := strconv.ParseUint(lines[1], 10, 64)
		if err != nil {
			continue
		}
		if n, err := l.retainer.followed(ctx); err == nil && n >= size {
			return
		}
	}
}

// parseBatching reads envChildBatching's "SIZE,AGE".
func parseBatching(v string) (uint, time.Duration, error) {
	size, age, ok := strings.Cut(v, ",")
	n, err1 := strconv.ParseUint(size, 10, 32)
	d, err2 := time.ParseDuration(age)
	if !ok || err1 != nil || err2 != nil || n == 0 || d <= 0 {
		return 0, 0, fmt.Errorf("%s=%q: want SIZE,AGE such as 1024,10ms", envChildBatching, v)
	}
	return uint(n), d, nil
}
