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
	"syscall"
	"testing"
	"time"

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
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envChildDir); dir != "" {
		os.Exit(runChild(dir, os.Getenv(envChildKey)))
	}
	if dir := os.Getenv(envChildFileServer); dir != "" {
		os.Exit(runFileServer(dir))
	}
	os.Exit(m.Run())
}

func runChild(dir, skey string) int {
	if os.Getenv(envChildOTelDefault) == "" {
		notrace.Install() // as cmd/cairn does
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := testConfig(dir, skey)
	if os.Getenv(envChildDefaults) != "" {
		// Benchmarks measure the production defaults.
		cfg.BatchMaxAge, cfg.CheckpointInterval = 0, 0
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
		// Evaluate until killed (deletion waits for the antispam follower),
		// or, with "finish", keep evaluating while serving.
		go every(ctx, 100*time.Millisecond, func() { _ = l.EvaluateRetention(ctx) })
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
