package witness

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/internal/lockedbuf"

	"golang.org/x/mod/sumdb/note"
)

// TestRefusalsAreLoggedAtABoundedRate: forged checkpoints (403) are logged
// with the reason and the peer, but a flood of them cannot flood the log.
func TestRefusalsAreLoggedAtABoundedRate(t *testing.T) {
	m := newMemLog(t, "example.test/log")
	m.add(t, "a")
	skey, vkey := newWitnessKey(t)
	v, _ := note.NewVerifier(m.vkey)
	var logs lockedbuf.Buffer
	w, err := New(Config{PrivateKeys: []string{skey}, Logs: []Log{{Origin: m.origin, VKey: m.vkey, Verifier: v}}, DB: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	tw := &testWitness{Witness: w, vkey: vkey, srv: httptest.NewServer(w.Handler())}
	t.Cleanup(tw.srv.Close)

	forged := AddCheckpointRequest{Checkpoint: corruptSignature(t, m.checkpoint(t))}.Marshal()
	for range 200 {
		if code, _, b := tw.post(t, forged); code != 403 {
			t.Fatalf("forged checkpoint: %d %s", code, b)
		}
	}
	lines := strings.Count(logs.String(), "add-checkpoint refused")
	if lines == 0 || lines > refusalBurst+1 {
		t.Fatalf("%d log lines for 200 refusals, want 1..%d:\n%s", lines, refusalBurst+1, logs.String())
	}
	if !strings.Contains(logs.String(), "status=403") || !strings.Contains(logs.String(), "remote=127.0.0.1:") {
		t.Fatalf("the refusal log lacks the status or the peer:\n%s", logs.String())
	}
}
