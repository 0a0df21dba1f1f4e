package client

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/format/search"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// oneLeafIndex is an Index client whose policy trusts a fresh key, and a
// hit of a one-leaf tree signed by it.
func oneLeafIndex(t testing.TB) (*Index, *search.Hit, []search.Field) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte("log " + vkey + "\nquorum none\n"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := record.Record{Submitter: "alice", Timestamp: 1795527000000, ContentType: "application/json", Payload: []byte(`{"actor":"bob"}`)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	root := rfc6962.DefaultHasher.HashLeaf(leaf)
	cp, err := note.Sign(&note.Note{Text: fmt.Sprintf("test.example/log\n1\n%s\n", b64(root))}, signer)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := search.ParseField("actor=.actor")
	h, err := search.Describe(0, leaf, nil, "", []search.Field{f})
	if err != nil {
		t.Fatal(err)
	}
	h.Checkpoint = string(cp)
	x, err := NewIndex("http://127.0.0.1:1", p, HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return x, h, []search.Field{f}
}

func TestVerifyHitChecksEveryClaim(t *testing.T) {
	x, good, fields := oneLeafIndex(t)
	if _, err := x.VerifyHit(good, &search.Query{Fields: map[string]string{"actor": "bob"}}, fields); err != nil {
		t.Fatalf("a good hit: %v", err)
	}
	for name, tamper := range map[string]func(h *search.Hit){
		"leaf":       func(h *search.Hit) { h.Leaf = append([]byte{}, h.Leaf...); h.Leaf[len(h.Leaf)-2] ^= 1 },
		"index":      func(h *search.Hit) { h.Index = 1 },
		"principal":  func(h *search.Hit) { h.Principal = "mallory" },
		"timestamp":  func(h *search.Hit) { h.TimestampUnixMillis++ },
		"field":      func(h *search.Hit) { h.Fields = map[string]string{"actor": "carol"} },
		"state":      func(h *search.Hit) { h.State = record.StateDecrypted },
		"checkpoint": func(h *search.Hit) { h.Checkpoint = strings.Replace(h.Checkpoint, "\n1\n", "\n2\n", 1) },
	} {
		h := *good
		tamper(&h)
		_, err := x.VerifyHit(&h, nil, fields)
		if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), fmt.Sprintf("hit %d", h.Index)) {
			t.Errorf("tampered %s: %v", name, err)
		}
	}
	// A true hit that does not match the query is refused too.
	if _, err := x.VerifyHit(good, &search.Query{Principal: "bob"}, fields); !errors.Is(err, ErrVerification) {
		t.Errorf("a hit outside the query: %v", err)
	}
}

// FuzzReadSearchAnswer feeds arbitrary index answers to the client: it
// must never panic, and never accept a hit that is not the one true leaf.
func FuzzReadSearchAnswer(f *testing.F) {
	f.Add(`{"index":0,"leaf":"AQ==","proof":[],"checkpoint":"x"}` + "\n" + `{"next_page":"5"}`)
	f.Add(`{"next_page":"-1"}`)
	f.Add("{}\n{}\n")
	x, good, fields := oneLeafIndex(f)
	f.Fuzz(func(t *testing.T, answer string) {
		q := &search.Query{}
		_, _, _ = x.readPage(strings.NewReader(answer), q, fields, 0, true, func(h *search.Hit) error {
			if h.Index != 0 || string(h.Leaf) != string(good.Leaf) {
				t.Fatalf("accepted a hit that is not the log's: %+v", h)
			}
			return nil
		})
	})
}
