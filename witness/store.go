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
	"golang.org/x/mod/sumdb/note"
)

// store keeps, per origin, the latest checkpoint this witness cosigned, as a
// note carrying the log's signature and the witness's cosignature. Each
// origin is one file, replaced atomically (write temp, fsync, rename, fsync
// the directory) before the witness answers, so a crash at any instant leaves
// either the old or the new state, never a torn one.
type store struct {
	dir string
}

// state is one origin's latest cosigned checkpoint.
type state struct {
	Size uint64
	Root [32]byte
	Note []byte // checkpoint + log signature + our cosignature
}

func openStore(dir string) (*store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "checkpoints"), filepath.Join(dir, "evidence")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("--db: creating %s: %w", d, err)
		}
	}
	return &store{dir: dir}, nil
}

// OriginID is the lowercase hex SHA-256 of an origin: the name of its state
// file and of its monitoring path.
func OriginID(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(h[:])
}

func (s *store) path(origin string) string {
	return filepath.Join(s.dir, "checkpoints", OriginID(origin))
}

// load returns the origin's state; ok is false if it never cosigned one. A
// state file that exists but does not verify with our own key (truncated,
// flipped bytes) is an error: the witness fails closed rather than forgetting
// what it cosigned.
func (s *store) load(origin string, self note.Verifier) (st state, ok bool, err error) {
	b, err := os.ReadFile(s.path(origin))
	if errors.Is(err, os.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, fmt.Errorf("reading state of %q: %w", origin, err)
	}
	n, err := note.Open(b, note.VerifierList(self))
	if err != nil {
		return state{}, false, fmt.Errorf("%w: state of %q (%s) does not verify with this witness's key: %v", ErrCorruptState, origin, s.path(origin), err)
	}
	c, err := checkpoint.Parse([]byte(n.Text))
	if err != nil || c.Origin != origin {
		return state{}, false, fmt.Errorf("%w: state of %q (%s) holds a bad checkpoint: %v", ErrCorruptState, origin, s.path(origin), err)
	}
	return state{Size: c.Size, Root: c.Root, Note: b}, true, nil
}

// save replaces the origin's state durably.
func (s *store) save(origin string, st state) error {
	return writeDurably(s.path(origin), st.Note)
}

// writeDurably replaces path with b so that after a crash it holds either
// the old or the new content.
func writeDurably(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
	name := fmt.Sprintf("%s-%s.json", e.Time.UTC().Format("20060102T150405.000000000Z"), OriginID(e.Origin)[:16])
	return writeDurably(filepath.Join(s.dir, "evidence", name), b)
}

// ReadEvidence returns the evidence stored under a witness database
// directory, oldest first.
func ReadEvidence(dir string) ([]Evidence, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "evidence"))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("--db: %w", err)
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
