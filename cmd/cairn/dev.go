package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairnlog/cairn/index"
	"github.com/cairnlog/cairn/internal/certpool"
	"github.com/cairnlog/cairn/internal/devpki"
	"github.com/cairnlog/cairn/internal/hastack"
	"github.com/cairnlog/cairn/internal/supervisor"
	cairnlog "github.com/cairnlog/cairn/log"
	"github.com/cairnlog/cairn/log/access"
	"github.com/cairnlog/cairn/mirror"
	"github.com/spf13/cobra"
)

// devOrigin is the origin of the demo log.
const devOrigin = "localhost/cairn-dev"

// devWitnesses names the demo's witnesses, one per pretend region.
var devWitnesses = []string{"witness-eu", "witness-us", "witness-ap"}

// devMirror names the demo's mirror, in a fourth pretend region.
const devMirror = "mirror-sa"

// devOptions are the flags of cairn dev.
type devOptions struct {
	dir                string
	httpAddr, grpcAddr string
	witnessPort        int
	mirrorPort         int
	indexPort          int
	// ha runs the log as two frontends on MariaDB + MinIO (mysql+s3).
	ha                   bool
	http2Addr, grpc2Addr string
	mysqlPort, s3Port    int
}

func newDevCmd() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local demo: one log and three witnesses with a 2-of-3 policy",
		Long: `Run a complete local Cairn on loopback, each part its own process with its own
keys and state directory under --data:

  log         cairn log serve     (gRPC --grpc, HTTP --http)
  witness-eu  cairn witness serve (HTTP port --witness-port)
  witness-us  cairn witness serve (HTTP port --witness-port+1)
  witness-ap  cairn witness serve (HTTP port --witness-port+2)
  mirror-sa   cairn mirror serve  (HTTP port --mirror-port; the log pushes to it)
  index       cairn index serve   (HTTPS port --index-port; search and history,
                                   also in the explorer at /ui/)

With --ha the log runs on the mysql+s3 driver instead of POSIX files: a MariaDB
server (port --mysql-port) and a MinIO server (port --s3-port), each with its own
data directory under --data, and two log frontends (log-a on --http/--grpc, log-b
on --http2/--grpc2) sharing them. MariaDB comes from Debian's mariadb-server and
MinIO from scripts/ha-deps.sh (make run-ha installs both).

Keys are generated on first start and never overwritten; starting again resumes
the same log and witness state. The policy (data/policy.txt) names the log key and
requires 2 of the 3 witnesses. Each process runs in its own process group, so
Ctrl-C reaches only dev, which stops them in order: the logs first (each
publishes a final checkpoint, cosigned by the witnesses still running), then the
witnesses, then MariaDB and MinIO; it prints how each exited.
Process logs go to data/logs/.`,
		Example: `  cairn dev --data ./data
  make run
  cairn dev --ha --data ./data-ha
  make run-ha`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd); err != nil {
				return err
			}
			// SIGHUP too: a closed terminal must not orphan the children,
			// which run in their own process groups.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			return runDev(ctx, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "data", "./data", "directory for keys, state and process logs")
	f.StringVar(&o.httpAddr, "http", "127.0.0.1:8080", "the log's HTTP address (with --ha: log-a's)")
	f.StringVar(&o.grpcAddr, "grpc", "127.0.0.1:9090", "the log's gRPC address (with --ha: log-a's)")
	f.IntVar(&o.witnessPort, "witness-port", 8181, "first of three consecutive loopback ports for the witnesses")
	f.IntVar(&o.mirrorPort, "mirror-port", 8281, "loopback port of the mirror (another pretend region)")
	f.IntVar(&o.indexPort, "index-port", 8481, "loopback port of the search index (SQLite in data/dev-index-vN.db, N its schema version; 8480 stays free for one of your own, see cairn index serve --help)")
	f.BoolVar(&o.ha, "ha", false, "two log frontends on MariaDB + MinIO (mysql+s3) instead of one on POSIX files")
	f.StringVar(&o.http2Addr, "http2", "127.0.0.1:8082", "with --ha: log-b's HTTP address")
	f.StringVar(&o.grpc2Addr, "grpc2", "127.0.0.1:9092", "with --ha: log-b's gRPC address")
	f.IntVar(&o.mysqlPort, "mysql-port", 13306, "with --ha: MariaDB's loopback port")
	f.IntVar(&o.s3Port, "s3-port", 19000, "with --ha: MinIO's loopback port")
	documentEnv(cmd)
	return cmd
}

