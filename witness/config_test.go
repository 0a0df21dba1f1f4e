package witness

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cairnlog/cairn/internal/fielderr"
	"golang.org/x/mod/sumdb/note"
)

func TestNewNamesTheConfigFieldItRefuses(t *testing.T) {
	skey, _ := newWitnessKey(t)
	m := newMemLog(t, "example.test/log")
	v, _ := note.NewVerifier(m.vkey)
	good := Log{Origin: m.origin, VKey: m.vkey, Verifier: v}
	for _, c := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no key", Config{DB: t.TempDir()}, "Config.PrivateKeys"},
		{"a log key", Config{PrivateKeys: []string{"PRIVATE+KEY+nonsense"}, DB: t.TempDir()}, "Config.PrivateKeys"},
		{"no state directory", Config{PrivateKeys: []string{skey}}, "Config.DB"},
		{"a log without origin", Config{PrivateKeys: []string{skey}, DB: t.TempDir(), Logs: []Log{{Verifier: v}}}, "Config.Logs"},
		{"a log without verifier", Config{PrivateKeys: []string{skey}, DB: t.TempDir(), Logs: []Log{{Origin: "example.test/log"}}}, "Config.Logs"},
		{"an origin twice", Config{PrivateKeys: []string{skey}, DB: t.TempDir(), Logs: []Log{good, good}}, "Config.Logs"},
		{"a state directory that is a file", Config{PrivateKeys: []string{skey}, DB: "/dev/null"}, "Config.DB"},
	} {
		w, err := New(c.cfg)
		if err == nil {
			w.Close()
			t.Errorf("%s: accepted", c.name)
			continue
		}
		fe, ok := fielderr.As(err)
		if !ok || fe.Field != c.field {
			t.Errorf("%s: %v, want a *fielderr.Error for %s", c.name, err, c.field)
		}
		if strings.Contains(err.Error(), "--") {
			t.Errorf("%s: %q names a command-line flag", c.name, err)
		}
	}
}

// TestStateIsOwnerOnly: the state directory, journal and evidence are
// created owner-only whatever the umask, and state that other users can
// write is refused.
func TestStateIsOwnerOnly(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })

	m := newMemLog(t, "example.test/log")
	skey, vkey := newWitnessKey(t)
	db := filepath.Join(t.TempDir(), "state")
	w := startWitness(t, skey, vkey, db, m)
	m.add(t, "a", "b")
	if code, _, b := w.post(t, m.request(t, 0)); code != 200 {
		t.Fatal(code, string(b))
	}
	fork := m.fork()
	fork.hashes, fork.n = nil, 0
	fork.add(t, "a", "X")
	if code, _, b := w.post(t, fork.request(t, 2)); code != 422 {
		t.Fatal(code, string(b))
	}
	w.Close()
	evs, _ := filepath.Glob(filepath.Join(db, "evidence", "*.json"))
	if len(evs) != 1 {
		t.Fatalf("%d evidence files, want 1", len(evs))
	}
	for p, want := range map[string]os.FileMode{
		db:                                 0o700,
		filepath.Join(db, "evidence"):      0o700,
		filepath.Join(db, "state.journal"): 0o600,
		evs[0]:                             0o600,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %#o, want %#o", p, fi.Mode().Perm(), want)
		}
	}

	v, _ := note.NewVerifier(m.vkey)
	open := func() error {
		w, err := New(Config{PrivateKeys: []string{skey}, Logs: []Log{{Origin: m.origin, VKey: m.vkey, Verifier: v}}, DB: db, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err == nil {
			w.Close()
		}
		return err
	}
	for _, p := range []string{db, filepath.Join(db, "evidence"), filepath.Join(db, "state.journal")} {
		fi, _ := os.Stat(p)
		os.Chmod(p, fi.Mode().Perm()|0o022)
		err := open()
		if fe, ok := fielderr.As(err); !ok || fe.Field != "Config.DB" || !strings.Contains(err.Error(), "writable by other users") {
			t.Errorf("%s writable by others: %v, want a Config.DB refusal", p, err)
		}
		os.Chmod(p, fi.Mode().Perm())
	}
	if err := open(); err != nil {
		t.Fatalf("owner-only state refused: %v", err)
	}
}
