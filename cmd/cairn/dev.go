package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// devOrigin is the origin of the demo log.
const devOrigin = "localhost/cairn-dev"

// devWitnesses names the demo's witnesses, one per pretend region.
var devWitnesses = []string{"witness-eu", "witness-us", "witness-ap"}

func newDevCmd() *cobra.Command {
	var dataDir, httpAddr, grpcAddr string
	var witnessPort int
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local demo: one log and three witnesses with a 2-of-3 policy",
		Long: `Run a complete local Cairn on loopback, each part its own process with its own
keys and state directory under --data:

  log         cairn log serve     (gRPC --grpc, HTTP --http)
  witness-eu  cairn witness serve (HTTP port --witness-port)
  witness-us  cairn witness serve (HTTP port --witness-port+1)
  witness-ap  cairn witness serve (HTTP port --witness-port+2)

Keys are generated on first start and never overwritten; starting again resumes
the same log and witness state. The policy (data/policy.txt) names the log key and
requires 2 of the 3 witnesses. Ctrl-C stops all four. Process logs go to data/logs/.`,
		Example: `  cairn dev --data ./data
  make run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDev(ctx, cmd.OutOrStdout(), dataDir, httpAddr, grpcAddr, witnessPort)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "./data", "directory for keys, state and process logs")
	cmd.Flags().StringVar(&httpAddr, "http", "127.0.0.1:8080", "the log's HTTP address")
	cmd.Flags().StringVar(&grpcAddr, "grpc", "127.0.0.1:9090", "the log's gRPC address")
	cmd.Flags().IntVar(&witnessPort, "witness-port", 8181, "first of three consecutive loopback ports for the witnesses")
	documentEnv(cmd)
	return cmd
}

// devPlan is the demo's files and processes.
type devPlan struct {
	dir        string
	logVKey    string
	policyPath string
	procs      []devProc
}

type devProc struct {
	name   string
	args   []string
	health string
}

func runDev(ctx context.Context, out io.Writer, dir, httpAddr, grpcAddr string, witnessPort int) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the cairn binary: %w", err)
	}
	plan, err := prepareDev(dir, httpAddr, grpcAddr, witnessPort)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	var running []*exec.Cmd
	exited := make(chan string, len(plan.procs))
	alive := 0
	// stopAll asks every running process to drain (log last started, first
	// stopped), then waits for them, killing any still running after 70s.
	stopAll := func() {
		for i := len(running) - 1; i >= 0; i-- {
			_ = running[i].Process.Signal(syscall.SIGTERM)
		}
		deadline := time.After(70 * time.Second)
		for ; alive > 0; alive-- {
			select {
			case msg := <-exited:
				fmt.Fprintln(out, msg)
			case <-deadline:
				for _, c := range running {
					_ = c.Process.Kill()
				}
				return
			}
		}
	}
	for _, p := range plan.procs {
		logf, err := os.OpenFile(filepath.Join(dir, "logs", p.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			stopAll()
			return err
		}
		c := exec.Command(self, p.args...)
		c.Stdout, c.Stderr = logf, logf
		if err := c.Start(); err != nil {
			logf.Close()
			stopAll()
			return fmt.Errorf("starting %s: %w", p.name, err)
		}
		running = append(running, c)
		alive++
		go func(name string, c *exec.Cmd) {
			err := c.Wait()
			logf.Close()
			exited <- fmt.Sprintf("%s stopped (%v); its log is %s", name, exitText(err), filepath.Join(dir, "logs", name+".log"))
		}(p.name, c)
		// The witnesses must be up before a new log publishes its first
		// (witnessed) checkpoint.
		if err := waitHealthy(ctx, p.health, 30*time.Second, exited); err != nil {
			var ex processExited
			if errors.As(err, &ex) {
				alive--
			}
			stopAll()
			return fmt.Errorf("%s did not become healthy (see %s): %w", p.name, filepath.Join(dir, "logs", p.name+".log"), err)
		}
	}
	printDevHelp(out, plan, httpAddr, grpcAddr)
	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "stopping log and witnesses…")
		stopAll()
		return nil
	case msg := <-exited:
		fmt.Fprintln(out, msg)
		alive--
		stopAll()
		return errors.New("a demo process exited unexpectedly")
	}
}

// prepareDev creates missing keys and config files (never overwriting) and
// returns the processes to start.
func prepareDev(dir, httpAddr, grpcAddr string, witnessPort int) (*devPlan, error) {
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	logVKey, err := ensureKey(filepath.Join(keys, "log"), devOrigin, false)
	if err != nil {
		return nil, err
	}
	plan := &devPlan{dir: dir, logVKey: logVKey, policyPath: filepath.Join(dir, "policy.txt")}
	logList := filepath.Join(dir, "witness-logs.txt")
	if err := writeIfMissing(logList, fmt.Sprintf("logs/v0\nvkey %s\norigin %s\nqpd 86400\ncontact cairn dev demo\n", logVKey, devOrigin)); err != nil {
		return nil, err
	}
	var policy strings.Builder
	fmt.Fprintf(&policy, "# Cairn dev demo: the log and a 2-of-3 witness quorum.\nlog %s http://%s/\n", logVKey, httpAddr)
	var witnessProcs []devProc
	for i, name := range devWitnesses {
		vkey, err := ensureKey(filepath.Join(keys, name), "localhost/"+name, true)
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", witnessPort+i)
		fmt.Fprintf(&policy, "witness %s %s http://%s\n", name, vkey, addr)
		witnessProcs = append(witnessProcs, devProc{
			name: name,
			args: []string{"witness", "serve", "--key", filepath.Join(keys, name+".key"), "--logs", logList,
				"--db", filepath.Join(dir, name), "--http", addr, "--insecure-plaintext"},
			health: "http://" + addr + "/healthz",
		})
	}
	fmt.Fprintf(&policy, "group regions 2 %s\nquorum regions\n", strings.Join(devWitnesses, " "))
	if err := writeIfMissing(plan.policyPath, policy.String()); err != nil {
		return nil, err
	}
	plan.procs = append(witnessProcs, devProc{
		name: "log",
		args: []string{"log", "serve", "--origin", devOrigin, "--key", filepath.Join(keys, "log.key"),
			"--storage", "posix:" + filepath.Join(dir, "log"), "--http", httpAddr, "--grpc", grpcAddr,
			"--witness-policy", plan.policyPath, "--insecure-plaintext"},
		health: "http://" + httpAddr + "/healthz",
	})
	return plan, nil
}

// ensureKey returns the vkey at prefix.vkey, generating the pair if absent.
func ensureKey(prefix, name string, witness bool) (string, error) {
	if b, err := os.ReadFile(prefix + ".vkey"); err == nil {
		if _, err := os.Stat(prefix + ".key"); err != nil {
			return "", fmt.Errorf("%s.vkey exists but %s.key does not: restore it or remove both", prefix, prefix)
		}
		return strings.TrimSpace(string(b)), nil
	}
	skey, vkey, err := generateKey(name, witness)
	if err != nil {
		return "", err
	}
	if err := writeKeyPair(prefix, skey, vkey); err != nil {
		return "", err
	}
	return vkey, nil
}

func writeIfMissing(path, content string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	return writeNew(path, content, 0o644)
}

// processExited reports that a demo process ended while another was awaited.
type processExited string

func (p processExited) Error() string { return string(p) }

// waitHealthy polls url until it answers 200, a demo process exits, or timeout.
func waitHealthy(ctx context.Context, url string, timeout time.Duration, exited <-chan string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", url, ctx.Err())
		case msg := <-exited:
			return processExited(msg)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printDevHelp(out io.Writer, p *devPlan, httpAddr, grpcAddr string) {
	fmt.Fprintf(out, `
Cairn is running: one log and three witnesses (2-of-3 quorum). Ctrl-C stops them.

  log origin   %s
  log vkey     %s
  policy       %s
  tiles        http://%s/checkpoint
  gRPC         %s

Append a record and get its receipt (a C2SP tlog-proof), then verify it offline:

  echo '{"event":"login","user":"alice"}' | ./bin/cairn submit --grpc %s --insecure-plaintext --policy %s --receipt alice.tlog-proof --record-out alice.leaf -
  ./bin/cairn verify receipt --policy %s --record alice.leaf alice.tlog-proof

Or with curl (the body is the payload, the answer its index):

  curl -s --data-binary 'hello' http://%s/add
  curl -s http://%s/checkpoint

Audit the whole log:

  ./bin/cairn audit --log http://%s --policy %s
`, devOrigin, p.logVKey, p.policyPath, httpAddr, grpcAddr, grpcAddr, p.policyPath, p.policyPath, httpAddr, httpAddr, httpAddr, p.policyPath)
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
