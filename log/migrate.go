package log

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	aaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/cairnlog/cairn/format/migration"
	"github.com/cairnlog/cairn/internal/atomicfile"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"github.com/transparency-dev/tessera/storage/posix"
)

// MigrationConfig names the storage a source log is copied into: the same
// Storage and AWS settings `cairn log serve` later opens.
type MigrationConfig struct {
	Storage string
	AWS     AWSConfig
	Logger  *slog.Logger
}

// MigrationTarget copies a source log's entries, bundle by bundle, into
// Cairn's storage through Tessera's migration lifecycle
// (tessera.NewMigrationTarget): Tessera integrates the copied bundles and
// recomputes the tree itself, so the copy is checked, not trusted. Rerun
// with the same storage, a migration resumes at the integrated size.
type MigrationTarget struct {
	mt   *tessera.MigrationTarget
	kind string
	// readTile reads a hash tile from the target (tlog-tiles paths).
	readTile func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	// finish makes the storage ready for appends at the migrated size.
	finish func(ctx context.Context, size uint64) error
	// writeObject writes a file beside the tiles (the migration boundary);
	// readObject reads one (os.ErrNotExist when missing).
	writeObject func(ctx context.Context, path string, data []byte) error
	readObject  func(ctx context.Context, path string) ([]byte, error)
	// close stops the driver's background work.
	close context.CancelFunc
}

// Close releases the storage: call it once the migration is done.
func (t *MigrationTarget) Close() { t.close() }

// errServed refuses storage a log has published a checkpoint from. A
// migration writes none, so a checkpoint means the cut-over happened:
// migrating into it again would rewrite a live log.
var errServed = fielderr.Errorf("Config.Storage", "a log has already published a checkpoint from this storage: the cut-over happened, and migrating again would rewrite a live log (docs/migrate-trillian.md)")

// OpenMigrationTarget opens cfg's storage for a migration. The log must not
// be served from it while the migration runs (docs/migrate-trillian.md).
func OpenMigrationTarget(ctx context.Context, cfg MigrationConfig) (*MigrationTarget, error) {
	c := Config{Storage: cfg.Storage, AWS: cfg.AWS}.WithDefaults()
	if cfg.Logger != nil {
		c.Logger = cfg.Logger
	}
	if err := c.validateStorage(); err != nil {
		return nil, err
	}
	// The driver's background work lives until Close.
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var drv *driver
	var err error
	if dir, ok := strings.CutPrefix(c.Storage, "posix:"); ok {
		// Tessera's driver only: the log's antispam index (which a
		// serving log holds locked) follows the migrated tree when the
		// log starts.
		if _, err := os.Stat(filepath.Join(dir, layout.CheckpointPath)); err == nil {
			cancel()
			return nil, errServed
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			cancel()
			return nil, fielderr.Errorf("Config.Storage", "creating %s: %w", dir, err)
		}
		d, err := posix.New(dctx, posix.Config{Path: dir})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("opening POSIX storage %s: %w", dir, err)
		}
		drv = &driver{name: "posix", tessera: d, readObject: func(_ context.Context, path string) ([]byte, error) {
			return os.ReadFile(filepath.Join(dir, path))
		}}
	} else if drv, err = openDriver(dctx, c.Storage, c.AWS, false, c.Logger, &http.Client{}, antispamLag(DefaultDedupCacheEntries), DefaultAntispamMemoryMiB); err != nil {
		cancel()
		return nil, err
	}
	switch _, err := drv.readObject(ctx, layout.CheckpointPath); {
	case err == nil:
		cancel()
		return nil, errServed
	case !errors.Is(err, os.ErrNotExist):
		cancel()
		return nil, fmt.Errorf("looking for a checkpoint in %s: %w", c.Storage, err)
	}
	mt, err := tessera.NewMigrationTarget(dctx, drv.tessera, tessera.NewMigrationOptions())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening %s for migration: %w", c.Storage, err)
	}
	t := &MigrationTarget{mt: mt, kind: drv.name, finish: func(context.Context, uint64) error { return nil }, readObject: drv.readObject, close: cancel}
	switch drv.name {
	case "posix":
		dir := strings.TrimPrefix(c.Storage, "posix:")
		t.readTile = func(_ context.Context, level, index uint64, p uint8) ([]byte, error) {
			return os.ReadFile(filepath.Join(dir, layout.TilePath(level, index, p)))
		}
		t.writeObject = func(_ context.Context, path string, data []byte) error {
			return atomicfile.Write(filepath.Join(dir, path), data, 0o600)
		}
	case "mysql+s3":
		if t.readTile, t.finish, t.writeObject, err = awsMigrationHelpers(ctx, c.AWS); err != nil {
			cancel()
			return nil, err
		}
	}
	return t, nil
}

