package hastack

import (
	"bytes"
	"context"
	"database/sql"
	"net/http"
	"os"
	"testing"

	"github.com/cairnlog/cairn/internal/testport"
)

// Require skips the test when the engines are not installed, unless
// CAIRN_REQUIRE_HA is set (make test sets it after installing them).
func require(t *testing.T) {
	t.Helper()
	if _, err := findBinary("mariadbd", "/usr/sbin/mariadbd"); err != nil {
		skipOrFail(t, err)
	}
	if _, err := findBinary(MinIOPath(), "minio"); err != nil {
		skipOrFail(t, err)
	}
}

func skipOrFail(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CAIRN_REQUIRE_HA") != "" {
		t.Fatal(err)
	}
	t.Skip(err)
}

func TestEnginesStartServeAndRestart(t *testing.T) {
	require(t)
	ctx := context.Background()
	dir := t.TempDir()
	var logs bytes.Buffer
	db, err := NewMariaDB(dir+"/db", testport.Port(t), &logs)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Start(ctx); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	defer db.Kill()
	conn, err := sql.Open("mysql", db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Exec("CREATE TABLE IF NOT EXISTS t (x INT)"); err != nil {
		t.Fatalf("Cairn's user cannot use its database: %v", err)
	}
	// A restart keeps the data directory and the credentials.
	db.Stop()
	if err := db.Start(ctx); err != nil {
		t.Fatalf("restart: %v\n%s", err, logs.String())
	}
	if _, err := conn.Exec("INSERT INTO t VALUES (1)"); err != nil {
		t.Fatalf("after restart: %v", err)
	}

	var s3logs bytes.Buffer // one writer per process: each has its own copying goroutine
	s3, err := NewMinIO(dir+"/s3", testport.Port(t), &s3logs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Start(ctx); err != nil {
		t.Fatalf("%v\n%s", err, s3logs.String())
	}
	defer s3.Kill()
	resp, err := http.Get(s3.Endpoint + "/minio/health/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("minio live: %s", resp.Status)
	}
	pid := s3.PID()
	s3.Kill()
	if s3.PID() != 0 || pid == 0 {
		t.Fatalf("PID before kill %d, after %d", pid, s3.PID())
	}
}
