package record

// States of a record as the log's decoded-record read APIs report it
// (HTTP GET /record/N, gRPC GetEntries with decrypt). Only StatePlain and
// StateDecrypted carry a record.
const (
	// StatePlain: a version-1 envelope, stored in clear.
	StatePlain = "plain"
	// StateDecrypted: a sealed record (version 2), opened with its subjects' keys.
	StateDecrypted = "decrypted"
	// StateErased: a subject's data key was destroyed; the record is unreadable for ever.
	StateErased = "erased"
	// StateNoKey: the log holds no key for a subject of the record.
	StateNoKey = "no-key"
	// StateTampered: the sealed body does not authenticate under the subjects' keys.
	StateTampered = "tampered"
	// StateMalformed: the leaf is not a record envelope this reader knows.
	StateMalformed = "malformed"
)

// Decoded is one entry as a reader with the read role sees it: the JSON
// answer of GET /record/N, and the fields of a gRPC GetEntries record.
type Decoded struct {
	// Index is the entry's index in the log.
	Index uint64 `json:"index"`
	// State is one of the State constants.
	State string `json:"state"`
	// Record is the version-1 envelope of the readable record (for
	// StatePlain, the leaf itself); base64 in JSON.
	Record []byte `json:"record,omitempty"`
	// SubjectHashes are a sealed record's keyed subject hashes, lowercase hex.
	SubjectHashes []string `json:"subject_hashes,omitempty"`
	// ErasedAtUnixMillis is when the record became unreadable (StateErased).
	ErasedAtUnixMillis int64 `json:"erased_at_unix_millis,omitempty"`
	// Detail explains a state other than StatePlain and StateDecrypted.
	Detail string `json:"detail,omitempty"`
}
