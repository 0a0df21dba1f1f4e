//go:build js && wasm

// Command wasm is the explorer's receipt verifier: Cairn's own Go
// verification code (format/receipt.Verify, which client.VerifyReceipt and
// `cairn verify receipt` run too) compiled to WebAssembly, so the page and
// the CLI cannot disagree. It imports only the format packages, never the
// gRPC client, to keep the download small; `make wasm` builds it into
// ui/assets/verify.wasm.
//
// It defines two JavaScript functions and then waits forever:
//
//	cairnVerifyReceipt(policy string, receipt string, leaf Uint8Array) → string (JSON)
//	cairnVerifyHit(policy string, hit string, fields string, query string) → string (JSON)
//
// cairnVerifyReceipt answers a JSON object: {"ok": true, ...} with what
// verified, or {"ok": false, "stage": ..., "error": ...} naming what failed.
// cairnVerifyHit checks one search hit (a JSON line of the index's answer)
// as cairn search does (format/search.CheckHit): checkpoint against the
// policy, inclusion, every claim recomputed from the proven leaf with the
// index's fields ({"name": "path"}, GET /fields), and the query (the
// search's URL query string); it answers {"ok": true, "hit": {...}} with the
// hit as the leaf describes it and "payload_base64" (the record's payload,
// absent when not readable), or {"ok": false, "error": ...}.
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"syscall/js"
	"time"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/receipt"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/format/search"
)

// result is what the page shows.
type result struct {
	OK bool `json:"ok"`
	// Stage is what failed: "policy" (the trusted policy does not parse),
	// "receipt" (the receipt or the record: parse, index, inclusion) or
	// "checkpoint" (signature or cosignature quorum).
	Stage string `json:"stage,omitempty"`
	Error string `json:"error,omitempty"`

	Index     uint64       `json:"index"`
	Origin    string       `json:"origin,omitempty"`
	TreeSize  uint64       `json:"tree_size,omitempty"`
	Root      string       `json:"root,omitempty"`
	LogKey    string       `json:"log_key,omitempty"`
	Quorum    string       `json:"quorum,omitempty"`
	Cosigned  []cosigned   `json:"cosigned,omitempty"`
	Trusted   []trustedKey `json:"trusted,omitempty"`
	LeafHash  string       `json:"leaf_hash,omitempty"`
	Record    *envelope    `json:"record,omitempty"`
	ProofSize int          `json:"proof_hashes"`
}

type cosigned struct {
	Name string `json:"name"`
	Time string `json:"time"`
}

type trustedKey struct {
	Role string `json:"role"` // "log" or "witness"
	Name string `json:"name"`
	VKey string `json:"vkey"`
}

type envelope struct {
	Submitter   string `json:"submitter"`
	Timestamp   uint64 `json:"timestamp_unix_millis"`
	ContentType string `json:"content_type"`
	Payload     string `json:"payload_base64"`
}

func verify(policyText, receiptText string, leaf []byte) result {
	var res result
	p, err := policy.Parse([]byte(policyText))
	if err != nil {
		return result{Stage: "policy", Error: err.Error()}
	}
	for _, l := range p.Logs {
		res.Trusted = append(res.Trusted, trustedKey{Role: "log", Name: l.Origin, VKey: l.VKey})
	}
	for _, w := range p.Witnesses {
		res.Trusted = append(res.Trusted, trustedKey{Role: "witness", Name: w.Name, VKey: w.VKey})
	}
	res.Quorum = p.Quorum
	r, v, err := receipt.Verify(p, leaf, []byte(receiptText))
	res.Index = r.Index
	res.ProofSize = len(r.Proof)
	if rec, derr := record.Decode(leaf); derr == nil {
		res.Record = &envelope{Submitter: rec.Submitter, Timestamp: rec.Timestamp, ContentType: rec.ContentType,
			Payload: base64.StdEncoding.EncodeToString(rec.Payload)}
	}
	if err != nil {
		var f *receipt.Failure
		res.Stage = "checkpoint"
		if errors.As(err, &f) {
			res.Stage = "receipt"
		}
		res.Error = err.Error()
		return res
	}
	res.OK = true
	res.Origin = v.Checkpoint.Origin
	res.TreeSize = v.Checkpoint.Size
	res.Root = base64.StdEncoding.EncodeToString(v.Checkpoint.Root[:])
	res.LogKey = v.Log.VKey
	for name, t := range v.Cosigned {
		res.Cosigned = append(res.Cosigned, cosigned{Name: name, Time: t.UTC().Format(time.RFC3339)})
	}
	sort.Slice(res.Cosigned, func(i, j int) bool { return res.Cosigned[i].Name < res.Cosigned[j].Name })
	return res
}

// hitResult is cairnVerifyHit's answer.
type hitResult struct {
	OK      bool        `json:"ok"`
	Error   string      `json:"error,omitempty"`
	Hit     *search.Hit `json:"hit,omitempty"`
	Payload []byte      `json:"payload_base64,omitempty"`
}

func verifyHit(policyText, hitJSON, fieldsJSON, query string) hitResult {
	fail := func(format string, a ...any) hitResult { return hitResult{Error: fmt.Sprintf(format, a...)} }
	p, err := policy.Parse([]byte(policyText))
	if err != nil {
		return fail("the trusted policy: %v", err)
	}
	var h search.Hit
	if err := json.Unmarshal([]byte(hitJSON), &h); err != nil {
		return fail("the index answered a line that is not a hit: %v", err)
	}
	var paths map[string]string
	if err := json.Unmarshal([]byte(fieldsJSON), &paths); err != nil {
		return fail("the index's fields: %v", err)
	}
	var fields []search.Field
	for _, name := range slices.Sorted(maps.Keys(paths)) {
		f, err := search.ParseField(name + "=" + paths[name])
		if err != nil {
			return fail("the index's fields: %v", err)
		}
		fields = append(fields, f)
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		return fail("the query: %v", err)
	}
	q, err := search.ParseQuery(vals, func(name string) bool { _, ok := paths[name]; return ok })
	if err != nil {
		return fail("the query: %v", err)
	}
	v, err := p.Verify([]byte(h.Checkpoint))
	if err != nil {
		return fail("hit %d: its checkpoint does not satisfy the policy: %v", h.Index, err)
	}
	d, err := search.CheckHit(v, &h, q, fields)
	if err != nil {
		return fail("%v", err)
	}
	return hitResult{OK: true, Hit: d, Payload: d.Payload()}
}

func main() {
	js.Global().Set("cairnVerifyHit", js.FuncOf(func(_ js.Value, args []js.Value) any {
		if len(args) != 4 {
			return `{"ok":false,"error":"cairnVerifyHit(policy, hit, fields, query) takes 4 arguments"}`
		}
		b, _ := json.Marshal(verifyHit(args[0].String(), args[1].String(), args[2].String(), args[3].String()))
		return string(b)
	}))
	js.Global().Set("cairnVerifyReceipt", js.FuncOf(func(_ js.Value, args []js.Value) any {
		if len(args) != 3 {
			return `{"ok":false,"stage":"call","error":"cairnVerifyReceipt(policy, receipt, leaf) takes 3 arguments"}`
		}
		leaf := make([]byte, args[2].Get("length").Int())
		js.CopyBytesToGo(leaf, args[2])
		b, _ := json.Marshal(verify(args[0].String(), args[1].String(), leaf))
		return string(b)
	}))
	select {}
}
