package keyfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadRefusesAKeyOthersCanAccess(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o640, false}, {0o604, false}, {0o620, false}, {0o644, false}} {
		path := filepath.Join(dir, c.mode.String())
		if err := os.WriteFile(path, []byte("PRIVATE+KEY+x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, c.mode); err != nil {
			t.Fatal(err)
		}
		b, err := Read(path)
		switch {
		case c.ok && (err != nil || string(b) != "PRIVATE+KEY+x"):
			t.Errorf("mode %v: %q, %v; want the key", c.mode, b, err)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), "chmod 600 "+path)):
			t.Errorf("mode %v: %v; want a refusal that says chmod 600", c.mode, err)
		}
	}
	if _, err := Read(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}
