// Package childfs runs a plain static file server in a child process: the
// test binary itself, re-executed. Benchmarks use it as the yardstick a
// log's read path is compared with, its CPU counted apart from the
// benchmark's own.
package childfs

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// env names the directory the re-executed test binary serves.
const env = "CAIRN_TEST_CHILD_FILESERVER_DIR"

// ServeIfChild serves the directory and never returns when this process is
// such a child; otherwise it returns at once. TestMain calls it first.
func ServeIfChild() {
	dir := os.Getenv(env)
	if dir == "" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fileserver:", err)
		os.Exit(2)
	}
	fmt.Printf("LISTENING %s\n", ln.Addr())
	// Serves until the parent kills it.
	fmt.Fprintln(os.Stderr, "fileserver:", http.Serve(ln, http.FileServer(http.Dir(dir))))
	os.Exit(1)
}

// Start serves dir from a child process until the test ends and returns
// its base URL and process id.
func Start(t testing.TB, dir string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+dir)
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
