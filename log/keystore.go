package log

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cairnlog/cairn/internal/atomicfile"
	"github.com/cairnlog/cairn/internal/fielderr"
)

// keyEntry is one entry of the subject key store: a data key wrapped by
// the key-encryption key, or, once erased, a tombstone saying when, by whom
// and why (the wrapped key is gone).
type keyEntry struct {
	Wrapped  []byte `json:"wrapped,omitempty"`
	ErasedAt int64  `json:"erased_at_unix_millis,omitempty"`
	ErasedBy string `json:"erased_by,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// erased reports whether e is a tombstone.
func (e keyEntry) erased() bool { return e.ErasedAt != 0 }

// keyStore holds the log's wrapped keys by name ("hash-key", or
// "subject-" + the hex subject hash), on the log's own storage: files
// beside a POSIX tree, a table on the mysql+s3 database. Every frontend of
// a log shares it.
type keyStore interface {
	// load returns the entry called name, and whether it exists.
	load(ctx context.Context, name string) (keyEntry, bool, error)
	// create stores e as name unless name exists, and returns what is
	// stored then (another frontend may have created it first).
	create(ctx context.Context, name string, e keyEntry) (keyEntry, error)
	// erase replaces name (existing or not) by the tombstone tomb unless it
	// is one already; it returns the tombstone stored and whether this call
	// stored it. The replacement is atomic and durable: after a crash the
	// entry is the old one or the tombstone.
	erase(ctx context.Context, name string, tomb keyEntry) (keyEntry, bool, error)
	// empty reports whether the store holds no entry at all.
	empty(ctx context.Context) (bool, error)
	// close releases the store's connections.
	close() error
	// shared reports whether other processes write this store (the
	// frontends of mysql+s3). A store only this process writes sees every
	// erasure go through this process, so its cached keys need no expiry.
	shared() bool
}

// fileKeyStore is the key store of the POSIX driver: one JSON file per
// entry in dir (the storage directory's .state/subject-keys), mode 0600.
type fileKeyStore struct {
	dir string
	// mu serialises erasures within this process (the POSIX driver has one
	// process per directory). Creations need no lock: an entry is linked
	// into place, which fails if it exists, so the first creation wins.
	mu sync.Mutex
}

// subjectKeysDir is where the POSIX driver keeps its key store, inside the
// storage directory and beside Tessera's private state.
const subjectKeysDir = ".state/subject-keys"

func newFileKeyStore(storageDir string) (*fileKeyStore, error) {
	dir := filepath.Join(storageDir, subjectKeysDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the key store %s: %w", dir, err)
	}
	return &fileKeyStore{dir: dir}, nil
}

func (s *fileKeyStore) path(name string) string { return filepath.Join(s.dir, name+".json") }

func (s *fileKeyStore) load(_ context.Context, name string) (keyEntry, bool, error) {
	b, err := os.ReadFile(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return keyEntry{}, false, nil
	}
	if err != nil {
		return keyEntry{}, false, fmt.Errorf("reading key %s: %w", name, err)
	}
	var e keyEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return keyEntry{}, false, fmt.Errorf("key store entry %s is corrupt: %w", s.path(name), err)
	}
	return e, true, nil
}

func (s *fileKeyStore) create(ctx context.Context, name string, e keyEntry) (keyEntry, error) {
	if old, ok, err := s.load(ctx, name); err != nil || ok {
		return old, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return keyEntry{}, err
	}
	// Link a complete, synced temporary file into place: the entry appears
	// whole or not at all, and never replaces one that exists.
	tmp, err := os.CreateTemp(s.dir, ".tmp-"+name+"-*")
	if err != nil {
		return keyEntry{}, fmt.Errorf("creating key %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(b)
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return keyEntry{}, fmt.Errorf("writing key %s: %w", name, werr)
	}
	if err := os.Link(tmp.Name(), s.path(name)); err != nil && !errors.Is(err, fs.ErrExist) {
		return keyEntry{}, fmt.Errorf("creating key %s: %w", name, err)
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return keyEntry{}, fmt.Errorf("syncing the key store: %w", err)
	}
	stored, _, err := s.load(ctx, name)
	return stored, err
}

func (s *fileKeyStore) erase(ctx context.Context, name string, tomb keyEntry) (keyEntry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok, err := s.load(ctx, name)
	if err != nil {
		return keyEntry{}, false, err
	}
	if ok && old.erased() {
		return old, false, nil
	}
	b, err := json.Marshal(tomb)
	if err != nil {
		return keyEntry{}, false, err
	}
	// Keep the old file open: once the tombstone is renamed over it, its
	// blocks are overwritten with zeros (best effort on a journaling or
	// copy-on-write file system; docs/erasure.md says why that is not a
	// guarantee and why it does not need to be: the key is wrapped).
	f, err := os.OpenFile(s.path(name), os.O_WRONLY, 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return keyEntry{}, false, fmt.Errorf("opening key %s: %w", name, err)
	}
	if err := atomicfile.Write(s.path(name), b, 0o600); err != nil {
		if f != nil {
			f.Close()
		}
		return keyEntry{}, false, fmt.Errorf("erasing key %s: %w", name, err)
	}
	if f != nil {
		if st, err := f.Stat(); err == nil {
			_, _ = f.WriteAt(make([]byte, st.Size()), 0)
			_ = f.Sync()
		}
		f.Close()
	}
	return tomb, true, nil
}

func (s *fileKeyStore) close() error { return nil }

func (s *fileKeyStore) shared() bool { return false }

func (s *fileKeyStore) empty(context.Context) (bool, error) {
	es, err := os.ReadDir(s.dir)
	if err != nil {
		return false, fmt.Errorf("reading the key store %s: %w", s.dir, err)
	}
	for _, e := range es {
		if filepath.Ext(e.Name()) == ".json" {
			return false, nil
		}
	}
	return true, nil
}

// sqlKeyStore is the key store of the mysql+s3 driver: the table
// cairn_subject_keys on the log's database, shared by every frontend.
type sqlKeyStore struct {
	db *sql.DB
}

// newSQLKeyStore creates the key table if it is missing.
func newSQLKeyStore(ctx context.Context, db *sql.DB) (*sqlKeyStore, error) {
	_, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS cairn_subject_keys (
		name VARCHAR(80) NOT NULL PRIMARY KEY,
		wrapped VARBINARY(255) NULL,
		erased_at BIGINT NOT NULL DEFAULT 0,
		erased_by VARCHAR(255) NOT NULL DEFAULT '',
		reason TEXT NULL
	)`)
	if err != nil {
		return nil, fmt.Errorf("creating the key table cairn_subject_keys: %w", err)
	}
	return &sqlKeyStore{db: db}, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func loadSQL(ctx context.Context, q querier, name, suffix string) (keyEntry, bool, error) {
	var e keyEntry
	var reason sql.NullString
	err := q.QueryRowContext(ctx, "SELECT wrapped, erased_at, erased_by, reason FROM cairn_subject_keys WHERE name = ?"+suffix, name).
		Scan(&e.Wrapped, &e.ErasedAt, &e.ErasedBy, &reason)
	if errors.Is(err, sql.ErrNoRows) {
		return keyEntry{}, false, nil
	}
	if err != nil {
		return keyEntry{}, false, fmt.Errorf("reading key %s: %w", name, err)
	}
	e.Reason = reason.String
	return e, true, nil
}

