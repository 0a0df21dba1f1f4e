package log

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/policy"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

func TestRetentionStateDatesBundlesAndTrims(t *testing.T) {
	s := retentionState{Integrated: []integrationMark{{Upto: 2, At: 1000}, {Upto: 5, At: 2000}}}
	for _, tc := range []struct {
		k    uint64
		at   int64
		want bool
	}{{0, 1000, true}, {1, 1000, true}, {2, 2000, true}, {4, 2000, true}, {5, 0, false}} {
		got, ok := s.integratedAt(tc.k)
		if ok != tc.want || (ok && got.UnixMilli() != tc.at) {
			t.Errorf("integratedAt(%d) = %v, %v; want %d, %v", tc.k, got.UnixMilli(), ok, tc.at, tc.want)
		}
	}
	s.Moves = []indexMove{{From: 0, To: 512, At: 3000}, {From: 512, To: 1024, At: 4000}}
	if at, ok := s.deniedAt(1); !ok || at.UnixMilli() != 3000 {
		t.Errorf("deniedAt(1) = %v, %v; want 3000", at.UnixMilli(), ok)
	}
	if at, ok := s.deniedAt(3); !ok || at.UnixMilli() != 4000 {
		t.Errorf("deniedAt(3) = %v, %v; want 4000", at.UnixMilli(), ok)
	}
	if _, ok := s.deniedAt(4); ok {
		t.Error("bundle 4 is not below the minimum index, but has a denial time")
	}
	s.MinIndex, s.Deleted = 1024, 3
	s.trim()
	if len(s.Integrated) != 1 || s.Integrated[0].Upto != 5 {
		t.Errorf("trim kept %+v, want only the mark of bundles 2-4", s.Integrated)
	}
	if len(s.Moves) != 1 || s.Moves[0].To != 1024 {
		t.Errorf("trim kept moves %+v, want only the move to 1024 (bundle 3 is not deleted)", s.Moves)
	}
}

func TestMinimumIndexNeverMovesBackwards(t *testing.T) {
	ctx := context.Background()
	st := newFileRetentionStore(t.TempDir())
	if err := st.update(ctx, func(s *retentionState) error { s.MinIndex = 512; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    func(s *retentionState)
	}{
		{"backwards", func(s *retentionState) { s.MinIndex = 256 }},
		{"not at a bundle boundary", func(s *retentionState) { s.MinIndex = 600 }},
		{"deleted backwards", func(s *retentionState) { s.Deleted = 0; s.MinIndex = 512 }},
	} {
		if tc.name == "deleted backwards" {
			if err := st.update(ctx, func(s *retentionState) error { s.Deleted = 1; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.update(ctx, func(s *retentionState) error { tc.f(s); return nil }); err == nil {
			t.Errorf("%s: the update was accepted", tc.name)
		}
	}
	s, err := st.load(ctx)
	if err != nil || s.MinIndex != 512 {
		t.Fatalf("after refused updates: %d, %v; want 512", s.MinIndex, err)
	}
	if err := st.update(ctx, func(s *retentionState) error { s.MinIndex = 256; return nil }); !errors.Is(err, errBackwards) {
		t.Fatalf("a backwards move: %v, want errBackwards", err)
	}
}

func TestIntegrationMarksAreRateLimited(t *testing.T) {
	// Every observation that sees new full bundles within the resolution is
	// folded into the next mark: the state holds one mark per resolution.
	clock := &testClock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	tl := newTestLogWith(t, func(c *Config) { c.Retention, c.Now = []byte("keep 100h\nthen purge\n"), clock.Now })
	ctx := context.Background()
	for i := range 3 {
		appendBundle(t, tl, "alice", 256)
		if err := tl.retainer.observe(ctx); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			clock.Add(10 * time.Minute) // under the 1h resolution (1% of 100h)
		}
	}
	st, err := tl.retainer.store.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Integrated) != 1 || st.Integrated[0].Upto != 1 {
		t.Fatalf("marks %+v, want one mark for bundle 0 only (the rest wait for the next mark)", st.Integrated)
	}
	clock.Add(time.Hour)
	if err := tl.retainer.observe(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ = tl.retainer.store.load(ctx); len(st.Integrated) != 2 || st.Integrated[1].Upto != 3 || st.Integrated[1].At != clock.Now().UnixMilli() {
		t.Fatalf("marks %+v, want a second mark dating bundles 1-2 at the later time", st.Integrated)
	}
}

func TestIntegrationIsDatedByWitnessCosignatures(t *testing.T) {
	skey, vkey := newKey(t, testOrigin)
	wskey, wvkey, err := note.GenerateKey(rand.Reader, "example.test/w")
	if err != nil {
		t.Fatal(err)
	}
	logSigner, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	logVerifier, _ := note.NewVerifier(vkey)
	cosigner, err := fnote.NewSignerForCosignatureV1(wskey)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte("witness w " + wvkey + "\nquorum w\n"))
	if err != nil {
		t.Fatal(err)
	}
	p.Logs = []policy.Log{{Origin: testOrigin, Verifier: logVerifier}}
	clock := &testClock{t: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := &retainer{now: clock.Now, witnesses: p}
	text := testOrigin + "\n512\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"

	before := time.Now().Truncate(time.Second)
	cosigned, err := note.Sign(&note.Note{Text: text}, logSigner, cosigner)
	if err != nil {
		t.Fatal(err)
	}
	if at := r.integrationTime(cosigned); at.Before(before) || at.After(time.Now()) {
		t.Fatalf("a cosigned checkpoint dated %v, want its cosignature's timestamp (now), not the log's clock %v", at, clock.Now())
	}
	bare, err := note.Sign(&note.Note{Text: text}, logSigner)
	if err != nil {
		t.Fatal(err)
	}
	if at := r.integrationTime(bare); !at.Equal(clock.Now()) {
		t.Fatalf("an uncosigned checkpoint dated %v, want the log's clock %v", at, clock.Now())
	}
}