// devPlan is the demo's files and processes.
type devPlan struct {
	dir        string
	logVKey    string
	policyPath string
	ca         string
	tokenPath  string
	accessPath string
	mirrorURL  string // the mirror's read URL for the log: prefix + /<hex sha256(origin)>
	indexURL   string
	procs      []devProc
}

type devProc struct {
	name   string
	args   []string
	env    []string // added to the environment
	health string
}

func runDev(ctx context.Context, out io.Writer, o devOptions) error {
	dir := o.dir
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the cairn binary: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return err
	}
	var storage [][]string // per frontend
	var env []string
	if o.ha {
		engines, dsn, stopEngines, err := startDevEngines(ctx, out, o)
		if err != nil {
			return err
		}
		defer stopEngines()
		storage = [][]string{engines, engines}
		// The DSN holds the database password: environment, not argv (ps).
		env = []string{"CAIRN_MYSQL_DSN=" + dsn}
	} else {
		storage = [][]string{{"--storage", "posix:" + filepath.Join(dir, "log")}}
	}
	plan, err := prepareDev(o, storage)
	if err != nil {
		return err
	}
	for i := range plan.procs {
		// Only the log frontends use the database (the mirror, which
		// reads CAIRN_MYSQL_DSN too, stores to posix in the demo).
		if strings.HasPrefix(plan.procs[i].name, "log") {
			plan.procs[i].env = env
		}
	}
	roots, err := certpool.Load(plan.ca)
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	var running []*supervisor.Process
	// Every child reports here once it exited: room for all of them.
	exited := make(chan *supervisor.Process, len(plan.procs))
	stopAll := func() { stopDev(out, running, dir) }
	for _, p := range plan.procs {
		// Each child in its own process group: a terminal's Ctrl-C reaches
		// only dev, which stops them in order (stopDev).
		proc, err := supervisor.Start(supervisor.Command{Name: p.name, Path: self, Args: p.args, Env: p.env,
			OutputFile: filepath.Join(dir, "logs", p.name+".log"), Exited: exited})
		if err != nil {
			stopAll()
			return err
		}
		running = append(running, proc)
		// The witnesses must be up before a new log publishes its first
		// (witnessed) checkpoint.
		if err := waitHealthy(ctx, hc, p.health, 30*time.Second, exited); err != nil {
			stopAll()
			return fmt.Errorf("%s did not become healthy (see %s): %w", p.name, filepath.Join(dir, "logs", p.name+".log"), err)
		}
	}
	printDevHelp(out, plan, o)
	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "stopping logs and witnesses…")
		stopAll()
		return nil
	case <-exited:
		stopAll() // reports every process, the one that exited first among them
		return errors.New("a demo process exited unexpectedly")
	}
}

// devLogStopTimeout is how long dev waits for a log to exit after SIGTERM
// before it kills it: the log's whole drain (log.DrainTimeout: in-flight
// requests, Tessera, the final witnessed checkpoint) and 10 s for the process
// to start draining and exit. Below the drain bound, dev would kill a log
// that is still publishing its final checkpoint.
const devLogStopTimeout = cairnlog.DrainTimeout + 10*time.Second

