package client

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envFileServer makes the test binary, re-executed, serve that directory
// over HTTP in a process of its own: BenchmarkAuditReplay's server, so the
// benchmark's CPU figures are the client's alone.
const envFileServer = "CAIRN_TEST_FILESERVER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(envFileServer); dir != "" {
		os.Exit(runFileServer(dir))
	}
	os.Exit(m.Run())
}

func runFileServer(dir string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fileserver:", err)
		return 2
	}
	fmt.Printf("LISTENING %s\n", ln.Addr())
	// Serves until the parent kills it.
	fmt.Fprintln(os.Stderr, "fileserver:", http.Serve(ln, http.FileServer(http.Dir(dir))))
	return 1
}

// serveChild serves dir from a child process and returns its URL and pid.
func serveChild(t testing.TB, dir string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envFileServer+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTENING ")
	if err != nil || !ok {
		t.Fatalf("file server child: %q, %v", line, err)
	}
	return "http://" + addr, cmd.Process.Pid
}

// selfCPU is the CPU time (user + system) this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time (user + system) process pid has used, from
// /proc (clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces) start after ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	var u, st int64
	_, _ = fmt.Sscan(f[11], &u)
	_, _ = fmt.Sscan(f[12], &st)
	return time.Duration(u+st) * 10 * time.Millisecond
}
