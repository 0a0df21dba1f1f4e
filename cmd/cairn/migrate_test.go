package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateTrillianRefusesBadFlagsBeforeTouchingAnything: each bad flag
// is named, exits 2, and creates no storage. (Migrations against a real
// Trillian: integration/migrate_test.go.)
func TestMigrateTrillianRefusesBadFlagsBeforeTouchingAnything(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, code := run(t, nil, "keygen", "--name", "example.com/log", "--out", dir+"/log"); code != 0 {
		t.Fatal(stderr)
	}
	target := filepath.Join(dir, "target")
	base := []string{"migrate", "trillian", "--trillian-plaintext", "--storage", "posix:" + target}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no address":     {[]string{"--tree-id", "1", "--origin", "example.com/log", "--key", dir + "/log.key"}, "--trillian is required"},
		"no key":         {[]string{"--trillian", "127.0.0.1:1", "--tree-id", "1", "--origin", "example.com/log"}, "--key is required"},
		"wrong origin":   {[]string{"--trillian", "127.0.0.1:1", "--tree-id", "1", "--origin", "other.example/log", "--key", dir + "/log.key"}, `--origin "other.example/log" does not match the key name "example.com/log"`},
		"no tree":        {[]string{"--trillian", "127.0.0.1:1", "--origin", "example.com/log", "--key", dir + "/log.key"}, "--tree-id: required"},
		"witness key":    {[]string{"--trillian", "127.0.0.1:1", "--tree-id", "1", "--origin", "example.com/log", "--key", dir + "/log.vkey"}, "--key"},
		"no such server": {[]string{"--trillian", "127.0.0.1:1", "--tree-id", "1", "--origin", "example.com/log", "--key", dir + "/log.key"}, "GetLatestSignedLogRoot(tree 1)"},
	} {
		_, stderr, code := run(t, nil, append(base, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, want 2 and %q:\n%s", name, code, tc.want, stderr)
		}
		if _, err := os.Stat(target); err == nil {
			t.Fatalf("%s: the target storage was created", name)
		}
	}
}
