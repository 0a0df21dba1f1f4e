package index

import (
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/format/search"
	"github.com/go-sql-driver/mysql"
	_ "modernc.org/sqlite" // the embedded database driver (pure Go: no cgo)
)

// The index is derived data in one SQL database: SQLite (embedded, the
// default) or MySQL/MariaDB (shared by several index servers' readers).
// Tables:
//
//	records        one row per log entry: index, timestamp, principal, content type, state, leaf, decrypted record
//	names          (id, name): the principals, content types and states records name by id
//	field_keys     (key, index) for every extracted field value: key is fieldKey(name, value), a 128-bit hash
//	field_merge    one row: upto, the size below which every field row is in field_keys (store.commit)
//	subjects       (hash, index) for every subject of a sealed record
//	tiles          (level, n, hashes): the hash tiles of the verified tree, for inclusion proofs
//	state          one row: the verified size, root, compact range and checkpoint note
//	schema_version one row: SchemaVersion
//
// A chunk of records, its tiles and the new state are written in one
// transaction, so the index resumes after a crash exactly where its last
// commit ended: no gaps, no duplicates.

var sqliteSchema = []string{
	`CREATE TABLE IF NOT EXISTS records (idx INTEGER PRIMARY KEY, ts INTEGER NOT NULL, principal INTEGER NOT NULL,
		content_type INTEGER NOT NULL, state INTEGER NOT NULL, leaf BLOB NOT NULL, rec BLOB)`,
	`CREATE TABLE IF NOT EXISTS names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)`,
	`CREATE INDEX IF NOT EXISTS records_principal ON records (principal, idx)`,
	`CREATE INDEX IF NOT EXISTS records_ts ON records (ts, idx)`,
	`CREATE TABLE IF NOT EXISTS field_keys (k BLOB NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (k, idx)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS field_merge (id INTEGER PRIMARY KEY, upto INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS subjects (hash TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (hash, idx)) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS tiles (level INTEGER NOT NULL, n INTEGER NOT NULL, hashes BLOB NOT NULL, PRIMARY KEY (level, n))`,
	`CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,
		range_hashes BLOB NOT NULL, checkpoint BLOB NOT NULL, fields TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)`,
}

var mysqlSchema = []string{
	`CREATE TABLE IF NOT EXISTS records (idx BIGINT UNSIGNED PRIMARY KEY, ts BIGINT NOT NULL, principal BIGINT NOT NULL,
		content_type BIGINT NOT NULL, state BIGINT NOT NULL, leaf MEDIUMBLOB NOT NULL, rec MEDIUMBLOB,
		INDEX records_principal (principal, idx), INDEX records_ts (ts, idx))`,
	`CREATE TABLE IF NOT EXISTS names (id BIGINT PRIMARY KEY, name VARBINARY(1024) NOT NULL, UNIQUE KEY names_name (name))`,
	`CREATE TABLE IF NOT EXISTS field_keys (k BINARY(16) NOT NULL, idx BIGINT UNSIGNED NOT NULL, PRIMARY KEY (k, idx))`,
	`CREATE TABLE IF NOT EXISTS subjects (hash CHAR(64) NOT NULL, idx BIGINT UNSIGNED NOT NULL, PRIMARY KEY (hash, idx))`,
	`CREATE TABLE IF NOT EXISTS tiles (level INT NOT NULL, n BIGINT UNSIGNED NOT NULL, hashes BLOB NOT NULL, PRIMARY KEY (level, n))`,
	`CREATE TABLE IF NOT EXISTS state (id INT PRIMARY KEY, size BIGINT UNSIGNED NOT NULL, root VARBINARY(32) NOT NULL,
		range_hashes BLOB NOT NULL, checkpoint BLOB NOT NULL, fields TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS schema_version (id INT PRIMARY KEY, version INT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS field_merge (id INT PRIMARY KEY, upto BIGINT UNSIGNED NOT NULL)`,
}

// SchemaVersion is the layout of the tables above. Version 1 (Cairn
// before the field_keys table, no schema_version table) kept field values
// as text rows (name, value, index); version 2 kept the principal,
// content type and state of each record as text in its row (names ids
// them: integer columns cost the writer ~10% less CPU a record). The
// index is derived data: a database of another version is refused with
// the instruction to delete it, and the next start rebuilds it from the
// log.
const SchemaVersion = 3