// Boundary returns the boundary the last migration pass recorded, nil if
// none did.
func (t *MigrationTarget) Boundary(ctx context.Context) (*migration.Boundary, error) {
	raw, err := t.readObject(ctx, migration.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the migration boundary: %w", err)
	}
	b, err := migration.Parse(raw)
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// WriteBoundary records b as the storage's migration boundary
// (format/migration): the log served from it serves b and appends it as its
// first own record. A catch-up pass replaces it with the larger size.
func (t *MigrationTarget) WriteBoundary(ctx context.Context, b migration.Boundary) error {
	enc, err := b.Encode()
	if err != nil {
		return err
	}
	if err := t.writeObject(ctx, migration.Path, enc); err != nil {
		return fmt.Errorf("writing the migration boundary: %w", err)
	}
	return nil
}

// Migrate copies the source's entries up to size (those not yet copied)
// with workers bundles in flight, waits until Tessera integrated them, and
// returns the target's root hash at size. fetch returns the source's entry
// bundle index (partial: its width, 0 for a full bundle) in tlog-tiles form.
// A root that differs from root is an error naming both.
func (t *MigrationTarget) Migrate(ctx context.Context, workers uint, size uint64, root []byte, fetch client.EntryBundleFetcherFunc) error {
	if err := t.mt.Migrate(ctx, workers, size, root, fetch); err != nil {
		return err
	}
	return t.finish(ctx, size)
}

// ReadTile reads a hash tile of the target (level, index, partial width).
func (t *MigrationTarget) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return t.readTile(ctx, level, index, p)
}

// awsMigrationHelpers returns a tile reader on the bucket and the step that
// lets the mysql+s3 sequencer continue after a migration. Tessera's
// migration integrates into IntCoord but leaves the sequencer's next index
// (SeqCoord) at 0, where a log served next would assign indices that
// already exist; finish advances it to the migrated size, in one
// transaction and only while nothing was sequenced past it.
func awsMigrationHelpers(ctx context.Context, c AWSConfig) (
	readTile func(context.Context, uint64, uint64, uint8) ([]byte, error),
	finish func(context.Context, uint64) error,
	writeObject func(context.Context, string, []byte) error,
	err error,
) {
	ak, err := readCredential("Config.AWS.S3AccessKeyFile", c.S3AccessKeyFile, false)
	if err != nil {
		return nil, nil, nil, err
	}
	sk, err := readCredential("Config.AWS.S3SecretKeyFile", c.S3SecretKeyFile, true)
	if err != nil {
		return nil, nil, nil, err
	}
	s3c := s3.New(s3.Options{
		Region:       c.S3Region,
		Credentials:  aaws.NewCredentialsCache(staticCreds{ak, sk}),
		UsePathStyle: c.S3PathStyle,
		BaseEndpoint: nilIfEmpty(c.S3Endpoint),
		HTTPClient:   &http.Client{Timeout: s3RequestTimeout, Transport: &http.Transport{Proxy: nil}},
	})
	readTile = func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		return getObject(ctx, s3c, c.S3Bucket, layout.TilePath(level, index, p))
	}
	writeObject = func(ctx context.Context, key string, data []byte) error {
		_, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aaws.String(c.S3Bucket), Key: aaws.String(key), Body: bytes.NewReader(data)})
		return err
	}
	finish = func(ctx context.Context, size uint64) error {
		db, err := sql.Open("mysql", c.MySQLDSN)
		if err != nil {
			return fielderr.New("Config.AWS.MySQLDSN", err)
		}
		defer db.Close()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("advancing the sequencer to %d: %w", size, err)
		}
		defer tx.Rollback()
		var next, integrated uint64
		if err := tx.QueryRowContext(ctx, "SELECT next FROM SeqCoord WHERE id = 0 FOR UPDATE").Scan(&next); err != nil {
			return fmt.Errorf("reading SeqCoord: %w", err)
		}
		if err := tx.QueryRowContext(ctx, "SELECT seq FROM IntCoord WHERE id = 0").Scan(&integrated); err != nil {
			return fmt.Errorf("reading IntCoord: %w", err)
		}
		switch {
		case integrated != size:
			return fmt.Errorf("the target tree has %d entries, not the migrated %d", integrated, size)
		case next > size:
			return fmt.Errorf("the target already sequenced %d entries past the migrated %d: was a log served on it during the migration?", next-size, size)
		case next == size:
			return nil
		}
		if _, err := tx.ExecContext(ctx, "UPDATE SeqCoord SET next = ? WHERE id = 0", size); err != nil {
			return fmt.Errorf("advancing SeqCoord to %d: %w", size, err)
		}
		return tx.Commit()
	}
	return readTile, finish, writeObject, nil
}

// getObject reads one object; a missing one is os.ErrNotExist.
func getObject(ctx context.Context, s3c *s3.Client, bucket, key string) ([]byte, error) {
	out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aaws.String(bucket), Key: aaws.String(key)})
	if err != nil {
		var nk *types.NoSuchKey
		if errors.As(err, &nk) {
			return nil, fmt.Errorf("%w: %s", os.ErrNotExist, key)
		}
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// staticCreds is an S3 credentials provider of one fixed key pair.
type staticCreds struct{ id, secret string }

func (s staticCreds) Retrieve(context.Context) (aaws.Credentials, error) {
	return aaws.Credentials{AccessKeyID: s.id, SecretAccessKey: s.secret, Source: "cairn-static"}, nil
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
