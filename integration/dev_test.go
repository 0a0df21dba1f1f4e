package integration

// `make run` and `make run-ha` are `cairn dev` and `cairn dev --ha`: start
// them as a user would, use the printed commands' endpoints, and stop them
// with Ctrl-C (SIGINT): every process they started must end, cleanly.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/hastack"
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

func TestDevDemoServesAndStopsEverythingOnCtrlC(t *testing.T) {
	t.Run("posix", func(t *testing.T) { runDevDemo(t, false) })
	t.Run("ha", func(t *testing.T) {
		requireEngines(t)
		runDevDemo(t, true)
	})
}

func runDevDemo(t *testing.T, ha bool) {
	dir := t.TempDir()
	base := freeRun(t, 9)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", base+i) }
	args := []string{"dev", "--data", dir, "--http", addr(0), "--grpc", addr(1), "--witness-port", fmt.Sprint(base + 2)}
	if ha {
		args = append(args, "--ha", "--http2", addr(5), "--grpc2", addr(6), "--mysql-port", fmt.Sprint(base+7), "--s3-port", fmt.Sprint(base+8))
	}
	cmd := exec.Command(cairnBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	out := &syncBuffer{}
	running := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
			if strings.HasPrefix(sc.Text(), "Cairn is running") {
				close(running)
			}
		}
	}()
	select {
	case <-running:
	case <-time.After(2 * time.Minute):
		t.Fatalf("cairn dev did not start:\n%s\n%s", out, stderr.String())
	}

	// Append through every frontend over TLS with the demo token.
	ca, err := os.ReadFile(dir + "/tls/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	token, err := os.ReadFile(dir + "/demo.token")
	if err != nil {
		t.Fatal(err)
	}
	frontends := []string{addr(0)}
	if ha {
		frontends = append(frontends, addr(5))
	}
	for i, fe := range frontends {
		req, _ := http.NewRequest(http.MethodPost, "https://"+fe+"/add", strings.NewReader(fmt.Sprintf("demo record %d", i)))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != fmt.Sprint(i) {
			t.Fatalf("POST https://%s/add: %s %q, want index %d", fe, resp.Status, b, i)
		}
	}

	// Ctrl-C: everything drains and exits; nothing is left running.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("cairn dev exited with %v:\n%s\n%s", err, out, stderr.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("cairn dev did not stop within 3 minutes:\n%s", out)
	}
	if strings.Count(out.String(), "stopped (exit 0)") != 3+len(frontends) {
		t.Fatalf("not every process drained cleanly:\n%s", out)
	}
	ports := 5
	if ha {
		ports = 9
	}
	for i := range ports {
		if c, err := net.DialTimeout("tcp", addr(i), time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still answers after cairn dev stopped:\n%s", addr(i), out)
		}
	}
}