// store is the index's database.
type store struct {
	db      *sql.DB
	dialect string // "sqlite" or "mysql"
	// pending are the field rows of the entries from upto to the
	// committed size, not yet in field_keys (store.commit). Only
	// the follower's goroutine, which alone writes, reads or sets them
	// (the follower rebuilds them from the records table when it loads).
	pending []fieldRow
	runs    []int // pending is sorted runs: runs[i] is where run i ends
	upto    uint64
	// names are the committed rows of the names table (name → id), read
	// once (loadState) and extended by each commit that adds names. Only
	// the follower's goroutine reads or sets them.
	names map[string]int64
}

// maxPending bounds the pending field rows (24 bytes each in memory):
// past it a commit merges them into field_keys even in the middle of a
// catch-up.
const maxPending = 1 << 21

// openStore opens (and creates the tables of) the database named by spec:
// sqlite:PATH or mysql:DSN (a go-sql-driver DSN).
func openStore(ctx context.Context, spec string) (*store, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok || arg == "" {
		return nil, fmt.Errorf("%q: want sqlite:PATH or mysql:DSN", spec)
	}
	var s store
	var schema []string
	switch kind {
	case "sqlite":
		// WAL: readers never wait for the follower's commits; synchronous
		// NORMAL: a commit survives a process crash (kill -9) — it is in
		// the WAL — though not a power loss, which the index survives by
		// re-reading the log (it is derived data). wal_autocheckpoint
		// 65536 pages (256 MiB of WAL between checkpoints; the
		// default is 1000 pages, 4 MiB): a chunk dirties pages all over the fields
		// B-tree, and checkpointing after every commit copied most of the
		// table each time (commits took 11.3 s of a 1 M-record ingest,
		// 7.0 s with this). The WAL file keeps its high-water size.
		dsn := "file:" + arg + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)" +
			"&_pragma=cache_size(-262144)&_pragma=mmap_size(4294967296)&_pragma=temp_store(memory)&_pragma=wal_autocheckpoint(65536)&_txlock=immediate"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, err
		}
		s.db, s.dialect, schema = db, "sqlite", sqliteSchema
	case "mysql":
		cfg, err := mysql.ParseDSN(arg)
		if err != nil {
			return nil, fmt.Errorf("mysql DSN: %w", err)
		}
		cfg.MultiStatements = false
		cfg.InterpolateParams = true
		db, err := sql.Open("mysql", cfg.FormatDSN())
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(16)
		s.db, s.dialect, schema = db, "mysql", mysqlSchema
	default:
		return nil, fmt.Errorf("%q: unknown database %q, want sqlite:PATH or mysql:DSN", spec, kind)
	}
	if err := s.checkVersion(ctx, kind, arg); err != nil {
		s.db.Close()
		return nil, err
	}
	for _, q := range schema {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			s.db.Close()
			return nil, fmt.Errorf("creating the index tables: %w", err)
		}
	}
	if _, err := s.db.ExecContext(ctx, `REPLACE INTO schema_version (id, version) VALUES (1, ?)`, SchemaVersion); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("writing the index's schema version: %w", err)
	}
	// A new index has merged nothing; one that has no row yet was written
	// before field_merge existed, every field row merged.
	ignore := "INSERT OR IGNORE"
	if s.dialect == "mysql" {
		ignore = "INSERT IGNORE"
	}
	if _, err := s.db.ExecContext(ctx, ignore+` INTO field_merge (id, upto) SELECT 1, COALESCE((SELECT size FROM state WHERE id = 1), 0)`); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("creating the index tables: %w", err)
	}
	return &s, nil
}

