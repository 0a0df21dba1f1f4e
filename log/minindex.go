package log

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairnlog/cairn/internal/atomicfile"
	"github.com/transparency-dev/tessera/api/layout"
)

// retentionState is the log's lifecycle state, stored beside the tree by the
// storage driver (POSIX: .state/retention.json; mysql+s3: the
// CairnRetention table) and shared by every frontend.
type retentionState struct {
	// MinIndex is the C2SP tlog-tiles minimum index: a multiple of
	// layout.EntryBundleWidth that only ever moves forward.
	MinIndex uint64 `json:"minimum_index"`
	// Integrated records, for full entry bundles, when the log first saw a
	// published checkpoint covering them: bundles below Upto (and at or above
	// the previous mark's Upto) were integrated at At.
	Integrated []integrationMark `json:"integrated,omitempty"`
	// Moves lists every move of MinIndex; a bundle's grace period counts
	// from the first move past it (serving denial comes first).
	Moves []indexMove `json:"moves,omitempty"`
	// Deleted says bundles [0, Deleted) are physically gone (archived and
	// verified first when the policy archives).
	Deleted uint64 `json:"deleted_bundles"`
	// Holds are the legal holds in force; HoldsVersion changes with them.
	Holds        []Hold `json:"holds,omitempty"`
	HoldsVersion uint64 `json:"holds_version"`
}

// integrationMark says full bundles below Upto were integrated by At (Unix ms).
type integrationMark struct {
	Upto uint64 `json:"upto_bundle"`
	At   int64  `json:"at_ms"`
}

// indexMove is one move of the minimum index.
type indexMove struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
	At   int64  `json:"at_ms"`
}

// integratedAt returns when bundle k was integrated, if the log knows.
func (s *retentionState) integratedAt(k uint64) (time.Time, bool) {
	for _, m := range s.Integrated {
		if k < m.Upto {
			return time.UnixMilli(m.At), true
		}
	}
	return time.Time{}, false
}

// fullBundlesSeen is how many full bundles have an integration time.
func (s *retentionState) fullBundlesSeen() uint64 {
	if len(s.Integrated) == 0 {
		return 0
	}
	return s.Integrated[len(s.Integrated)-1].Upto
}

// deniedAt returns when bundle k started being denied (it is below MinIndex).
func (s *retentionState) deniedAt(k uint64) (time.Time, bool) {
	for _, m := range s.Moves {
		if (k+1)*layout.EntryBundleWidth <= m.To {
			return time.UnixMilli(m.At), true
		}
	}
	return time.Time{}, false
}

// trim drops integration marks wholly below the minimum index and the
// deleted watermark, and moves wholly below the deleted watermark, which
// nothing reads again (the last of each is kept).
func (s *retentionState) trim() {
	below := min(s.MinIndex/layout.EntryBundleWidth, s.Deleted)
	i := 0
	for i < len(s.Integrated)-1 && s.Integrated[i].Upto <= below {
		i++
	}
	s.Integrated = s.Integrated[i:]
	j := 0
	for j < len(s.Moves)-1 && s.Moves[j].To <= s.Deleted*layout.EntryBundleWidth {
		j++
	}
	s.Moves = s.Moves[j:]
}

// retentionStore keeps retentionState. update is an atomic
// read-modify-write across every frontend: f's error aborts it.
type retentionStore interface {
	load(ctx context.Context) (retentionState, error)
	update(ctx context.Context, f func(*retentionState) error) error
}

// errBackwards is refused by every update: the minimum index only moves forward.
var errBackwards = errors.New("the minimum index only moves forward")

// checkForward guards an update against moving backwards.
func checkForward(before, after retentionState) error {
	if after.MinIndex < before.MinIndex || after.Deleted < before.Deleted {
		return fmt.Errorf("%w (from %d to %d)", errBackwards, before.MinIndex, after.MinIndex)
	}
	if after.MinIndex%layout.EntryBundleWidth != 0 {
		return fmt.Errorf("minimum index %d is not at an entry bundle boundary", after.MinIndex)
	}
	return nil
}

// fileRetentionStore is the POSIX driver's store: one JSON file written
// atomically; one process owns a POSIX log.
type fileRetentionStore struct {
	path string
	mu   sync.Mutex // serialises update
}

func newFileRetentionStore(dir string) *fileRetentionStore {
	return &fileRetentionStore{path: filepath.Join(dir, ".state", "retention.json")}
}

func (f *fileRetentionStore) load(context.Context) (retentionState, error) {
	var s retentionState
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading retention state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("retention state %s is corrupt: %w", f.path, err)
	}
	return s, nil
}

func (f *fileRetentionStore) update(ctx context.Context, fn func(*retentionState) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	before, err := f.load(ctx)
	if err != nil {
		return err
	}
	after := before
	after.Integrated = append([]integrationMark(nil), before.Integrated...)
	after.Moves = append([]indexMove(nil), before.Moves...)
	after.Holds = append([]Hold(nil), before.Holds...)
	if err := fn(&after); err != nil {
		return err
	}
	if err := checkForward(before, after); err != nil {
		return err
	}
	after.trim()
	b, err := json.Marshal(after)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(f.path, b, 0o600)
}

// sqlRetentionStore is the mysql+s3 driver's store: one row of the
// CairnRetention table, updated under SELECT … FOR UPDATE.
type sqlRetentionStore struct{ db *sql.DB }

func newSQLRetentionStore(ctx context.Context, db *sql.DB) (*sqlRetentionStore, error) {
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS CairnRetention (id INT UNSIGNED NOT NULL PRIMARY KEY, state LONGBLOB NOT NULL)"); err != nil {
		return nil, fmt.Errorf("creating the CairnRetention table: %w", err)
	}
	if _, err := db.ExecContext(ctx, "INSERT IGNORE INTO CairnRetention (id, state) VALUES (0, '{}')"); err != nil {
		return nil, fmt.Errorf("initialising the CairnRetention table: %w", err)
	}
	return &sqlRetentionStore{db: db}, nil
}

func (s *sqlRetentionStore) load(ctx context.Context) (retentionState, error) {
	var st retentionState
	var b []byte
	if err := s.db.QueryRowContext(ctx, "SELECT state FROM CairnRetention WHERE id = 0").Scan(&b); err != nil {
		return st, fmt.Errorf("reading retention state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("retention state is corrupt: %w", err)
	}
	return st, nil
}

func (s *sqlRetentionStore) update(ctx context.Context, fn func(*retentionState) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("updating retention state: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	var b []byte
	if err := tx.QueryRowContext(ctx, "SELECT state FROM CairnRetention WHERE id = 0 FOR UPDATE").Scan(&b); err != nil {
		return fmt.Errorf("reading retention state: %w", err)
	}
	var before, after retentionState
	if err := json.Unmarshal(b, &before); err != nil {
		return fmt.Errorf("retention state is corrupt: %w", err)
	}
	_ = json.Unmarshal(b, &after)
	if err := fn(&after); err != nil {
		return err
	}
	if err := checkForward(before, after); err != nil {
		return err
	}
	after.trim()
	nb, err := json.Marshal(after)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE CairnRetention SET state = ? WHERE id = 0", nb); err != nil {
		return fmt.Errorf("writing retention state: %w", err)
	}
	return tx.Commit()
}
