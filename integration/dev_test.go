package integration

// `make run` and `make run-ha` are `cairn dev` and `cairn dev --ha`: start
// them as a user would, use the printed commands' endpoints, and stop them
// with Ctrl-C (SIGINT): every process they started must end, cleanly.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	aaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/certpool"
	"github.com/cairnlog/cairn/internal/hastack"
	"github.com/cairnlog/cairn/internal/lockedbuf"
	"github.com/cairnlog/cairn/internal/supervisor"
)

// freeRun returns the first of n consecutive free loopback ports, below the
// kernel's ephemeral range (32768+) so that no outgoing connection of a
// parallel test takes one before cairn dev binds it.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for base := 20000 + os.Getpid()%10000; base+n < 32768; base += n + 7 {
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no run of free ports")
	return 0
}

// requireEngines skips without MariaDB and MinIO installed (fails under
// CAIRN_REQUIRE_HA).
func requireEngines(t *testing.T) {
	t.Helper()
	_, errDB := exec.LookPath("mariadbd")
	if _, err := os.Stat("/usr/sbin/mariadbd"); err == nil {
		errDB = nil
	}
	_, errS3 := os.Stat(hastack.MinIOPath())
	if err := errors.Join(errDB, errS3); err != nil {
		if os.Getenv("CAIRN_REQUIRE_HA") != "" {
			t.Fatal(err)
		}
		t.Skipf("MariaDB or MinIO missing (scripts/ha-deps.sh installs them): %v", err)
	}
}

// TestDevDemoServesAndStopsEverythingOnCtrlC is `make run` and Ctrl-C: the
// terminal sends SIGINT to the whole foreground process group, here the
// group cairn dev was started in. Every process must exit 0, and the log's
// final checkpoint, cosigned by the witness quorum, must cover every record
// acknowledged right before the Ctrl-C. (Were the witnesses in dev's group,
// they would exit with the log, which could then not get its final
// checkpoint cosigned and would exit 2.)
func TestDevDemoServesAndStopsEverythingOnCtrlC(t *testing.T) {
	t.Run("posix", func(t *testing.T) { runDevDemo(t, false) })
	t.Run("ha", func(t *testing.T) {
		requireEngines(t)
		runDevDemo(t, true)
	})
}