// stopDev stops the demo in its shutdown order: the logs first, while the
// witnesses are still up to cosign their final checkpoints, then the
// witnesses. It reports each child's exit.
func stopDev(out io.Writer, running []*supervisor.Process, dir string) {
	for _, logs := range []bool{true, false} {
		timeout := supervisor.DefaultStopTimeout
		if logs {
			timeout = devLogStopTimeout
		}
		var phase []*supervisor.Process
		for _, p := range running {
			if strings.HasPrefix(p.Name, "log") == logs {
				phase = append(phase, p)
			}
		}
		// Stop the phase's processes together; each Stop has its own deadline.
		errs := make([]error, len(phase))
		var wg sync.WaitGroup
		for i, p := range phase {
			wg.Go(func() { errs[i] = p.Stop(timeout) })
		}
		wg.Wait()
		for i, p := range phase {
			fmt.Fprintf(out, "%s stopped (%s); its log is %s\n", p.Name, supervisor.ExitText(errs[i]), filepath.Join(dir, "logs", p.Name+".log"))
		}
	}
}

// prepareDev creates missing keys, certificates, the access file and
// config files (never overwriting) and returns the processes to start.
// Everything is TLS: a local CA under data/tls signs a loopback certificate
// for each process; a demo writer's token is in data/demo.token.
func prepareDev(o devOptions, storage [][]string) (*devPlan, error) {
	dir, httpAddr, witnessPort := o.dir, o.httpAddr, o.witnessPort
	keys := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return nil, err
	}
	pki, err := ensurePKI(filepath.Join(dir, "tls"), append([]string{"log", devMirror, "index"}, devWitnesses...))
	if err != nil {
		return nil, err
	}
	logVKey, err := ensureKey(filepath.Join(keys, "log"), devOrigin, false)
	if err != nil {
		return nil, err
	}
	plan := &devPlan{dir: dir, logVKey: logVKey, policyPath: filepath.Join(dir, "policy.txt"), ca: pki.ca,
		tokenPath: filepath.Join(dir, "demo.token"), accessPath: filepath.Join(dir, "access.txt")}
	if err := ensureDemoToken(plan.accessPath, plan.tokenPath); err != nil {
		return nil, err
	}
	// Records naming data subjects are sealed under keys this KEK wraps;
	// the admin token may erase them (cairn erase).
	kek := filepath.Join(keys, "log.kek")
	if err := ensureKEK(kek); err != nil {
		return nil, err
	}
	if err := ensureAdminToken(plan.accessPath, filepath.Join(dir, "admin.token")); err != nil {
		return nil, err
	}
	logList := filepath.Join(dir, "witness-logs.txt")
	if err := writeIfMissing(logList, fmt.Sprintf("logs/v0\nvkey %s\norigin %s\nqpd 86400\ncontact cairn dev demo\n", logVKey, devOrigin)); err != nil {
		return nil, err
	}
	var policy strings.Builder
	fmt.Fprintf(&policy, "# Cairn dev demo: the log and a 2-of-3 witness quorum.\nlog %s https://%s/\n", logVKey, httpAddr)
	var witnessProcs []devProc
	for i, name := range devWitnesses {
		vkey, err := ensureKey(filepath.Join(keys, name), "localhost/"+name, true)
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", witnessPort+i)
		fmt.Fprintf(&policy, "witness %s %s https://%s\n", name, vkey, addr)
		witnessProcs = append(witnessProcs, devProc{
			name: name,
			args: []string{"witness", "serve", "--key", filepath.Join(keys, name+".key"), "--logs", logList,
				"--db", filepath.Join(dir, name), "--http", addr, "--tls-cert", pki.cert[name], "--tls-key", pki.key[name]},
			health: "https://" + addr + "/healthz",
		})
	}
	fmt.Fprintf(&policy, "group regions 2 %s\nquorum regions\n", strings.Join(devWitnesses, " "))
	if err := writeIfMissing(plan.policyPath, policy.String()); err != nil {
		return nil, err
	}
	plan.procs = witnessProcs
	// One mirror, another pretend region: it stores a full copy of the log.
	mirrorVKey, err := ensureKey(filepath.Join(keys, devMirror), "localhost/"+devMirror, true)
	if err != nil {
		return nil, err
	}
	mirrorAddr := fmt.Sprintf("127.0.0.1:%d", o.mirrorPort)
	plan.mirrorURL = "https://" + mirrorAddr + "/" + mirror.OriginID(devOrigin)
	plan.procs = append(plan.procs, devProc{
		name: devMirror,
		args: []string{"mirror", "serve", "--key", filepath.Join(keys, devMirror+".key"), "--logs", logList, "--policy", plan.policyPath,
			"--storage", "posix:" + filepath.Join(dir, devMirror), "--http", mirrorAddr, "--tls-cert", pki.cert[devMirror], "--tls-key", pki.key[devMirror]},
		health: "https://" + mirrorAddr + "/healthz",
	})
	indexAddr := fmt.Sprintf("127.0.0.1:%d", o.indexPort)
	plan.indexURL = "https://" + indexAddr
	http, grpc := []string{o.httpAddr, o.http2Addr}, []string{o.grpcAddr, o.grpc2Addr}
	var explorers []string // the logs' origins, whose explorers query the index
	for i, st := range storage {
		name := "log"
		if len(storage) > 1 {
			name = fmt.Sprintf("log-%c", 'a'+i)
		}
		args := []string{"log", "serve", "--origin", devOrigin, "--key", filepath.Join(keys, "log.key"),
			"--http", http[i], "--grpc", grpc[i],
			"--witness-policy", plan.policyPath, "--tls-cert", pki.cert["log"], "--tls-key", pki.key["log"],
			"--tls-client-ca", pki.ca, "--tls-ca", pki.ca, "--access", plan.accessPath, "--kek-file", kek,
			"--mirror", "https://" + mirrorAddr, "--mirror-key", mirrorVKey, "--index-url", plan.indexURL + "/"}
		plan.procs = append(plan.procs, devProc{name: name, args: append(args, st...), health: "https://" + http[i] + "/healthz"})
		explorers = append(explorers, "--cors-origin", "https://"+http[i])
	}
	// The index follows the log (after it in start order) with the demo
	// token, so it indexes sealed records' fields too; queries therefore
	// need the read role, like the log's sealed records.
	plan.procs = append(plan.procs, devProc{
		name: "index",
		args: append([]string{"index", "serve", "--log", "https://" + o.httpAddr, "--ca", pki.ca, "--policy", plan.policyPath,
			"--token-file", plan.tokenPath, "--db", "sqlite:" + devIndexDB(dir), "--http", indexAddr,
			"--tls-cert", pki.cert["index"], "--tls-key", pki.key["index"], "--access", plan.accessPath, "--read-access", "authenticated",
			"--field", "event=.event", "--field", "user=.user", "--poll-interval", "1s"}, explorers...),
		health: plan.indexURL + "/healthz",
	})
	return plan, nil
}

