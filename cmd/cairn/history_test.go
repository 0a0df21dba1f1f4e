package main

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // the index's database, to write one of an older schema
)

// TestHistoryKeyIgnoresTheLogsKeyVariable: $CAIRN_KEY is log serve --key,
// a private key file; cairn history --key (a query) must not pick it up.
func TestKeyFlagsThatAreNotServerKeysIgnoreCAIRNKEY(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "log.key")
	env := []string{"CAIRN_KEY=" + keyFile}
	_, stderr, code := run(t, env, "history", "--index", "http://127.0.0.1:1", "--policy", keyFile)
	if code == 0 || !strings.Contains(stderr, "--key is required") || strings.Contains(stderr, keyFile) {
		t.Errorf("history without --key, $CAIRN_KEY set: exit %d, %q; want the missing --key named, not the log's key file", code, stderr)
	}
	help, _, _ := run(t, env, "history", "--help")
	if strings.Contains(help, "($CAIRN_KEY)") {
		t.Errorf("history --help documents $CAIRN_KEY for --key:\n%s", help)
	}
	// Nor is it a client certificate's key.
	for _, cmd := range [][]string{{"audit"}, {"submit"}, {"get"}, {"index", "serve"}, {"search"}} {
		help, _, _ := run(t, env, append(cmd, "--help")...)
		if strings.Contains(help, "($CAIRN_KEY)") {
			t.Errorf("%s --help documents $CAIRN_KEY for the client certificate's --key", strings.Join(cmd, " "))
		}
	}
	// The log still takes its key file from the variable.
	if help, _, _ := run(t, nil, "log", "serve", "--help"); !strings.Contains(help, "($CAIRN_KEY)") {
		t.Errorf("log serve --help no longer documents $CAIRN_KEY:\n%s", help)
	}
}

// TestIndexServeRefusesABadCORSOrigin: a wildcard or a URL with a path is
// refused naming the flag, before anything is created.
func TestIndexServeRefusesABadCORSOrigin(t *testing.T) {
	dir, policy := unreachableLogPolicy(t)
	db := filepath.Join(dir, "index.db")
	for _, bad := range []string{"*", "https://audit.example/ui/", "audit.example"} {
		_, stderr, code := run(t, nil, "index", "serve", "--log", "http://127.0.0.1:1", "--policy", policy, "--db", "sqlite:"+db,
			"--http", "127.0.0.1:0", "--insecure-plaintext", "--cors-origin", bad)
		if code == 0 || !strings.Contains(stderr, "--cors-origin") || !strings.Contains(stderr, bad) {
			t.Errorf("--cors-origin %q: exit %d, %q; want an error naming the flag and the value", bad, code, stderr)
		}
		if _, err := os.Stat(db); err == nil {
			t.Fatalf("--cors-origin %q: the database was created", bad)
		}
	}
}

// TestIndexServeRefusesAnIndexOfAnotherSchemaVersion: a database an older
// Cairn wrote (schema version 1: a fields table, no schema_version) is
// refused with exit 2, naming --db and the file to delete, and kept.
func TestIndexServeRefusesAnIndexOfAnotherSchemaVersion(t *testing.T) {
	dir, policy := unreachableLogPolicy(t)
	db := filepath.Join(dir, "index.db")
	old, err := sql.Open("sqlite", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE TABLE records (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL)`,
		`CREATE TABLE fields (name TEXT NOT NULL, value TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (name, value, idx)) WITHOUT ROWID`} {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	_, stderr, code := run(t, nil, "index", "serve", "--log", "http://127.0.0.1:1", "--policy", policy, "--db", "sqlite:"+db,
		"--http", "127.0.0.1:0", "--insecure-plaintext", "--field", "actor=.actor")
	if code != 2 || !strings.Contains(stderr, "--db") || !strings.Contains(stderr, "schema version 1") || !strings.Contains(stderr, "delete "+db) {
		t.Errorf("index serve on a version-1 index: exit %d, %q; want 2 naming --db, the version and the file to delete", code, stderr)
	}
	if _, err := os.Stat(db); err != nil {
		t.Errorf("the old index is gone: %v", err)
	}
}

// unreachableLogPolicy writes a policy for a new log key whose URL nobody
// answers, and returns its directory and the policy file.
func unreachableLogPolicy(t *testing.T) (dir, policy string) {
	t.Helper()
	dir = t.TempDir()
	vkey, stderr, code := run(t, nil, "keygen", "--name", "example.com/log", "--out", filepath.Join(dir, "log"))
	if code != 0 {
		t.Fatal(stderr)
	}
	policy = filepath.Join(dir, "policy.txt")
	if err := os.WriteFile(policy, []byte("log "+strings.TrimSpace(vkey)+" http://127.0.0.1:1/\nquorum none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, policy
}
