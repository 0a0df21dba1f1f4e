// Package hastack starts the external engines of Cairn's mysql+s3 mode on
// loopback, for `cairn dev --ha` and the integration tests: a MariaDB server
// (Debian's mariadb-server, a private data directory, no systemd) and a MinIO
// server (the pinned build scripts/ha-deps.sh installs). Each is a real
// process (started by internal/supervisor in its own process group) with
// its own state directory, restartable and killable.
package hastack

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnlog/cairn/internal/supervisor"
	"github.com/go-sql-driver/mysql"
)

// Server is one engine process, started and stopped as often as a test
// needs (each start a new supervisor.Process).
type Server struct {
	Name string
	// Addr is the loopback host:port it serves.
	Addr string
	dir  string
	argv []string
	env  []string
	logw io.Writer
	proc *supervisor.Process // nil when stopped
	// ready reports whether the process serves.
	ready func(ctx context.Context) error
}

// startTimeout bounds how long Start waits for an engine to serve.
const startTimeout = time.Minute

// readyPoll is how often Start asks a starting engine whether it serves.
const readyPoll = 100 * time.Millisecond

// PID is the process ID of the running server (0 when stopped).
func (s *Server) PID() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.PID()
}

// Start starts the process and waits until it serves (at most startTimeout).
func (s *Server) Start(ctx context.Context) error {
	// A server already on the port would pass the readiness check in our place.
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("starting %s: %s is taken (is another one running?): %w", s.Name, s.Addr, err)
	}
	ln.Close()
	p, err := supervisor.Start(supervisor.Command{Name: s.Name, Path: s.argv[0], Args: s.argv[1:], Env: s.env, Output: s.logw})
	if err != nil {
		return err
	}
	s.proc = p
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		err := s.ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.Done():
			s.proc = nil
			return fmt.Errorf("%s exited while starting (%s); see its log in %s", s.Name, supervisor.ExitText(p.Wait()), s.dir)
		case <-ctx.Done():
			s.Kill()
			return fmt.Errorf("%s did not become ready within %v: %w", s.Name, startTimeout, err)
		case <-tick.C:
		}
	}
}

// Stop asks the server to shut down (SIGTERM) and waits, killing it after
// supervisor.DefaultStopTimeout.
func (s *Server) Stop() {
	if s.proc == nil {
		return
	}
	_ = s.proc.Stop(supervisor.DefaultStopTimeout)
	s.proc = nil
}

// Kill kills the server's process group with SIGKILL and waits for it.
func (s *Server) Kill() {
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	s.proc = nil
}

// findBinary returns the first of names that exists as given or on PATH.
func findBinary(names ...string) (string, error) {
	for _, n := range names {
		if n == "" {
			continue
		}
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("none of %s is installed (run scripts/ha-deps.sh)", strings.Join(names, ", "))
}

// secret returns the random secret stored in path, creating it once.
func secret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	s := hex.EncodeToString(r[:])
	return s, os.WriteFile(path, []byte(s+"\n"), 0o600)
}

// MariaDB is a MariaDB server holding one database for Cairn.
type MariaDB struct {
	*Server
	// DSN is the go-sql-driver DSN of Cairn's database and user.
	DSN  string
	sock string
}

// Database creates (if missing) another database on the running server,
// owned by the same user, and returns its DSN: for a second application
// beside Cairn, such as the Trillian log a migration test reads.
func (m *MariaDB) Database(ctx context.Context, name string) (string, error) {
	cfg, err := mysql.ParseDSN(m.DSN)
	if err != nil {
		return "", err
	}
	root := mysql.NewConfig()
	root.User, root.Net, root.Addr = "root", "unix", m.sock
	db, err := sql.Open("mysql", root.FormatDSN())
	if err != nil {
		return "", err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS `" + name + "`",
		"GRANT ALL PRIVILEGES ON `" + name + "`.* TO 'cairn'@'127.0.0.1'",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return "", fmt.Errorf("creating database %s: %w", name, err)
		}
	}
	cfg.DBName = name
	return cfg.FormatDSN(), nil
}