// checkVersion refuses a database that holds an index of another schema
// version (an empty database is fine: the tables are created).
func (s *store) checkVersion(ctx context.Context, kind, arg string) error {
	tables := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	if s.dialect == "mysql" {
		tables = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`
	}
	has := func(name string) (bool, error) {
		var n int
		if err := s.db.QueryRowContext(ctx, tables, name).Scan(&n); err != nil {
			return false, fmt.Errorf("reading the index database's tables: %w", err)
		}
		return n > 0, nil
	}
	old, err := has("records")
	if err != nil || !old {
		return err
	}
	version := 1
	if ok, err := has("schema_version"); err != nil {
		return err
	} else if ok {
		if err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version WHERE id = 1`).Scan(&version); err != nil {
			return fmt.Errorf("reading the index's schema version: %w", err)
		}
	}
	if version == SchemaVersion {
		return nil
	}
	rebuild := fmt.Sprintf("delete %s (and its -wal and -shm files)", arg)
	if kind == "mysql" {
		rebuild = "drop the database's tables records, names, fields, field_keys, field_merge, subjects, tiles, state and schema_version"
	}
	return fmt.Errorf("the index database holds schema version %d, this cairn writes version %d: the index is derived data, rebuild it from the log: %s and start again",
		version, SchemaVersion, rebuild)
}

func (s *store) Close() error { return s.db.Close() }

// forceIndex names the index a query must use, in the dialect's words.
func (s *store) forceIndex(name string) string {
	if s.dialect == "mysql" {
		return "FORCE INDEX (" + name + ")"
	}
	return "INDEXED BY " + name
}

// savedState is the state row.
type savedState struct {
	Size       uint64
	Root       []byte
	Range      [][]byte
	Checkpoint []byte
	Fields     string
}

// loadState returns the saved state, or nil before the first commit.
func (s *store) loadState(ctx context.Context) (*savedState, error) {
	if err := s.loadNames(ctx); err != nil {
		return nil, err
	}
	var st savedState
	var rng []byte
	err := s.db.QueryRowContext(ctx, `SELECT size, root, range_hashes, checkpoint, fields FROM state WHERE id = 1`).
		Scan(&st.Size, &st.Root, &rng, &st.Checkpoint, &st.Fields)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the index state: %w", err)
	}
	s.pending, s.runs, s.upto = nil, nil, st.Size
	if err := s.db.QueryRowContext(ctx, `SELECT upto FROM field_merge WHERE id = 1`).Scan(&s.upto); err != nil {
		return nil, fmt.Errorf("reading the index state: %w", err)
	}
	if len(rng)%32 != 0 {
		return nil, fmt.Errorf("the index state's compact range is %d bytes, not a multiple of 32", len(rng))
	}
	for i := 0; i < len(rng); i += 32 {
		st.Range = append(st.Range, rng[i:i+32])
	}
	return &st, nil
}

// loadNames reads the names table.
func (s *store) loadNames(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, `SELECT id, name FROM names`)
	if err != nil {
		return fmt.Errorf("reading the index's names: %w", err)
	}
	defer rows.Close()
	s.names = map[string]int64{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return fmt.Errorf("reading the index's names: %w", err)
		}
		s.names[name] = id
	}
	return rows.Err()
}

// namer gives the ids of names within one transaction: a name not in
// the table yet is inserted by it, and the store learns it only once the
// transaction commits (done).
type namer struct {
	s     *store
	tx    *sql.Tx
	added map[string]int64
}

func (s *store) namer(tx *sql.Tx) *namer { return &namer{s: s, tx: tx} }

// id returns name's id, adding it to the names table if it is new.
func (n *namer) id(ctx context.Context, name string) (int64, error) {
	if id, ok := n.s.names[name]; ok {
		return id, nil
	}
	if id, ok := n.added[name]; ok {
		return id, nil
	}
	if n.added == nil {
		n.added = map[string]int64{}
	}
	id := int64(len(n.s.names) + len(n.added) + 1)
	if _, err := n.tx.ExecContext(ctx, `INSERT INTO names (id, name) VALUES (?, ?)`, id, name); err != nil {
		return 0, fmt.Errorf("adding %q to the index's names: %w", name, err)
	}
	n.added[name] = id
	return id, nil
}

// done records the names the committed transaction added.
func (n *namer) done() {
	if n.s.names == nil {
		n.s.names = map[string]int64{}
	}
	for name, id := range n.added {
		n.s.names[name] = id
	}
}

// nameID returns the id of name for a query, or false when no record
// names it.
func (s *store) nameID(ctx context.Context, name string) (int64, bool, error) {
	var id int64
	err := s.db.QueryRowContext(ctx, `SELECT id FROM names WHERE name = ?`, name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading the index's names: %w", err)
	}
	return id, true, nil
}

