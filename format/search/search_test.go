package search

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairnlog/cairn/format/record"
)

func TestPathLookup(t *testing.T) {
	doc := `{"actor":"alice","n":12.50,"ok":true,"nil":null,"resource":{"id":"fw-policy","tags":["a","b"]},
		"labels":{"app.kubernetes.io/name":"web"},"targets":[{"id":"t0"},{"id":"t1"}],"deep":{"obj":{}}}`
	for _, tc := range []struct {
		path, want string
		ok         bool
	}{
		{".actor", "alice", true},
		{".n", "12.50", true}, // numbers as written
		{".ok", "true", true},
		{".nil", "", false},
		{".resource.id", "fw-policy", true},
		{".resource.tags[1]", "b", true},
		{".resource.tags[2]", "", false},
		{`.labels["app.kubernetes.io/name"]`, "web", true},
		{".targets[0].id", "t0", true},
		{".deep.obj", "", false}, // objects are not indexed
		{".missing.x", "", false},
	} {
		p, err := ParsePath(tc.path)
		if err != nil {
			t.Fatalf("ParsePath(%q): %v", tc.path, err)
		}
		if p.String() != tc.path {
			t.Errorf("String() = %q, want %q", p.String(), tc.path)
		}
		got := Extract([]byte(doc), []Field{{Name: "f", Path: p}})
		v, ok := got["f"]
		if ok != tc.ok || v != tc.want {
			t.Errorf("%s = %q, %v; want %q, %v", tc.path, v, ok, tc.want, tc.ok)
		}
	}
}

func TestParsePathRefusesBadPaths(t *testing.T) {
	for _, s := range []string{"", "actor", ".", "..a", ".a[", ".a[x]", ".a[-1]", ".a[01]", `.a["x"`, `.a["x"x]`, ".a b", strings.Repeat(".a", MaxPathSteps+1)} {
		if _, err := ParsePath(s); err == nil {
			t.Errorf("ParsePath(%q) accepted", s)
		}
	}
}

func TestParseField(t *testing.T) {
	f, err := ParseField("resource=.resource.id")
	if err != nil || f.Name != "resource" || f.Path.String() != ".resource.id" {
		t.Fatalf("ParseField: %+v %v", f, err)
	}
	for _, s := range []string{"resource", "Resource=.a", "limit=.a", "since=.a", "a=b", "=.a"} {
		if _, err := ParseField(s); err == nil {
			t.Errorf("ParseField(%q) accepted", s)
		}
	}
}

func TestParseQueryNamesTheBadParameter(t *testing.T) {
	known := func(n string) bool { return n == "actor" }
	for _, tc := range []struct{ query, param string }{
		{"colour=red", "colour"},
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"limit=0", "limit"},
		{"limit=1001", "limit"},
		{"limit=ten", "limit"},
		{"page=-1", "page"},
		{"subject=ABC", "subject"},
		{"actor=a&actor=b", "actor"},
		{"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"},
		{"actor=" + strings.Repeat("x", MaxValueBytes+1), "actor"},
	} {
		v, _ := url.ParseQuery(tc.query)
		_, err := ParseQuery(v, known)
		var pe *ParamError
		if !errors.As(err, &pe) || pe.Param != tc.param || !errors.Is(err, ErrBadQuery) || !strings.Contains(err.Error(), `"`+tc.param+`"`) {
			t.Errorf("%s: %v, want an error naming %q", tc.query, err, tc.param)
		}
	}
}

func TestQueryRoundTrips(t *testing.T) {
	q := &Query{Fields: map[string]string{"actor": "alice"}, Principal: "svc", Subject: strings.Repeat("ab", 32), ContentType: "text/plain",
		Since: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 25, 0, 0, 0, 500, time.UTC), Limit: 7, Page: 42}
	known := func(n string) bool { return n == "actor" }
	got, err := ParseQuery(q.Values(), known)
	if err != nil || !reflect.DeepEqual(got, q) {
		t.Fatalf("HTTP round trip: %+v %v, want %+v", got, err, q)
	}
	got, err = QueryFromRequest(q.Request(), known)
	if err != nil || !reflect.DeepEqual(got, q) {
		t.Fatalf("gRPC round trip: %+v %v, want %+v", got, err, q)
	}
}