// NewMariaDB prepares (once) a data directory under dir and returns the
// server, not yet started. logw receives the server's output.
func NewMariaDB(dir string, port int, logw io.Writer) (*MariaDB, error) {
	mariadbd, err := findBinary("mariadbd", "/usr/sbin/mariadbd")
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	data, tmp := filepath.Join(dir, "data"), filepath.Join(dir, "tmp")
	// A private temporary directory: bootstraps running side by side in
	// /tmp collide on their temporary table names.
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(data, "mysql")); err != nil {
		install, err := findBinary("mariadb-install-db", "/usr/bin/mariadb-install-db")
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(data, 0o700); err != nil {
			return nil, err
		}
		args := []string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--auth-root-authentication-method=normal", "--skip-test-db"}
		if os.Geteuid() == 0 {
			args = append(args, "--user=root")
		}
		if out, err := exec.Command(install, args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("mariadb-install-db in %s: %w\n%s", data, err, out)
		}
	}
	pw, err := secret(filepath.Join(dir, "cairn.password"))
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "mysqld.sock")
	argv := []string{mariadbd, "--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp, "--socket=" + sock,
		"--bind-address=127.0.0.1", fmt.Sprintf("--port=%d", port), "--pid-file=" + filepath.Join(dir, "mysqld.pid"),
		"--skip-name-resolve", "--max-connections=500", "--innodb-buffer-pool-size=256M",
		"--innodb-flush-log-at-trx-commit=1", "--sync-binlog=0", "--log-error=" + filepath.Join(dir, "error.log")}
	if os.Geteuid() == 0 {
		argv = append(argv, "--user=root")
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "cairn", pw, "tcp", fmt.Sprintf("127.0.0.1:%d", port), "cairn"
	m := &MariaDB{DSN: cfg.FormatDSN(), sock: sock}
	m.Server = &Server{Name: "mariadb", Addr: cfg.Addr, dir: dir, argv: argv, logw: logw}
	m.ready = func(ctx context.Context) error { return m.provision(ctx, sock, pw) }
	return m, nil
}

// provision connects as root over the socket and creates Cairn's database
// and user (idempotent); it doubles as the readiness check.
func (m *MariaDB) provision(ctx context.Context, sock, pw string) error {
	root := mysql.NewConfig()
	root.User, root.Net, root.Addr = "root", "unix", sock
	db, err := sql.Open("mysql", root.FormatDSN())
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS cairn",
		"CREATE USER IF NOT EXISTS 'cairn'@'127.0.0.1' IDENTIFIED BY '" + pw + "'",
		"GRANT ALL PRIVILEGES ON cairn.* TO 'cairn'@'127.0.0.1'",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// MinIO is a MinIO server with one set of static credentials.
type MinIO struct {
	*Server
	// Endpoint is the S3 URL, http://127.0.0.1:PORT.
	Endpoint string
	// AccessKeyFile and SecretKeyFile hold the credentials, for --s3-*-key-file.
	AccessKeyFile, SecretKeyFile string
}

// MinIOPath is where scripts/ha-deps.sh installs MinIO: $CAIRN_CACHE_BIN
// (default ~/.cache/cairn/bin), or $CAIRN_MINIO when set.
func MinIOPath() string {
	if p := os.Getenv("CAIRN_MINIO"); p != "" {
		return p
	}
	if d := os.Getenv("CAIRN_CACHE_BIN"); d != "" {
		return filepath.Join(d, "minio")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "cairn", "bin", "minio")
}

// NewMinIO prepares a MinIO server storing under dir, not yet started.
func NewMinIO(dir string, port int, logw io.Writer) (*MinIO, error) {
	bin, err := findBinary(MinIOPath(), "minio")
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	m := &MinIO{AccessKeyFile: filepath.Join(dir, "s3.id"), SecretKeyFile: filepath.Join(dir, "s3.secret")}
	if _, err := os.Stat(m.AccessKeyFile); err != nil {
		if err := os.WriteFile(m.AccessKeyFile, []byte("cairn\n"), 0o600); err != nil {
			return nil, err
		}
	}
	sk, err := secret(m.SecretKeyFile)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	m.Endpoint = "http://" + addr
	m.Server = &Server{Name: "minio", Addr: addr, dir: dir, logw: logw,
		argv: []string{bin, "server", filepath.Join(dir, "data"), "--address", addr, "--quiet"},
		// No console, no update checks, no call-home: nothing leaves loopback.
		env: []string{"MINIO_ROOT_USER=cairn", "MINIO_ROOT_PASSWORD=" + sk, "MINIO_BROWSER=off",
			"MINIO_UPDATE=off", "MINIO_CALLHOME_ENABLE=off", "MINIO_CI_CD=1"}}
	m.ready = func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"/minio/health/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
	return m, nil
}
