package log

import (
	"crypto/rand"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestLogVKeyIsTheKeyPairs: the explorer's policy names the log by the vkey
// x/mod's note.GenerateKey made with the private key.
func TestLogVKeyIsTheKeyPairs(t *testing.T) {
	for range 20 { // base64 with and without '+' in it
		skey, vkey, err := note.GenerateKey(rand.Reader, "explorer.test/log")
		if err != nil {
			t.Fatal(err)
		}
		got, err := logVKey(skey)
		if err != nil || got != vkey {
			t.Fatalf("logVKey(%s…) = %q, %v; want %q", skey[:24], got, err, vkey)
		}
	}
	for _, bad := range []string{"", "PRIVATE+KEY+x", "PRIVATE+KEY+x+1234abcd+AAAA", "x+1234abcd+AQ=="} {
		if _, err := logVKey(bad); err == nil || !strings.Contains(err.Error(), "Config.PrivateKey") {
			t.Errorf("logVKey(%q): %v, want an error naming Config.PrivateKey", bad, err)
		}
	}
}

// TestTrustedPolicyNamesTheLog: the policy the explorer trusts by default is
// the witness policy with the log's own key line when it has none, and
// "quorum none" without witnesses.
func TestTrustedPolicyNamesTheLog(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "explorer.test/log")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, witnessPolicy, want string
	}{
		{"no witnesses", "", "log " + vkey + "\nquorum none\n"},
		{"with its log line", "log " + vkey + " https://log.example/\nquorum none\n", "log " + vkey + " https://log.example/\nquorum none\n"},
		{"without a log line", "quorum none\n", "log " + vkey + "\nquorum none\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, p, err := trustedPolicy(Config{Origin: "explorer.test/log", PrivateKey: skey, WitnessPolicy: []byte(tc.witnessPolicy)})
			if err != nil {
				t.Fatal(err)
			}
			if text != tc.want {
				t.Errorf("policy %q, want %q", text, tc.want)
			}
			if l, ok := p.LogFor("explorer.test/log"); !ok || l.VKey != vkey {
				t.Errorf("parsed policy trusts %+v for the origin", l)
			}
		})
	}
}