// devPKI is the demo's CA and per-process certificates.
type devPKI struct {
	ca        string
	cert, key map[string]string
}

// ensurePKI creates (once) a local CA and a loopback certificate per name.
func ensurePKI(dir string, names []string) (*devPKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &devPKI{ca: filepath.Join(dir, "ca.pem"), cert: map[string]string{}, key: map[string]string{}}
	caKey := filepath.Join(dir, "ca.key")
	ca, err := devpki.LoadCA(p.ca, caKey)
	if err != nil {
		if ca, err = devpki.NewCA("Cairn dev CA"); err != nil {
			return nil, err
		}
		if err := ca.WriteCA(p.ca, caKey); err != nil {
			return nil, fmt.Errorf("writing the dev CA: %w", err)
		}
	}
	for _, n := range names {
		p.cert[n], p.key[n] = filepath.Join(dir, n+".pem"), filepath.Join(dir, n+".key")
		if _, err := os.Stat(p.cert[n]); err == nil {
			continue
		}
		is, err := ca.Loopback(n)
		if err != nil {
			return nil, err
		}
		if err := is.WriteFiles(p.cert[n], p.key[n]); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// ensureDemoToken creates the access file with a demo writer (append, read)
// and saves its token, once.
func ensureDemoToken(accessPath, tokenPath string) error {
	if _, err := os.Stat(tokenPath); err == nil {
		return nil
	}
	f, err := access.LoadOrEmpty(accessPath)
	if err != nil {
		return err
	}
	_ = f.Revoke("demo-writer")
	tok, err := f.AddToken("demo-writer", []access.Role{access.RoleAppend, access.RoleRead})
	if err != nil {
		return err
	}
	if err := f.Save(accessPath); err != nil {
		return err
	}
	return writeNew(tokenPath, tok+"\n", 0o600)
}

// ensureKEK writes a key-encryption key to path, once.
func ensureKEK(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	k, err := cairnlog.GenerateKEK()
	if err != nil {
		return err
	}
	return writeNew(path, k, 0o600)
}

// ensureAdminToken adds a demo administrator (admin, read) to the access
// file and saves its token, once.
func ensureAdminToken(accessPath, tokenPath string) error {
	if _, err := os.Stat(tokenPath); err == nil {
		return nil
	}
	f, err := access.LoadOrEmpty(accessPath)
	if err != nil {
		return err
	}
	_ = f.Revoke("demo-admin")
	tok, err := f.AddToken("demo-admin", []access.Role{access.RoleAdmin, access.RoleRead})
	if err != nil {
		return err
	}
	if err := f.Save(accessPath); err != nil {
		return err
	}
	return writeNew(tokenPath, tok+"\n", 0o600)
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
func waitHealthy(ctx context.Context, hc *http.Client, url string, timeout time.Duration, exited <-chan *supervisor.Process) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", url, ctx.Err())
		case p := <-exited:
			return processExited(fmt.Sprintf("%s exited (%s)", p.Name, supervisor.ExitText(p.Wait())))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printDevHelp(out io.Writer, p *devPlan, o devOptions) {
	what, grpcs := "one log", o.grpcAddr
	if o.ha {
		what = fmt.Sprintf("one log as two frontends (log-a https://%s, log-b https://%s) on MariaDB + MinIO", o.httpAddr, o.http2Addr)
		grpcs = o.grpcAddr + "," + o.grpc2Addr
	}
	fmt.Fprintf(out, `
Cairn is running: %[8]s, three witnesses (2-of-3 quorum), a mirror and a search index, all over TLS.
Ctrl-C stops them.

  log origin   %[1]s
  log vkey     %[2]s
  policy       %[3]s
  CA           %[4]s
  demo token   %[5]s   (principal demo-writer: append, read)
  admin token  %[10]s   (principal demo-admin: admin, read)
  tiles        https://%[6]s/checkpoint
  gRPC         %[7]s
  explorer     https://%[6]s/ui/   (the browser must trust %[4]s; docs/explorer.md)
  index        %[12]s   (search and history; fields event, user; docs/search.md)

Append a record, get its receipt (a C2SP tlog-proof), verify it offline:

  echo '{"event":"login","user":"alice"}' | ./bin/cairn submit --grpc %[7]s --ca %[4]s --token-file %[5]s --content-type application/json --policy %[3]s --receipt alice.tlog-proof --record-out alice.leaf -
  ./bin/cairn verify receipt --policy %[3]s --record alice.leaf alice.tlog-proof

Or with curl (the body is the payload, the answer its index):

  curl -s --cacert %[4]s -H "Authorization: Bearer $(cat %[5]s)" -H 'Content-Type: text/plain' --data-binary 'hello' https://%[6]s/add
  curl -s --cacert %[4]s https://%[6]s/checkpoint

A record about a data subject is sealed (only ciphertext in the tiles); the
read role reads it, and erasing the subject destroys its key for ever:

  echo '{"event":"signup","email":"alice@example.com"}' | ./bin/cairn submit --grpc %[7]s --ca %[4]s --token-file %[5]s --subject customer-4711 -
  ./bin/cairn get --log https://%[6]s --ca %[4]s --policy %[3]s --token-file %[5]s INDEX
  ./bin/cairn erase --grpc %[7]s --ca %[4]s --token-file %[10]s --subject customer-4711 --reason "GDPR art. 17 request"

Audit the whole log, then watch it:

  ./bin/cairn audit --log https://%[6]s --ca %[4]s --policy %[3]s
  ./bin/cairn monitor --log https://%[6]s --ca %[4]s --policy %[3]s --state %[9]s

The mirror (%[11]s) holds a full copy; read and audit from it, with the
log as the first choice and the mirror as the fallback:

  ./bin/cairn audit --log https://%[6]s,%[11]s --ca %[4]s --policy %[3]s
  ./bin/cairn get --log %[11]s --ca %[4]s --token-file %[5]s --policy %[3]s 0

Search the index (every hit verified), and a key's versions with their diffs
(also in the explorer's Search and History pages, with the demo token):

  ./bin/cairn search --index %[12]s --ca %[4]s --token-file %[5]s --policy %[3]s --field user=alice
  ./bin/cairn history --index %[12]s --ca %[4]s --token-file %[5]s --policy %[3]s --key user=alice
`, devOrigin, p.logVKey, p.policyPath, p.ca, p.tokenPath, o.httpAddr, grpcs, what, filepath.Join(o.dir, "monitor.state"), filepath.Join(o.dir, "admin.token"), p.mirrorURL, p.indexURL)
}

// startDevEngines starts MariaDB and MinIO for --ha (state under
// data/mariadb and data/minio, output in data/logs) and returns the
// mysql+s3 flags of the frontends, the database DSN and a function that
// stops both (MinIO first) and closes their output files.
func startDevEngines(ctx context.Context, out io.Writer, o devOptions) ([]string, string, func(), error) {
	var started []*hastack.Server
	var logs []*os.File // closed once the engines stopped
	stop := func() {
		for i := len(started) - 1; i >= 0; i-- {
			fmt.Fprintf(out, "stopping %s (pid %d)\n", started[i].Name, started[i].PID())
			started[i].Stop()
		}
		for _, f := range logs {
			f.Close()
		}
	}
	logTo := func(name string) (io.Writer, error) {
		f, err := os.OpenFile(filepath.Join(o.dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			logs = append(logs, f)
		}
		return f, err
	}
	dbLog, err := logTo("mariadb")
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	db, err := hastack.NewMariaDB(filepath.Join(o.dir, "mariadb"), o.mysqlPort, dbLog)
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	s3Log, err := logTo("minio")
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	s3, err := hastack.NewMinIO(filepath.Join(o.dir, "minio"), o.s3Port, s3Log)
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	for _, e := range []*hastack.Server{db.Server, s3.Server} {
		if err := e.Start(ctx); err != nil {
			stop()
			return nil, "", nil, err
		}
		started = append(started, e)
		fmt.Fprintf(out, "%s serving on %s (pid %d)\n", e.Name, e.Addr, e.PID())
	}
	dsnFile := filepath.Join(o.dir, "mariadb", "dsn")
	if err := os.WriteFile(dsnFile, []byte(db.DSN+"\n"), 0o600); err != nil {
		stop()
		return nil, "", nil, err
	}
	return []string{"--storage", "mysql+s3", "--s3-endpoint", s3.Endpoint,
		"--s3-bucket", "cairn", "--s3-region", "us-east-1", "--s3-path-style",
		"--s3-access-key-file", s3.AccessKeyFile, "--s3-secret-key-file", s3.SecretKeyFile}, db.DSN, stop, nil
}

// devIndexDB is the demo index's SQLite file. Its name carries the index's
// schema version: the index is derived data, so after an upgrade that
// changes the schema the demo starts a new one (rebuilt from the log) and
// removes the files of earlier versions, which `index serve` would refuse.
func devIndexDB(dir string) string {
	for v := 1; v < index.SchemaVersion; v++ {
		name := "dev-index.db" // version 1 had no number in its name
		if v > 1 {
			name = fmt.Sprintf("dev-index-v%d.db", v)
		}
		for _, suffix := range []string{"", "-wal", "-shm"} {
			_ = os.Remove(filepath.Join(dir, name+suffix))
		}
	}
	return filepath.Join(dir, fmt.Sprintf("dev-index-v%d.db", index.SchemaVersion))
}
