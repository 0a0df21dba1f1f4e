package client

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/cairnlog/cairn/format/record"
)

// CheckDecoded ties the log's decrypted answer to the proved leaf: another
// record, another submitter or other subjects are verification failures,
// and so is a record the log reports tampered.
func TestCheckDecodedTiesTheAnswerToTheLeaf(t *testing.T) {
	r := record.Record{Submitter: "crm", Timestamp: 1700000000000, IdempotencyKey: "k", Payload: []byte("hello")}
	h := record.HashSubject([]byte("hk"), "alice")
	s, _ := record.Seal(r, []record.SubjectHash{h}, [][]byte{bytes.Repeat([]byte{1}, 32)})
	leaf, _ := s.Encode()
	inner, _ := r.Encode()
	ok := &record.Decoded{Index: 4, State: record.StateDecrypted, Record: inner, SubjectHashes: []string{fmt.Sprintf("%x", h[:])}}
	if err := CheckDecoded(leaf, ok); err != nil {
		t.Fatalf("a faithful answer: %v", err)
	}
	other := r
	other.Submitter = "mallory"
	otherInner, _ := other.Encode()
	plain, _ := r.Encode()
	for name, d := range map[string]*record.Decoded{
		"another submitter":      {Index: 4, State: record.StateDecrypted, Record: otherInner, SubjectHashes: ok.SubjectHashes},
		"another subject":        {Index: 4, State: record.StateDecrypted, Record: inner, SubjectHashes: []string{fmt.Sprintf("%x", make([]byte, 32))}},
		"tampered":               {Index: 4, State: record.StateTampered, Detail: "entry 4: sealed record does not authenticate"},
		"plain but not the leaf": {Index: 4, State: record.StatePlain, Record: plain},
	} {
		if err := CheckDecoded(leaf, d); !errors.Is(err, ErrVerification) {
			t.Errorf("%s: %v, want a verification error", name, err)
		}
	}
	if err := CheckDecoded(leaf, &record.Decoded{Index: 4, State: record.StateErased, ErasedAtUnixMillis: 1, SubjectHashes: ok.SubjectHashes}); err != nil {
		t.Errorf("an erased record is not a failure: %v", err)
	}
	if err := CheckDecoded(inner, &record.Decoded{Index: 4, State: record.StateErased, ErasedAtUnixMillis: 1}); !errors.Is(err, ErrVerification) {
		t.Errorf("a plain leaf reported erased: %v", err)
	}
}
