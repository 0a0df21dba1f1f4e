package log

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestProfilesAreServedOnlyOnTheDebugListener(t *testing.T) {
	tl := newTestLogWith(t, func(c *Config) { c.DebugAddr = "127.0.0.1:0" })
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + tl.DebugAddr() + "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "heap") {
		t.Fatalf("debug listener: %d %.100q", code, body)
	}
	if code, _ := get("http://" + tl.DebugAddr() + "/debug/pprof/heap"); code != http.StatusOK {
		t.Fatalf("heap profile: %d", code)
	}
	if code, _ := get(tl.base + "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("the public port answers /debug/pprof/ with %d, want 404", code)
	}
	if newTestLog(t).DebugAddr() != "" {
		t.Fatal("a log without Config.DebugAddr has a debug listener")
	}
}

func TestBatchAndDedupLimitsAreValidated(t *testing.T) {
	skey, _ := newKey(t, testOrigin)
	for _, tc := range []struct {
		mod   func(*Config)
		field string
	}{
		{func(c *Config) { c.MaxBatchRecords = -1 }, "Config.MaxBatchRecords"},
		{func(c *Config) { c.MaxBatchBytes = 1000 }, "Config.MaxBatchBytes"},
		{func(c *Config) { c.DedupCacheEntries = 1 }, "Config.DedupCacheEntries"},
		{func(c *Config) { c.AntispamMemoryMiB = 8 }, "Config.AntispamMemoryMiB"},
	} {
		cfg := testConfig(t.TempDir(), skey)
		tc.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("got %v, want an error naming %s", err, tc.field)
		}
	}
}
