package log

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairnlog/cairn/client"
)

func TestHoldsNeedTheAdminRoleAndBadRequestsChangeNothing(t *testing.T) {
	s := newSecureLog(t, nil)
	ctx := context.Background()
	open := func(token string) *client.Log {
		l, err := client.NewLog(s.base, nil, client.HTTPOptions{TLS: &tls.Config{RootCAs: s.pool}, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for who, want := range map[string]string{"": "401", "writer": "403", "reader": "403"} {
		c := open(s.tokens[who])
		if _, err := c.AddHold(ctx, 0, 10, "", "case"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q placing a hold: %v, want %s", who, err, want)
		}
		if _, _, err := c.Holds(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q listing holds: %v, want %s", who, err, want)
		}
	}
	op := open(s.tokens["operator"])
	for _, tc := range []struct {
		from, to       uint64
		principal, why string
		want           string
	}{
		{0, 10, "", "", "needs a reason"},
		{10, 10, "", "case", "is empty"},
		{0, 10, "bob", "case", "one of them"},
		{0, 0, "", strings.Repeat("x", maxReasonBytes+1), "over 1024 bytes"},
	} {
		if _, err := op.AddHold(ctx, tc.from, tc.to, tc.principal, tc.why); err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddHold(%d, %d, %q): %v, want 400 naming %q", tc.from, tc.to, tc.principal, err, tc.want)
		}
	}
	if _, err := op.ReleaseHold(ctx, "nope", "done"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("releasing an unknown hold: %v, want 404", err)
	}
	if _, holds, err := op.Holds(ctx); err != nil || len(holds) != 0 {
		t.Fatalf("after refused requests: %v, %v; want no holds", holds, err)
	}
	if _, size, err := s.latest(ctx); err == nil && size != 0 {
		t.Fatalf("refused hold requests appended %d records", size)
	}

	h, err := op.AddHold(ctx, 0, 10, "", "case 7")
	if err != nil {
		t.Fatal(err)
	}
	if h.By != "operator" || h.From != 0 || h.To != 10 || h.Reason != "case 7" {
		t.Fatalf("hold %+v", h)
	}
	if covered, err := s.retainer.covers(ctx, 5, "someone"); err != nil || !covered {
		t.Fatalf("covers(5) = %v, %v; want true", covered, err)
	}
	if _, err := op.ReleaseHold(ctx, h.ID, ""); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("release without a reason: %v, want 400", err)
	}
	if _, err := op.ReleaseHold(ctx, h.ID, "closed"); err != nil {
		t.Fatal(err)
	}
	if covered, _ := s.retainer.covers(ctx, 5, "someone"); covered {
		t.Fatal("a released hold still covers its range")
	}
	// A principal hold covers that principal's records anywhere.
	if _, err := op.AddHold(ctx, 0, 0, "bob", "litigation"); err != nil {
		t.Fatal(err)
	}
	if held, err := s.retainer.heldPrincipal(ctx, "bob"); err != nil || !held {
		t.Fatalf("heldPrincipal(bob) = %v, %v", held, err)
	}
	if covered, _ := s.retainer.covers(ctx, 1<<40, "bob"); !covered {
		t.Fatal("a principal hold does not cover the principal's record")
	}
	if held, _ := s.retainer.heldPrincipal(ctx, "alice"); held {
		t.Fatal("alice is held without a hold")
	}
}

func FuzzHoldRequest(f *testing.F) {
	for _, s := range []string{`{"from":0,"to":10,"reason":"case"}`, `{"principal":"bob","reason":"x"}`, `{"reason":""}`, `{"from":1,"to":0}`, `{"x":1}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/holds", bytes.NewReader(body))
		req, err := readHoldRequest(r)
		if err != nil {
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		h := Hold{From: req.From, To: req.To, Principal: req.Principal, Reason: req.Reason}
		if err := h.validate(256); err != nil {
			if !errors.Is(err, ErrInvalidRequest) && !errors.Is(err, ErrPruned) {
				t.Fatalf("error %v is neither invalid nor pruned", err)
			}
			return
		}
		if h.Reason == "" || (h.Principal == "" && (h.To <= h.From || h.From < 256)) || (h.Principal != "" && (h.From != 0 || h.To != 0)) {
			t.Fatalf("accepted an invalid hold %+v", h)
		}
	})
}