// stateName is an SQL expression for the state (text) of the records row r.
const stateName = `(SELECT name FROM names WHERE id = r.state)`

// tileRow is one hash tile to write (a partial tile is rewritten as it grows).
type tileRow struct {
	level, n uint64
	hashes   []byte
}

// batch is a chunk's rows as the writer inserts them: the records in
// index order, their field and subject rows sorted by key (newBatch).
type batch struct {
	records  []*search.Hit
	fields   []fieldRow
	subjects []subjectRow
}

type fieldRow struct {
	key [fieldKeySize]byte // fieldKey(name, value)
	idx uint64
}

// fieldKeySize is the length of a field key.
const fieldKeySize = 16

// fieldKey is the key under which a field value is indexed: the first 16
// bytes of SHA-256(name, 0, value). A short fixed-size
// key keeps the field_keys B-tree small (~24 bytes a row however long the
// name and value) and its inserts cheap — three rows a record are most of
// the writer's work. 128 bits make two values sharing a key as unlikely
// as a SHA-256 collision truncated to them (2^-64 after 2^64 values, and
// a second preimage of a given value's key is 2^128 work), so a field key
// names one value, and the index answers (and the client checks) the
// entries filed under it as it did the text rows before.
func fieldKey(name, value string) [fieldKeySize]byte {
	var buf [128]byte
	msg := append(append(append(buf[:0], name...), 0), value...)
	sum := sha256.Sum256(msg)
	return [fieldKeySize]byte(sum[:fieldKeySize])
}

// fieldRows are the field rows of a described entry, appended to dst.
func fieldRows(dst []fieldRow, h *search.Hit) []fieldRow {
	for k, v := range h.Fields {
		dst = append(dst, fieldRow{fieldKey(k, v), h.Index})
	}
	return dst
}

// compareFieldRows orders rows by (key, index), the order of
// field_keys. The keys compare as two big-endian words (bytes.Compare's
// call was most of a sort).
func compareFieldRows(x, y fieldRow) int {
	if c := cmp.Compare(binary.BigEndian.Uint64(x.key[:8]), binary.BigEndian.Uint64(y.key[:8])); c != 0 {
		return c
	}
	if c := cmp.Compare(binary.BigEndian.Uint64(x.key[8:]), binary.BigEndian.Uint64(y.key[8:])); c != 0 {
		return c
	}
	return cmp.Compare(x.idx, y.idx)
}

// sortFieldRows returns rows in (key, index) order, in a new slice.
// The keys are hashes, evenly spread: one counting pass distributes the
// rows into buckets by their first 16 bits or fewer (about two rows a
// bucket), and each bucket is then sorted alone — a comparison sort of a
// chunk's ~50 000 rows was 5% of an ingest's CPU.
func sortFieldRows(rows []fieldRow) []fieldRow {
	if len(rows) < 64 {
		slices.SortFunc(rows, compareFieldRows)
		return rows
	}
	shift := 64 - min(16, bits.Len(uint(len(rows)/2)))
	bucket := func(r *fieldRow) uint64 { return binary.BigEndian.Uint64(r.key[:8]) >> shift }
	starts := make([]int, 1<<(64-shift)+1)
	for i := range rows {
		starts[bucket(&rows[i])+1]++
	}
	for i := 1; i < len(starts); i++ {
		starts[i] += starts[i-1]
	}
	out := make([]fieldRow, len(rows))
	next := slices.Clone(starts[:len(starts)-1])
	for i := range rows {
		k := bucket(&rows[i])
		out[next[k]] = rows[i]
		next[k]++
	}
	for k := 0; k+1 < len(starts); k++ {
		b := out[starts[k]:starts[k+1]]
		switch {
		case len(b) < 2:
		case len(b) <= 12:
			// Insertion sort: a bucket holds a few rows, and the rows of
			// one key (one value) arrive in index order.
			for i := 1; i < len(b); i++ {
				for j := i; j > 0 && compareFieldRows(b[j-1], b[j]) > 0; j-- {
					b[j-1], b[j] = b[j], b[j-1]
				}
			}
		default:
			slices.SortFunc(b, compareFieldRows)
		}
	}
	return out
}

