package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestHistoryKeyIgnoresTheLogsKeyVariable: $CAIRN_KEY is log serve --key,
// a private key file; cairn history --key (a query) must not pick it up.
func TestHistoryKeyIgnoresTheLogsKeyVariable(t *testing.T) {
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
	// The log still takes its key file from the variable.
	if help, _, _ := run(t, nil, "log", "serve", "--help"); !strings.Contains(help, "($CAIRN_KEY)") {
		t.Errorf("log serve --help no longer documents $CAIRN_KEY:\n%s", help)
	}
}
