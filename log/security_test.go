package log

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/internal/lockedbuf"

	"github.com/cairnlog/cairn/internal/fielderr"
)

// Configuration errors name the Config field, never a flag, and Validate
// finds them before anything is opened.
func TestValidateNamesTheConfigField(t *testing.T) {
	skey, _ := newKey(t, testOrigin)
	dir := t.TempDir()
	for _, c := range []struct {
		name  string
		mod   func(*Config)
		field string
		want  string // in the reason
	}{
		{"client CA without access file", func(c *Config) {
			c.InsecurePlaintext, c.TLSCert, c.TLSKey, c.TLSClientCA = false, "c.pem", "k.pem", "ca.pem"
		}, "Config.TLSClientCA", "needs Config.AccessFile"},
		{"origin", func(c *Config) { c.Origin = "other" }, "Config.Origin", `"other" does not match the key name`},
		{"key", func(c *Config) { c.PrivateKey = "nope" }, "Config.PrivateKey", "not an Ed25519 signed-note private key"},
		{"storage", func(c *Config) { c.Storage = "tape:x" }, "Config.Storage", `unknown driver "tape"`},
		{"aws on posix", func(c *Config) { c.AWS.S3Bucket = "b" }, "Config.AWS.S3Bucket", "applies only to Config.Storage mysql+s3"},
		{"aws missing", func(c *Config) { c.Storage, c.CheckpointInterval = "mysql+s3", time.Second }, "Config.AWS.MySQLDSN", "required with Config.Storage mysql+s3"},
		{"read access", func(c *Config) { c.ReadAccess = ReadAuthenticated }, "Config.ReadAccess", "needs Config.AccessFile"},
		{"interval", func(c *Config) { c.CheckpointInterval = time.Millisecond }, "Config.CheckpointInterval", "below the 100ms minimum"},
	} {
		cfg := testConfig(filepath.Join(dir, c.name), skey)
		c.mod(&cfg)
		err := cfg.Validate()
		fe, ok := fielderr.As(err)
		if !ok || fe.Field != c.field || !strings.Contains(fe.Err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v; want a fielderr for %s mentioning %q", c.name, err, c.field, c.want)
		}
		if strings.Contains(err.Error(), "--") {
			t.Errorf("%s: %q names a flag", c.name, err)
		}
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("%s: New accepted the configuration", c.name)
		}
		if _, err := os.Stat(filepath.Join(dir, c.name)); err == nil {
			t.Errorf("%s: storage was created despite the invalid configuration", c.name)
		}
	}
}

// With record contents private, a POSIX storage directory other users can
// enter is refused (Tessera creates the files inside world-readable).
func TestAuthenticatedReadAccessRefusesAnOpenStorageDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	skey, _ := newKey(t, testOrigin)
	cfg := testConfig(dir, skey)
	cfg.ReadAccess, cfg.AccessFile = ReadAuthenticated, writeAccessFile(t)
	_, err := New(context.Background(), cfg)
	if fe, ok := fielderr.As(err); !ok || fe.Field != "Config.Storage" || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Fatalf("New on a 0755 directory with authenticated reads: %v; want a Config.Storage error saying chmod 700", err)
	}
	// A new directory is created owner-only.
	fresh := filepath.Join(t.TempDir(), "fresh")
	tl := startLog(t, testConfig(fresh, skey))
	tl.stop(t)
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("new storage directory: %v, mode %v; want 0700", err, st.Mode().Perm())
	}
}

func writeAccessFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "access.txt")
	if err := os.WriteFile(p, []byte("# cairn access file v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// metricValue returns a sample's value from a Prometheus text exposition.
func metricValue(t *testing.T, exposition, sample string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(exposition)
	if m == nil {
		t.Fatalf("no sample %s in /metrics", sample)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A failed reload keeps the previous access file (availability) but is not
// silent (#20): /readyz answers 503 naming the reason, a counter and the
// last-success timestamp show it, until a reload succeeds.
func TestFailedAccessReloadIsVisible(t *testing.T) {
	s := newSecureLog(t, nil)
	c := s.httpClient(nil)
	metrics := func() string {
		code, _, body := s.do(t, c, "GET", "/metrics", s.tokens["operator"], "")
		if code != 200 {
			t.Fatalf("/metrics as admin: %d %s", code, body)
		}
		return body
	}
	if code, _, body := s.do(t, c, "GET", "/readyz", "", ""); code != 200 {
		t.Fatalf("/readyz before: %d %s", code, body)
	}
	m := metrics()
	loaded := metricValue(t, m, "cairn_access_last_reload_success_timestamp_seconds")
	if loaded < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Fatalf("last reload success %v: the start-up load was not recorded", loaded)
	}
	if v := metricValue(t, m, "cairn_access_reload_failures_total"); v != 0 {
		t.Fatalf("reload failures before any reload: %v", v)
	}

	good, err := os.ReadFile(s.accessPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.accessPath, []byte("token broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadAccess(); err == nil {
		t.Fatal("reloading a malformed access file succeeded")
	}
	code, hdr, body := s.do(t, c, "GET", "/readyz", "", "")
	if code != 503 || !strings.Contains(body, "access file reload failed") || !strings.Contains(body, "malformed access file") || hdr.Get("Retry-After") == "" {
		t.Fatalf("/readyz after a failed reload: %d %q; want 503 naming the failed reload and why", code, body)
	}
	// The previous file is still in force: the admin token still works.
	m = metrics()
	if v := metricValue(t, m, "cairn_access_reload_failures_total"); v != 1 {
		t.Errorf("reload failures: %v, want 1", v)
	}
	if v := metricValue(t, m, "cairn_access_last_reload_success_timestamp_seconds"); v != loaded {
		t.Errorf("last reload success moved from %v to %v on a failed reload", loaded, v)
	}

	if err := os.WriteFile(s.accessPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadAccess(); err != nil {
		t.Fatal(err)
	}
	if code, _, body := s.do(t, c, "GET", "/readyz", "", ""); code != 200 {
		t.Fatalf("/readyz after a good reload: %d %s", code, body)
	}
}

// The admin role guards /metrics once an access file is configured; without
// one everything, metrics included, is open.
func TestAdminRoleGuardsMetrics(t *testing.T) {
	s := newSecureLog(t, nil)
	c := s.httpClient(nil)
	for _, tc := range []struct {
		who  string
		want int
	}{{"", 401}, {"writer", 403}, {"auditor", 403}, {"operator", 200}} {
		code, _, body := s.do(t, c, "GET", "/metrics", s.tokens[tc.who], "")
		if code != tc.want {
			t.Errorf("/metrics as %q: %d, want %d", tc.who, code, tc.want)
		}
		if tc.want == 200 && !strings.Contains(body, "cairn_log_tree_size_entries") {
			t.Errorf("/metrics as admin lacks the log's metrics")
		}
	}
	// Health stays open to load balancers.
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _, _ := s.do(t, c, "GET", p, "", ""); code != 200 {
			t.Errorf("%s without a token: %d", p, code)
		}
	}
	open := newTestLog(t)
	if b := open.get(t, "/metrics"); !bytes.Contains(b, []byte("cairn_log_tree_size_entries")) {
		t.Error("/metrics without an access file is not served")
	}
}

// Refused credentials are logged by token id or certificate principal,
// never by secret, and at a bounded rate: a flood of bad tokens writes at
// most a burst of lines, and the next line counts what was left out.
func TestFailedAuthenticationsAreLoggedRateLimited(t *testing.T) {
	var out lockedbuf.Buffer
	s := newSecureLog(t, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&out, nil)) })
	c := s.httpClient(nil)
	// A well-formed token whose secret is wrong: its id is public, its secret is not.
	id := strings.Split(s.tokens["writer"], "_")[1]
	forged := "cairn_" + id + "_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	const flood = 300
	start := time.Now()
	for range flood {
		if code, _, _ := s.do(t, c, "POST", "/add", forged, "x"); code != 401 {
			t.Fatalf("forged token: %d, want 401", code)
		}
	}
	elapsed := time.Since(start)
	lines := strings.Count(out.String(), "authentication failed")
	if most := authLogBurst + int(elapsed.Seconds()*authLogRate) + 1; lines > most || lines == 0 {
		t.Fatalf("%d bad requests in %v wrote %d lines; want 1..%d", flood, elapsed, lines, most)
	}
	// Once the limiter refills, the next failure is logged with the count of
	// the ones left out.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "suppressed_since_last=") {
		if time.Now().After(deadline) {
			t.Fatalf("no line reports the suppressed failures:\n%s", out.String())
		}
		s.do(t, c, "POST", "/add", forged, "x")
		time.Sleep(50 * time.Millisecond)
	}
	logged := out.String()
	if !strings.Contains(logged, "token_id="+id) || !strings.Contains(logged, "remote=127.0.0.1:") {
		t.Errorf("the lines do not name the token id and the caller:\n%s", logged)
	}
	if strings.Contains(logged, "AAAAAAAAAAAAAAAA") || strings.Contains(logged, s.tokens["writer"]) {
		t.Error("a token secret reached the log")
	}
	code, _, m := s.do(t, c, "GET", "/metrics", s.tokens["operator"], "")
	if code != 200 {
		t.Fatal(code)
	}
	if v := metricValue(t, m, `cairn_log_auth_failures_total{credential="token"}`); v < flood {
		t.Errorf("auth failures counted %v, want ≥ %d (the counter includes what the log left out)", v, flood)
	}
}