// mergeRuns returns rows, whose sorted runs end at ends, in order:
// adjacent runs are merged pairwise until one is left (the follower sorts
// each chunk's rows as it fetches, so the writer only merges them).
func mergeRuns(rows []fieldRow, ends []int) []fieldRow {
	if len(ends) <= 1 {
		return rows
	}
	src, dst := rows, make([]fieldRow, len(rows))
	for len(ends) > 1 {
		next := make([]int, 0, (len(ends)+1)/2)
		start := 0
		for i := 0; i < len(ends); i += 2 {
			if i+1 == len(ends) {
				copy(dst[start:ends[i]], src[start:ends[i]])
				next = append(next, ends[i])
				break
			}
			mid, end := ends[i], ends[i+1]
			a, b, out := src[start:mid], src[mid:end], dst[start:start]
			for len(a) > 0 && len(b) > 0 {
				if compareFieldRows(a[0], b[0]) <= 0 {
					out, a = append(out, a[0]), a[1:]
				} else {
					out, b = append(out, b[0]), b[1:]
				}
			}
			// out was built in dst; one of a and b is left over.
			n := start + len(out)
			n += copy(dst[n:end], a)
			copy(dst[n:end], b)
			next = append(next, end)
			start = end
		}
		ends = next
		src, dst = dst, src
	}
	return src
}

type subjectRow struct {
	hash string
	idx  uint64
}

// newBatch lays out rows for the writer. The field and subject rows are
// sorted by their primary keys so that consecutive inserts land on the
// same B-tree pages instead of one random page each: in BenchmarkIndexWrite
// this cut SQLite's VDBE time by ~30% (the fields table is ~70% of the
// writer's CPU). The sort runs here, in the follower's fetching goroutine,
// off the writer's critical path (pending field rows are merged as
// sorted runs, store.commit).
func newBatch(rows []*search.Hit) *batch {
	b := &batch{records: rows}
	n := 0
	for _, h := range rows {
		n += len(h.Fields)
	}
	b.fields = make([]fieldRow, 0, n)
	for _, h := range rows {
		b.fields = fieldRows(b.fields, h)
		for _, sh := range h.SubjectHashes {
			b.subjects = append(b.subjects, subjectRow{sh, h.Index})
		}
	}
	b.fields = sortFieldRows(b.fields)
	slices.SortFunc(b.subjects, func(x, y subjectRow) int {
		if c := strings.Compare(x.hash, y.hash); c != 0 {
			return c
		}
		return cmp.Compare(x.idx, y.idx)
	})
	return b
}

