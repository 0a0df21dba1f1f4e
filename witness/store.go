package witness

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cairnlog/cairn/format/checkpoint"
	"github.com/cairnlog/cairn/internal/atomicfile"
	"github.com/cairnlog/cairn/internal/fielderr"
	"golang.org/x/mod/sumdb/note"
)

// store keeps, per origin, the latest checkpoint this witness cosigned, as a
// note carrying the log's signature and the witness's cosignature, in a
// group-committed journal (journal.go), and the evidence of inconsistent
// checkpoints as one file each.
type store struct {
	dir     string
	journal *journal
}

// state is one origin's latest cosigned checkpoint.
type state struct {
	Size uint64
	Root [32]byte
	Note []byte // checkpoint + log signature + our cosignature
}

// openStore opens the state under dir. What it creates is owner-only: the
// directories 0700, the journal and evidence files 0600. The state is public
// data (checkpoints and cosignatures), but whoever can rewrite it can make
// the witness forget what it cosigned, so a directory or journal that other
// users can write is refused.
func openStore(dir string) (*store, error) {
	journal := filepath.Join(dir, "state.journal")
	for _, d := range []string{dir, filepath.Join(dir, "evidence")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fielderr.Errorf("Config.DB", "creating %s: %w", d, err)
		}
	}
	for _, p := range []string{dir, filepath.Join(dir, "evidence"), journal} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // the journal of a new witness
		}
		if err != nil {
			return nil, fielderr.New("Config.DB", err)
		}
		if perm := fi.Mode().Perm(); perm&0o022 != 0 {
			return nil, fielderr.Errorf("Config.DB", "%s is writable by other users (mode %#o); the witness state must be owner-only: chmod go-w %s", p, perm, p)
		}
	}
	j, err := openJournal(journal)
	if err != nil {
		return nil, err
	}
	return &store{dir: dir, journal: j}, nil
}

// OriginID is the lowercase hex SHA-256 of an origin: its monitoring path.
func OriginID(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(h[:])
}

// load returns the origin's state; ok is false if it never cosigned one. A
// recorded note that does not verify with our own key is corruption: the
// witness fails closed rather than forgetting what it cosigned.
func (s *store) load(origin string, self note.Verifiers) (st state, ok bool, err error) {
	b := s.journal.get(origin)
	if b == nil {
		return state{}, false, nil
	}
	n, err := note.Open(b, self)
	if err != nil {
		return state{}, false, fmt.Errorf("%w: the recorded checkpoint of %q does not verify with this witness's key: %v", ErrCorruptState, origin, err)
	}
	c, err := checkpoint.Parse([]byte(n.Text))
	if err != nil || c.Origin != origin {
		return state{}, false, fmt.Errorf("%w: the recorded checkpoint of %q is not a checkpoint of that origin: %v", ErrCorruptState, origin, err)
	}
	return state{Size: c.Size, Root: c.Root, Note: b}, true, nil
}

// save records the origin's new state durably.
func (s *store) save(origin string, st state) error {
	return s.journal.put(origin, st.Note)
}

// Evidence is a request that failed consistency checks: proof that the log
// (or someone holding its key) presented an inconsistent view.
type Evidence struct {
	Time   time.Time `json:"time"`
	Origin string    `json:"origin"`
	Reason string    `json:"reason"`
	// Cosigned is the checkpoint the witness had cosigned (note, verbatim).
	Cosigned string `json:"cosigned_checkpoint"`
	// Submitted is the conflicting checkpoint (note, verbatim).
	Submitted string `json:"submitted_checkpoint"`
	// Old and Proof are the request's old size and consistency proof (base64).
	Old   uint64   `json:"old"`
	Proof []string `json:"proof"`
}

func (s *store) saveEvidence(e Evidence) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	// The content hash keeps two records of the same instant apart.
	sum := sha256.Sum256(b)
	name := fmt.Sprintf("%s-%s-%s.json", e.Time.UTC().Format("20060102T150405.000000000Z"), OriginID(e.Origin)[:16], hex.EncodeToString(sum[:4]))
	return atomicfile.Write(filepath.Join(s.dir, "evidence", name), b, 0o600)
}

// ReadEvidence returns the evidence stored under a witness database
// directory, oldest first.
func ReadEvidence(dir string) ([]Evidence, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "evidence"))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(dir); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Evidence
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "evidence", e.Name()))
		if err != nil {
			return nil, err
		}
		var ev Evidence
		if err := json.Unmarshal(b, &ev); err != nil {
			return nil, fmt.Errorf("evidence %s: %w", e.Name(), err)
		}
		out = append(out, ev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}
