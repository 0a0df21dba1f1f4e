package mirror

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	aaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/cairnlog/cairn/internal/mysqls3"
	"github.com/go-sql-driver/mysql"
)

// s3Storage keeps each mirrored log in an S3-compatible bucket under
// <OriginID>/ (its tlog-tiles files under <OriginID>/log/), with the same
// settings as the log's mysql+s3 driver. The database holds the writer
// lock: a mirror has exactly one writer per bucket, because its next entry
// and integration state live in that writer's memory; a second frontend
// on the same database and bucket is refused at start-up with
// ErrStorageLocked. MySQL releases the lock when the holder's connection
// ends, also on kill -9.
type s3Storage struct {
	s3     *s3.Client
	bucket string
	db     *sql.DB

	// lockMu guards lock: the connection holding GET_LOCK(lockName),
	// replaced by watchLock when the database dropped it.
	lockMu sync.Mutex
	lock   *sql.Conn
	// lost is set when the lock is gone and another frontend took it:
	// every Put fails from then on.
	lost atomic.Bool
	stop context.CancelFunc
	done chan struct{}
}

// ErrStorageLocked says another mirror frontend writes to the same bucket.
var ErrStorageLocked = errors.New("another mirror frontend holds this storage")

// s3Writers is how many requests to the object store run at once.
const s3Writers = 64

// openMySQLS3 opens the mysql+s3 storage and takes its writer lock.
func openMySQLS3(ctx context.Context, c mysqls3.Config) (*s3Storage, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sdk, opts, err := c.SDK(s3Writers)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(*sdk, opts)
	if err := mysqls3.EnsureBucket(ctx, client, c.S3Bucket); err != nil {
		return nil, err
	}
	db, err := sql.Open("mysql", c.MySQLDSN)
	if err != nil {
		return nil, fielderr.New("Config.AWS.MySQLDSN", err)
	}
	lctx, cancel := context.WithTimeout(ctx, mysqls3.RequestTimeout)
	defer cancel()
	conn, err := db.Conn(lctx)
	if err != nil {
		db.Close()
		return nil, fielderr.Errorf("Config.AWS.MySQLDSN", "connecting: %w", err)
	}
	name := lockName(c.S3Bucket)
	var got sql.NullInt64
	if err := conn.QueryRowContext(lctx, "SELECT GET_LOCK(?, 0)", name).Scan(&got); err != nil {
		conn.Close()
		db.Close()
		return nil, fielderr.Errorf("Config.AWS.MySQLDSN", "taking the mirror's writer lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		conn.Close()
		db.Close()
		cfg, _ := mysql.ParseDSN(c.MySQLDSN)
		return nil, fielderr.Errorf("Config.AWS.S3Bucket", "%w: bucket %s (lock %q on database %s at %s): a mirror has one writer; run one mirror serve per bucket", ErrStorageLocked, c.S3Bucket, name, cfg.DBName, cfg.Addr)
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &s3Storage{s3: client, bucket: c.S3Bucket, db: db, lock: conn, stop: stop, done: make(chan struct{})}
	go s.watchLock(wctx)
	return s, nil
}

// lockCheck is how often the writer lock is checked.
const lockCheck = 5 * time.Second

// watchLock checks that the writer lock is still held (a database restart
// drops it with the connection) and takes it again; when another frontend
// took it meanwhile, the storage stops writing (lost).
func (s *s3Storage) watchLock(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(lockCheck)
	defer t.Stop()
	name := lockName(s.bucket)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.lockMu.Lock()
		var held sql.NullInt64
		err := s.lock.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", name).Scan(&held)
		if err != nil || !held.Valid || held.Int64 != 1 {
			_ = s.lock.Close()
			if conn, cerr := s.db.Conn(ctx); cerr == nil {
				s.lock = conn
				var got sql.NullInt64
				if qerr := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", name).Scan(&got); qerr == nil && got.Valid && got.Int64 == 0 {
					s.lost.Store(true) // another frontend holds it now
				}
			}
		}
		s.lockMu.Unlock()
	}
}