func runDevDemo(t *testing.T, ha bool) {
	dir := t.TempDir()
	base := freeRun(t, 11)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", base+i) }
	args := []string{"dev", "--data", dir, "--http", addr(0), "--grpc", addr(1), "--witness-port", fmt.Sprint(base + 2), "--mirror-port", fmt.Sprint(base + 9),
		"--index-port", fmt.Sprint(base + 10)}
	if ha {
		args = append(args, "--ha", "--http2", addr(5), "--grpc2", addr(6), "--mysql-port", fmt.Sprint(base+7), "--s3-port", fmt.Sprint(base+8))
	}
	// In its own process group, like a shell's foreground job.
	dev, err := supervisor.Start(supervisor.Command{Name: "cairn dev", Path: cairnBin, Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Kill() }) // its children die with it
	eventually(t, 2*time.Minute, func() error {
		if dev.Exited() {
			t.Fatalf("cairn dev exited (%v):\n%s", dev.Wait(), dev.Output())
		}
		if !strings.Contains(dev.Output(), "Cairn is running") {
			return errors.New("cairn dev did not start")
		}
		return nil
	})

	// Append through every frontend over TLS with the demo token.
	roots, err := certpool.Load(dir + "/tls/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	token, err := os.ReadFile(dir + "/demo.token")
	if err != nil {
		t.Fatal(err)
	}
	frontends := []string{addr(0)}
	if ha {
		frontends = append(frontends, addr(5))
	}
	var acked []uint64
	for i, fe := range frontends {
		req, err := http.NewRequest(http.MethodPost, "https://"+fe+"/add", strings.NewReader(fmt.Sprintf("demo record %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		idx, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if resp.StatusCode != http.StatusOK || err != nil || idx != uint64(i) {
			t.Fatalf("POST https://%s/add: %s %q, want index %d", fe, resp.Status, b, i)
		}
		acked = append(acked, idx)
	}

	// The demo's index answers the search dev prints, every hit verified.
	if want := "index        https://" + addr(10); !strings.Contains(dev.Output(), want) {
		t.Errorf("cairn dev does not print the index URL (%q)", want)
	}
	eventually(t, time.Minute, func() error {
		out, stderr, code := run(t, nil, "search", "--index", "https://"+addr(10), "--ca", dir+"/tls/ca.pem", "--token-file", dir+"/demo.token",
			"--policy", dir+"/policy.txt", "--principal", "demo-writer", "--output", "json")
		if n := strings.Count(out, "\n"); code != 0 || n != len(acked) {
			return fmt.Errorf("cairn search on the demo's index: exit %d, %d hits, want %d: %s", code, n, len(acked), stderr)
		}
		return nil
	})

	// Ctrl-C at once: SIGINT to dev's whole process group.
	if err := syscall.Kill(-dev.PID(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dev.Done():
	case <-time.After(3 * time.Minute):
		t.Fatalf("cairn dev did not stop within 3 minutes:\n%s", dev.Output())
	}
	out := dev.Output()
	if err := dev.Wait(); err != nil {
		t.Fatalf("cairn dev exited with %v:\n%s", err, out)
	}
	// dev reports each child's exit: "NAME stopped (exit 0); its log is …".
	children := []string{"witness-eu", "witness-us", "witness-ap", "mirror-sa", "index"}
	if ha {
		children = append(children, "log-a", "log-b")
	} else {
		children = append(children, "log")
	}
	for _, name := range children {
		if !strings.Contains(out, "\n"+name+" stopped (exit 0)") {
			t.Errorf("%s did not exit 0:\n%s", name, out)
		}
	}
	if t.Failed() {
		for _, name := range children {
			b, _ := os.ReadFile(dir + "/logs/" + name + ".log")
			t.Logf("%s's log:\n%s", name, tail(string(b)))
		}
		t.FailNow()
	}
	ports := 5
	if ha {
		ports = 9
	}
	for _, i := range append(seq(ports), 9, 10) {
		if c, err := net.DialTimeout("tcp", addr(i), time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still answers after cairn dev stopped:\n%s", addr(i), out)
		}
	}

	// The final checkpoint satisfies the policy (the log's signature and 2
	// of 3 witnesses) and covers every acknowledged record: on disk with
	// POSIX storage; in the bucket with mysql+s3, read from MinIO started
	// again on its data directory.
	var raw []byte
	if ha {
		raw = bucketCheckpoint(t, dir+"/minio", base+8)
	} else {
		raw = mustRead(t, dir+"/log/checkpoint")
	}
	pol, err := policy.Parse(mustRead(t, dir+"/policy.txt"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := pol.Verify(raw)
	if err != nil {
		t.Fatalf("the final checkpoint: %v\n%s", err, raw)
	}
	for _, idx := range acked {
		if v.Checkpoint.Size <= idx {
			t.Fatalf("the final checkpoint (size %d) does not cover acknowledged index %d:\n%s", v.Checkpoint.Size, idx, raw)
		}
	}
}

// bucketCheckpoint starts MinIO on the data directory cairn dev --ha left
// and returns the checkpoint object of its bucket.
func bucketCheckpoint(t *testing.T, dir string, port int) []byte {
	t.Helper()
	out := &lockedbuf.Buffer{}
	s3d, err := hastack.NewMinIO(dir, port, out)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3d.Start(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	defer s3d.Stop()
	s3c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aaws.String(s3d.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(strings.TrimSpace(string(mustRead(t, s3d.AccessKeyFile))),
			strings.TrimSpace(string(mustRead(t, s3d.SecretKeyFile))), "")})
	obj, err := s3c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aaws.String("cairn"), Key: aaws.String("checkpoint")})
	if err != nil {
		t.Fatalf("reading the checkpoint from the bucket: %v", err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seq returns 0, 1, …, n-1.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
