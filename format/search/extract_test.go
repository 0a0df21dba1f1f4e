package search

import (
	"encoding/json"
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

var extractValidSeeds = []string{`{"a":1}`, ` {"a":"x"} `, "{\"a\":1}\n\t", `{"a":1} x`, `{"a":1} {"b":2}`, `{"a":1}}`, `{"a":`, ``, `5`, `"s"`, `null`, `[1,2]`, `{"a":"\xff"}`, `{"a":1},`}

// FuzzExtractValid: for any payload, extract's validity is json.Valid's.
func FuzzExtractValid(f *testing.F) {
	for _, s := range extractValidSeeds {
		f.Add([]byte(s))
	}
	p, err := ParsePath(".a")
	if err != nil {
		f.Fatal(err)
	}
	fields := []Field{{Name: "a", Path: p}}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if _, valid := extract(doc, fields); valid != json.Valid(doc) {
			t.Fatalf("%q: extract says valid %v, json.Valid %v", doc, valid, !valid)
		}
	})
}
