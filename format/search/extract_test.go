package search

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// extract's validity is json.Valid's, so Describe decodes a record once
// (an extra json.Valid pass was ~0.5 µs a record of the index's ingest).
func TestExtractValidIsJSONValid(t *testing.T) {
	p, err := ParsePath(".a")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range extractValidSeeds {
		if _, valid := extract([]byte(doc), []Field{{Name: "a", Path: p}}); valid != json.Valid([]byte(doc)) {
			t.Errorf("%q: extract says valid %v, json.Valid %v", doc, valid, !valid)
		}
	}
}

var extractValidSeeds = []string{`{"a":1}`, ` {"a":"x"} `, "{\"a\":1}\n\t", `{"a":1} x`, `{"a":1} {"b":2}`, `{"a":1}}`, `{"a":`, ``, `5`, `"s"`, `null`, `[1,2]`, `{"a":"\xff"}`, `{"a":1},`,
	// The scanner's cases: duplicates (the last wins), escapes in keys
	// and values, numbers as written, values that index nothing.
	`{"a":{"b":1},"a":5}`, `{"a":{"b":1},"a":{"c":2}}`, `{"a":{"b":1,"b":"two"}}`, `{"a":[{"b":"x"},{"b":"y"}]}`,
	`{"\u0061":"esc-key","a b":"q","a\"b":"quote"}`, `{"a":"caf\u00e9 \ud83d\ude00 \ud800 x\"y\\z\/"}`, `{"a":"caf\xc3\xa9","b":"\xc3"}`,
	`{"a":-0.5e+10,"b":{"c":true},"d":[false,null,12.50]}`, `{"a":01}`, `{"a":1.}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}`, `{"a":"\x01"}`, `{"a":"\u12"}`, `{"a":"\q"}`,
	`{"a":[1,]}`, `{"a":1,}`, `{,}`, `[]`, `{}`, ` [ { "a" : [ 0 , { "b" : "deep" } ] } ] `, `{"a":null}`, `{"a":{}}`, `{"a":"` + strings.Repeat("x", MaxValueBytes+1) + `"}`,
	strings.Repeat("[", maxScanDepth+2) + strings.Repeat("]", maxScanDepth+2), `{"a":"x"}` + "\x00", "\ufeff{}"}

// extractOracleFields are paths into every shape the seeds have.
var extractOracleFields = func() []Field {
	var out []Field
	for i, s := range []string{".a", ".a.b", ".a.c", ".a[0]", ".a[1].b", ".a[0].b", `["a b"]`, `["a\"b"]`, ".b", ".d[2]", ".d[0]", ".b.c", "[0].a[1].b", "[0]"} {
		p, err := ParsePath(s)
		if err != nil {
			panic(err)
		}
		out = append(out, Field{Name: string(rune('a' + i)), Path: p})
	}
	return out
}()

// FuzzExtractValid: for any payload, extract's validity is json.Valid's,
// and the values it extracts are those of decoding the payload with
// encoding/json (extractDecoded, the extractor before the scanner: the
// oracle), for paths into every shape.
func FuzzExtractValid(f *testing.F) {
	for _, s := range extractValidSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		got, valid := extract(doc, extractOracleFields)
		if valid != json.Valid(doc) {
			t.Fatalf("%q: extract says valid %v, json.Valid %v", doc, valid, !valid)
		}
		want, wantValid := extractDecoded(doc, extractOracleFields)
		if valid != wantValid || !maps.Equal(got, want) {
			t.Fatalf("%q: extract = %q, %v; encoding/json gives %q, %v", doc, got, valid, want, wantValid)
		}
		if out, ok := scanExtract(doc, extractOracleFields); ok {
			if !json.Valid(doc) || !maps.Equal(out, want) {
				t.Fatalf("%q: the scanner read %q from a document encoding/json reads as %q (valid %v)", doc, out, want, json.Valid(doc))
			}
		}
		if scanValid(doc) && !json.Valid(doc) {
			t.Fatalf("%q: the scanner accepts what json.Valid refuses", doc)
		}
	})
}

// TestScannerReadsValidDocuments: valid documents take the single pass
// (not the decoder), with the decoder's values.
func TestScannerReadsValidDocuments(t *testing.T) {
	n := 0
	for _, doc := range extractValidSeeds {
		if !json.Valid([]byte(doc)) || strings.HasPrefix(doc, "[[[[") {
			continue
		}
		n++
		out, ok := scanExtract([]byte(doc), extractOracleFields)
		if !ok {
			t.Errorf("%q: the scanner did not read a valid document", doc)
			continue
		}
		if want, _ := extractDecoded([]byte(doc), extractOracleFields); !maps.Equal(out, want) {
			t.Errorf("%q: scanner %q, encoding/json %q", doc, out, want)
		}
	}
	if n < 15 {
		t.Fatalf("only %d valid seeds", n)
	}
}

// BenchmarkExtract: the three fields of the index benchmark's records,
// by the scanner (extract) and by decoding (extractDecoded, before it).
func BenchmarkExtract(b *testing.B) {
	doc := []byte(`{"actor":"user-4711","action":"write","resource":{"id":"res-37159","kind":"document"},"request":"req-00000000004c4b40"}`)
	var fields []Field
	for _, s := range []string{"actor=.actor", "action=.action", "resource=.resource.id"} {
		f, err := ParseField(s)
		if err != nil {
			b.Fatal(err)
		}
		fields = append(fields, f)
	}
	for _, bc := range []struct {
		name string
		fn   func([]byte, []Field) (map[string]string, bool)
	}{{"scan", extract}, {"decode", extractDecoded}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if out, ok := bc.fn(doc, fields); !ok || len(out) != 3 {
					b.Fatal(out, ok)
				}
			}
		})
	}
}
