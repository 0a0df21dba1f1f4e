package witness

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestParseLogList(t *testing.T) {
	_, vkey, _ := note.GenerateKey(rand.Reader, "example.com/log")
	_, vkey2, _ := note.GenerateKey(rand.Reader, "example.com/log2")
	list := fmt.Sprintf("logs/v0\n# comment\n\nvkey %s\nqpd 1440\ncontact ops@example.com\n  vkey %s  \norigin example.com/other\n", vkey, vkey2)
	logs, err := ParseLogList([]byte(list))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 2 || logs[0].Origin != "example.com/log" || logs[0].QPD != 1440 || logs[0].Contact != "ops@example.com" || logs[1].Origin != "example.com/other" {
		t.Fatalf("parsed %+v", logs)
	}
	witnessVKey := "w+7c264079+BOkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
	for name, c := range map[string]struct{ in, want string }{
		"no header":         {"vkey " + vkey, "first line must be"},
		"key before vkey":   {"logs/v0\norigin x", "before the first vkey"},
		"out of order":      {"logs/v0\nvkey " + vkey + "\nqpd 5\norigin x", "out of order"},
		"bad vkey":          {"logs/v0\nvkey nope", "line 2: vkey"},
		"cosignature vkey":  {"logs/v0\nvkey " + witnessVKey, "line 2"},
		"qpd zero":          {"logs/v0\nvkey " + vkey + "\nqpd 0", "qpd"},
		"qpd leading zero":  {"logs/v0\nvkey " + vkey + "\nqpd 05", "qpd"},
		"unknown key":       {"logs/v0\nvkey " + vkey + "\nurl x", "unknown key"},
		"duplicate origins": {"logs/v0\nvkey " + vkey + "\nvkey " + vkey, "listed twice"},
		"empty":             {"", "missing"},
	} {
		if _, err := ParseLogList([]byte(c.in)); !errors.Is(err, ErrLogList) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", name, err, c.want)
		}
	}
}

func FuzzParseLogList(f *testing.F) {
	_, vkey, _ := note.GenerateKey(rand.Reader, "example.com/log")
	f.Add([]byte("logs/v0\nvkey " + vkey + "\norigin o\nqpd 10\ncontact c\n"))
	f.Add([]byte("logs/v0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		logs, err := ParseLogList(b)
		if err != nil {
			return
		}
		for _, l := range logs {
			if l.Origin == "" || l.Verifier == nil {
				t.Fatalf("accepted a log without origin or verifier: %+v", l)
			}
		}
	})
}

func FuzzParseAddCheckpoint(f *testing.F) {
	f.Add([]byte("old 0\n\nexample.com/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.com/log AAAA\n"))
	f.Add([]byte("old 5\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\nx\n"))
	f.Add([]byte("old 01\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseAddCheckpoint(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if len(r.Proof) > MaxProofHashes {
			t.Fatalf("accepted %d proof lines", len(r.Proof))
		}
		if !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("re-encoding differs:\n%q\n%q", b, r.Marshal())
		}
	})
}