// commit writes a batch of rows (or none), tiles and the new state in
// one transaction. complete says that st's checkpoint covers st's whole
// size, so that queries will read every entry up to it.
//
// The field rows of a chunk that does not complete a
// checkpoint are kept in memory (pending) instead of inserted: queries
// answer only below the served checkpoint's size, so they need no field
// row of these entries yet. The commit that completes a checkpoint (or
// finds maxPending rows pending) merges their sorted runs and inserts
// them into field_keys, in the same transaction, and records in field_merge that
// every field row below its size is there. A catch-up thus writes each
// page of the field_keys B-tree once per merge instead of once per
// chunk (a chunk's rows land on most of its pages), in key order. The
// pending rows are derived data of the committed records: after a crash
// (or a failed commit) the follower rebuilds them from the records from
// upto on (follower.load). Tailing a log, every commit completes a
// checkpoint: nothing is pending.
func (s *store) commit(ctx context.Context, rows *batch, tiles []tileRow, st *savedState, complete bool) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	names := s.namer(tx)
	pending, runs, upto := s.pending, s.runs, s.upto
	if rows != nil {
		toPending := !complete || len(pending) > 0
		if err := s.insertRows(ctx, tx, names, rows, !toPending); err != nil {
			return err
		}
		if toPending {
			// (A failed commit leaves s.pending as it was; the appended
			// rows past its length are not read.)
			if pending == nil {
				// Sized once for a whole merge: growing it by doubling
				// cost a catch-up's writer 7% of its CPU.
				pending = make([]fieldRow, 0, maxPending+len(rows.fields))
			}
			pending = append(pending, rows.fields...)
			runs = append(runs, len(pending))
		} else {
			upto = st.Size
		}
	}
	if len(pending) > 0 && (complete || len(pending) >= maxPending) {
		if err := s.merge(ctx, tx, pending, runs); err != nil {
			return err
		}
		pending, runs, upto = nil, nil, st.Size
	}
	if upto != s.upto {
		if _, err := tx.ExecContext(ctx, `REPLACE INTO field_merge (id, upto) VALUES (1, ?)`, upto); err != nil {
			return fmt.Errorf("writing the index state: %w", err)
		}
	}
	if len(tiles) > 0 {
		stmt, err := tx.PrepareContext(ctx, `REPLACE INTO tiles (level, n, hashes) VALUES (?, ?, ?)`)
		if err != nil {
			return err
		}
		for _, t := range tiles {
			if _, err := stmt.ExecContext(ctx, t.level, t.n, t.hashes); err != nil {
				stmt.Close()
				return fmt.Errorf("writing tile %d/%d: %w", t.level, t.n, err)
			}
		}
		stmt.Close()
	}
	cp := st.Checkpoint
	if cp == nil {
		cp = []byte{} // no checkpoint covers the indexed entries yet
	}
	rng := make([]byte, 0, 32*len(st.Range))
	for _, h := range st.Range {
		rng = append(rng, h...)
	}
	if _, err := tx.ExecContext(ctx, `REPLACE INTO state (id, size, root, range_hashes, checkpoint, fields) VALUES (1, ?, ?, ?, ?, ?)`,
		st.Size, st.Root, rng, cp, st.Fields); err != nil {
		return fmt.Errorf("writing the index state: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	names.done()
	s.pending, s.runs, s.upto = pending, runs, upto
	return nil
}

// merge inserts the pending field rows (sorted runs ending at runs) into
// field_keys, in key order.
func (s *store) merge(ctx context.Context, tx *sql.Tx, pending []fieldRow, runs []int) error {
	if err := s.insertRows(ctx, tx, nil, &batch{fields: mergeRuns(pending, runs)}, true); err != nil {
		return fmt.Errorf("merging the pending field rows: %w", err)
	}
	return nil
}

// insertBatch is how many rows one multi-row INSERT carries.
const insertBatch = 200

// insertRows writes records, fields and subjects with multi-row INSERTs
// (prepared once per shape): one statement per 200 rows instead of one per row.
// withFields: the field rows too (else they are pending, see commit).
// names ids the records' principals, content types and states.
func (s *store) insertRows(ctx context.Context, tx *sql.Tx, names *namer, rows *batch, withFields bool) error {
	var recArgs, fieldArgs, subjArgs []any
	nRec, nField, nSubj := 0, 0, 0
	// Full batches reuse one prepared statement per table.
	stmts := map[string]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	flush := func(force bool) error {
		if err := s.flush(ctx, tx, stmts, "records (idx, ts, principal, content_type, state, leaf, rec)", 7, &recArgs, &nRec, force); err != nil {
			return err
		}
		if err := s.flush(ctx, tx, stmts, "field_keys (k, idx)", 2, &fieldArgs, &nField, force); err != nil {
			return err
		}
		return s.flush(ctx, tx, stmts, "subjects (hash, idx)", 2, &subjArgs, &nSubj, force)
	}
	for _, h := range rows.records {
		var rec any
		if h.Record != nil {
			rec = h.Record
		}
		principal, err := names.id(ctx, h.Principal)
		if err != nil {
			return err
		}
		contentType, err := names.id(ctx, h.ContentType)
		if err != nil {
			return err
		}
		state, err := names.id(ctx, h.State)
		if err != nil {
			return err
		}
		// Integers as int64: database/sql passes them to the driver as
		// they are (a uint64 goes through its reflection-based converter).
		recArgs = append(recArgs, int64(h.Index), h.TimestampUnixMillis, principal, contentType, state, h.Leaf, rec)
		nRec++
		if err := flush(false); err != nil {
			return err
		}
	}
	for i := range rows.fields {
		if !withFields {
			break
		}
		r := &rows.fields[i]
		fieldArgs = append(fieldArgs, r.key[:], int64(r.idx))
		nField++
		if err := flush(false); err != nil {
			return err
		}
	}
	for _, r := range rows.subjects {
		subjArgs = append(subjArgs, r.hash, int64(r.idx))
		nSubj++
		if err := flush(false); err != nil {
			return err
		}
	}
	return flush(true)
}

func (s *store) flush(ctx context.Context, tx *sql.Tx, stmts map[string]*sql.Stmt, table string, cols int, args *[]any, n *int, force bool) error {
	if *n == 0 || (*n < insertBatch && !force) {
		return nil
	}
	for *n >= insertBatch {
		st, ok := stmts[table]
		if !ok {
			var err error
			if st, err = tx.PrepareContext(ctx, s.insertSQL(table, cols, insertBatch)); err != nil {
				return fmt.Errorf("preparing the insert into %s: %w", strings.Fields(table)[0], err)
			}
			stmts[table] = st
		}
		if _, err := st.ExecContext(ctx, (*args)[:insertBatch*cols]...); err != nil {
			return fmt.Errorf("inserting into %s: %w", strings.Fields(table)[0], err)
		}
		rest := copy(*args, (*args)[insertBatch*cols:])
		*args, *n = (*args)[:rest], *n-insertBatch
	}
	if *n == 0 || !force {
		return nil
	}
	if _, err := tx.ExecContext(ctx, s.insertSQL(table, cols, *n), *args...); err != nil {
		return fmt.Errorf("inserting into %s: %w", strings.Fields(table)[0], err)
	}
	*args, *n = (*args)[:0], 0
	return nil
}

// insertSQL is a multi-row INSERT of n rows of cols columns. In SQLite it
// is INSERT OR ROLLBACK: a duplicate key aborts the whole transaction (as
// a failed commit does anyway), so SQLite keeps no statement journal to
// undo the statement alone (~5% of the writer's CPU).
func (s *store) insertSQL(table string, cols, n int) string {
	var b strings.Builder
	if s.dialect == "sqlite" {
		b.WriteString("INSERT OR ROLLBACK INTO ")
	} else {
		b.WriteString("INSERT INTO ")
	}
	b.WriteString(table)
	b.WriteString(" VALUES ")
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(one)
	}
	return b.String()
}