// lockName is the MySQL user lock of a bucket (at most 64 characters).
func lockName(bucket string) string {
	n := "cairn-mirror/" + bucket
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

// Open implements storage.
func (s *s3Storage) Open(_ context.Context, id string) (objects, error) {
	return s3Objects{s3: s.s3, bucket: s.bucket, prefix: id + "/", lost: &s.lost}, nil
}

// Close releases the writer lock and the connections.
func (s *s3Storage) Close() error {
	s.stop()
	<-s.done
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	_, err := s.lock.ExecContext(context.Background(), "DO RELEASE_LOCK(?)", lockName(s.bucket))
	return errors.Join(err, s.lock.Close(), s.db.Close())
}

// s3Objects is one log's objects under a bucket prefix. A PutObject is
// atomic (readers see the old or the new object) and durable once answered.
type s3Objects struct {
	s3     *s3.Client
	bucket string
	prefix string
	lost   *atomic.Bool // the writer lock went to another frontend
}

func (o s3Objects) Put(ctx context.Context, path string, data []byte) error {
	if o.lost != nil && o.lost.Load() {
		return fmt.Errorf("%w: bucket %s: the writer lock was lost (a database restart) and another frontend took it; this one stopped writing", ErrStorageLocked, o.bucket)
	}
	_, err := o.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aaws.String(o.bucket), Key: aaws.String(o.prefix + path), Body: bytes.NewReader(data)})
	if err != nil {
		return fmt.Errorf("storing s3://%s/%s%s: %w", o.bucket, o.prefix, path, err)
	}
	return nil
}

// Parallel implements objects: each Put is a round trip to the store.
func (s3Objects) Parallel() int { return s3Writers }

// Sync implements objects: an answered PutObject is durable already.
func (o s3Objects) Sync(context.Context, []string) error { return nil }

func (o s3Objects) Get(ctx context.Context, path string) ([]byte, error) {
	out, err := o.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aaws.String(o.bucket), Key: aaws.String(o.prefix + path)})
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return nil, fmt.Errorf("%w: s3://%s/%s%s", os.ErrNotExist, o.bucket, o.prefix, path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s%s: %w", o.bucket, o.prefix, path, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

func (o s3Objects) List(ctx context.Context, dir string) ([]string, error) {
	prefix := o.prefix + strings.TrimSuffix(dir, "/") + "/"
	var names []string
	p := s3.NewListObjectsV2Paginator(o.s3, &s3.ListObjectsV2Input{Bucket: aaws.String(o.bucket), Prefix: aaws.String(prefix), Delimiter: aaws.String("/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing s3://%s/%s: %w", o.bucket, prefix, err)
		}
		for _, obj := range page.Contents {
			names = append(names, strings.TrimPrefix(aaws.ToString(obj.Key), prefix))
		}
	}
	sort.Strings(names)
	return names, nil
}

// ReadEvidenceMySQLS3 returns the evidence kept in a mirror's mysql+s3
// bucket, for every log, oldest first per log. It only reads the bucket
// (no writer lock), so it works beside a running mirror.
func ReadEvidenceMySQLS3(ctx context.Context, c mysqls3.Config) ([]Evidence, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sdk, opts, err := c.SDK(4)
	if err != nil {
		return nil, err
	}
	client := s3.NewFromConfig(*sdk, opts)
	var out []Evidence
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aaws.String(c.S3Bucket), Delimiter: aaws.String("/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fielderr.Errorf("Config.AWS.S3Bucket", "listing %s: %w", c.S3Bucket, err)
		}
		for _, cp := range page.CommonPrefixes {
			evs, err := evidenceIn(ctx, s3Objects{s3: client, bucket: c.S3Bucket, prefix: aaws.ToString(cp.Prefix)})
			if err != nil {
				return nil, err
			}
			out = append(out, evs...)
		}
	}
	return out, nil
}