func (s *sqlKeyStore) load(ctx context.Context, name string) (keyEntry, bool, error) {
	return loadSQL(ctx, s.db, name, "")
}

func (s *sqlKeyStore) create(ctx context.Context, name string, e keyEntry) (keyEntry, error) {
	if _, err := s.db.ExecContext(ctx, "INSERT IGNORE INTO cairn_subject_keys (name, wrapped) VALUES (?, ?)", name, e.Wrapped); err != nil {
		return keyEntry{}, fmt.Errorf("creating key %s: %w", name, err)
	}
	stored, ok, err := s.load(ctx, name)
	if err == nil && !ok {
		err = fmt.Errorf("key %s vanished after it was created", name)
	}
	return stored, err
}

func (s *sqlKeyStore) erase(ctx context.Context, name string, tomb keyEntry) (keyEntry, bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return keyEntry{}, false, fmt.Errorf("erasing key %s: %w", name, err)
	}
	defer tx.Rollback()
	old, ok, err := loadSQL(ctx, tx, name, " FOR UPDATE")
	if err != nil {
		return keyEntry{}, false, err
	}
	if ok && old.erased() {
		return old, false, nil
	}
	if ok {
		_, err = tx.ExecContext(ctx, "UPDATE cairn_subject_keys SET wrapped = NULL, erased_at = ?, erased_by = ?, reason = ? WHERE name = ?", tomb.ErasedAt, tomb.ErasedBy, tomb.Reason, name)
	} else {
		_, err = tx.ExecContext(ctx, "INSERT INTO cairn_subject_keys (name, wrapped, erased_at, erased_by, reason) VALUES (?, NULL, ?, ?, ?)", name, tomb.ErasedAt, tomb.ErasedBy, tomb.Reason)
	}
	if err != nil {
		return keyEntry{}, false, fmt.Errorf("erasing key %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return keyEntry{}, false, fmt.Errorf("erasing key %s: %w", name, err)
	}
	return tomb, true, nil
}

func (s *sqlKeyStore) close() error { return s.db.Close() }

func (s *sqlKeyStore) shared() bool { return true }

func (s *sqlKeyStore) empty(ctx context.Context) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM (SELECT 1 FROM cairn_subject_keys LIMIT 1) AS t").Scan(&n); err != nil {
		return false, fmt.Errorf("reading the key table: %w", err)
	}
	return n == 0, nil
}

// openKeyStore opens the subject key store of the storage named by spec
// (validated): files in a POSIX directory, a table on the mysql+s3 database.
func openKeyStore(ctx context.Context, spec string, aws AWSConfig) (keyStore, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	if kind == "posix" {
		if err := os.MkdirAll(arg, 0o700); err != nil {
			return nil, fielderr.Errorf("Config.Storage", "creating %s: %w", arg, err)
		}
		ks, err := newFileKeyStore(arg)
		if err != nil {
			return nil, fielderr.New("Config.Storage", err)
		}
		return ks, nil
	}
	// Local mistakes (a missing or readable credential file) are reported
	// before anything connects, as openAWS would.
	if err := aws.Validate(); err != nil {
		return nil, err
	}
	if _, err := readCredential("Config.AWS.S3AccessKeyFile", aws.S3AccessKeyFile, false); err != nil {
		return nil, err
	}
	if _, err := readCredential("Config.AWS.S3SecretKeyFile", aws.S3SecretKeyFile, true); err != nil {
		return nil, err
	}
	dsn, err := readCommittedDSN(ctx, aws.MySQLDSN)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fielderr.New("Config.AWS.MySQLDSN", err)
	}
	db.SetMaxIdleConns(keyStoreIdleConns)
	ks, err := newSQLKeyStore(ctx, db)
	if err != nil {
		db.Close()
		return nil, fielderr.New("Config.AWS.MySQLDSN", err)
	}
	return ks, nil
}

// keyStoreIdleConns is how many idle connections the key store keeps.
const keyStoreIdleConns = 16