func TestHitRoundTripsThroughJSONAndProto(t *testing.T) {
	leaf, err := record.Record{Submitter: "svc", Timestamp: 1795527000000, IdempotencyKey: "k", ContentType: "application/json", Payload: []byte(`{"actor":"alice"}`)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := ParseField("actor=.actor")
	h, err := Describe(3, leaf, nil, "", []Field{f})
	if err != nil {
		t.Fatal(err)
	}
	if h.Principal != "svc" || h.Timestamp != "2026-11-24T13:30:00.000Z" || h.Fields["actor"] != "alice" || h.State != record.StatePlain {
		t.Fatalf("Describe: %+v", h)
	}
	h.Proof, h.Checkpoint = [][]byte{make([]byte, 32)}, "origin\n4\nAAAA\n\n— origin sig\n"
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Line
	if err := json.Unmarshal(b, &back); err != nil || back.NextPage != "" {
		t.Fatal(err)
	}
	back.JSON = nil
	want := *h
	want.JSON = nil
	if !reflect.DeepEqual(back.Hit, want) {
		t.Errorf("JSON round trip:\n%+v\nwant\n%+v", back.Hit, want)
	}
	p, err := FromProto(h.ToProto())
	if err != nil || !reflect.DeepEqual(*p, want) {
		t.Errorf("proto round trip:\n%+v\nwant\n%+v", p, want)
	}
	// A sealed leaf without plaintext keeps its clear header only.
	s := record.Sealed{Submitter: "svc", Timestamp: 5, Subjects: []record.SubjectHash{{1}}, Body: make([]byte, 16)}
	sl, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sh, err := Describe(9, sl, nil, StateSealed, []Field{f})
	if err != nil || sh.Principal != "svc" || len(sh.SubjectHashes) != 1 || sh.Fields != nil || sh.ContentType != "" {
		t.Errorf("sealed: %+v %v", sh, err)
	}
	if _, err := Describe(9, sl, nil, record.StatePlain, nil); err == nil {
		t.Error("a sealed leaf described as plain was accepted")
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{".a", ".a.b", ".a[0]", `.a["x.y"]`, `["k"][3].z`, ".", "[", `["\u0041"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			return
		}
		// A parsed path re-parses to the same steps.
		q, err := ParsePath(p.String())
		if err != nil || !reflect.DeepEqual(p.steps, q.steps) {
			t.Fatalf("%q: re-parse %v", s, err)
		}
		Extract([]byte(`{"a":{"b":[1,{"c":"d"}]}}`), []Field{{Name: "x", Path: p}})
	})
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"actor=alice", "since=2026-11-24T12:50:00Z&until=2026-11-25T00:00:00Z", "limit=10&page=3", "subject=" + strings.Repeat("0", 64), "x=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		q, err := ParseQuery(v, func(n string) bool { return n == "actor" })
		if err != nil {
			if !errors.Is(err, ErrBadQuery) {
				t.Fatalf("%q: an error that is not ErrBadQuery: %v", s, err)
			}
			return
		}
		if _, err := ParseQuery(q.Values(), func(n string) bool { return n == "actor" }); err != nil {
			t.Fatalf("%q: its own encoding does not parse: %v", s, err)
		}
	})
}

func FuzzDescribe(f *testing.F) {
	leaf, _ := record.Record{Submitter: "svc", Timestamp: 1, ContentType: "application/json", Payload: []byte(`{"actor":"a"}`)}.Encode()
	f.Add(leaf, []byte(nil), "")
	f.Add([]byte{2, 1}, []byte{1}, record.StateDecrypted)
	fl, _ := ParseField("actor=.actor")
	f.Fuzz(func(t *testing.T, leaf, rec []byte, state string) {
		h, err := Describe(0, leaf, rec, state, []Field{fl})
		if err == nil && h.State == "" {
			t.Fatalf("no state for %x", leaf)
		}
	})
}