// markErased records that a subject's key was destroyed: its records
// lose their plaintext and fields (keys: the field rows of its decrypted
// records) and read as erased, like the log's.
func (s *store) markErased(ctx context.Context, subjectHash string, below uint64, keys []fieldRow) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	names := s.namer(tx)
	merged := len(s.pending) > 0
	if merged {
		// The keys may be pending: merge them first (erasures are rare).
		if err := s.merge(ctx, tx, s.pending, s.runs); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `REPLACE INTO field_merge (id, upto) VALUES (1, ?)`, below); err != nil {
			return fmt.Errorf("writing the index state: %w", err)
		}
	}
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, `DELETE FROM field_keys WHERE k = ? AND idx = ?`, k.key[:], k.idx); err != nil {
			return fmt.Errorf("erasing the fields of entry %d (subject %s): %w", k.idx, subjectHash, err)
		}
	}
	erased, err := names.id(ctx, record.StateErased)
	if err != nil {
		return err
	}
	none, err := names.id(ctx, "")
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE records SET state = ?, rec = NULL, content_type = ? WHERE idx IN (SELECT idx FROM subjects WHERE hash = ? AND idx < ?)`, erased, none, subjectHash, below); err != nil {
		return fmt.Errorf("erasing records of subject %s: %w", subjectHash, err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	names.done()
	if merged {
		s.pending, s.runs, s.upto = nil, nil, below
	}
	return nil
}

// tile returns the stored hashes of tile (level, n).
func (s *store) tile(ctx context.Context, level, n uint64) ([]byte, error) {
	var b []byte
	err := s.db.QueryRowContext(ctx, `SELECT hashes FROM tiles WHERE level = ? AND n = ?`, level, n).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return b, err
}

// lastTiles returns, per level, the highest-numbered tile (the one that
// may still be partial).
func (s *store) lastTiles(ctx context.Context) (map[uint64]tileRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT t.level, t.n, t.hashes FROM tiles t
		JOIN (SELECT level, MAX(n) AS n FROM tiles GROUP BY level) m ON t.level = m.level AND t.n = m.n`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[uint64]tileRow{}
	for rows.Next() {
		var t tileRow
		if err := rows.Scan(&t.level, &t.n, &t.hashes); err != nil {
			return nil, err
		}
		out[t.level] = t
	}
	return out, rows.Err()
}
