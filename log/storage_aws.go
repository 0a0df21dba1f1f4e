package log

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"

	aaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/cairnlog/cairn/internal/mysqls3"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	tessaws "github.com/transparency-dev/tessera/storage/aws"
	awsantispam "github.com/transparency-dev/tessera/storage/aws/antispam"
)

// AWSConfig configures the mysql+s3 driver: Tessera's storage/aws on any
// MySQL-compatible database (sequencing, coordination, antispam) and any
// S3-compatible object store (tiles, bundles, checkpoints). Every frontend
// pointed at the same database and bucket serves the same log. The settings
// are shared with the mirror (internal/mysqls3).
type AWSConfig = mysqls3.Config

// readCredential reads one of the static S3 credentials (mysqls3.ReadCredential).
func readCredential(field, path string, secret bool) (string, error) {
	return mysqls3.ReadCredential(field, path, secret)
}

// openAWS opens the mysql+s3 driver with its persistent antispam on the
// same database, so a retry that lands on another frontend gets the same index.
//
// The SDK configuration is built here, never loaded from the environment
// (no config.LoadDefaultConfig): static credentials and an explicit region,
// so the SDK has no reason to ask the instance metadata service, and the
// process environment (AWS_EC2_METADATA_DISABLED and the like) is neither
// needed nor changed (TestMySQLS3NeverAsksInstanceMetadata).
func openAWS(ctx context.Context, c AWSConfig, httpClient *http.Client, lag uint) (*driver, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	sdk, base, err := c.SDK(64)
	if err != nil {
		return nil, err
	}
	s3opts := func(o *s3.Options) {
		base(o)
		o.APIOptions = append(o.APIOptions, answerEmptyDeleteObjects)
	}
	if err := mysqls3.EnsureBucket(ctx, s3.NewFromConfig(*sdk, s3opts), c.S3Bucket); err != nil {
		return nil, err
	}
	dsn, err := readCommittedDSN(ctx, c.MySQLDSN)
	if err != nil {
		return nil, err
	}
	d, err := tessaws.New(ctx, tessaws.Config{
		SDKConfig:  sdk,
		S3Options:  s3opts,
		Bucket:     c.S3Bucket,
		DSN:        dsn,
		HTTPClient: httpClient,
		// Zero would keep no idle connection: a new TCP connection and
		// handshake for every statement.
		MaxIdleConns: dbIdleConns,
	})
	if err != nil {
		return nil, fmt.Errorf("opening mysql+s3 storage: %w", err)
	}
	as, err := awsantispam.NewAntispam(ctx, dsn, awsantispam.AntispamOpts{
		PushbackThreshold: lag,
		MaxIdleConns:      dbIdleConns,
		// The follower writes this many identities per statement; Tessera's
		// default (64) falls behind above a few thousand records/s.
		MaxBatchSize: 1024,
	})
	if err != nil {
		return nil, fielderr.Errorf("Config.AWS.MySQLDSN", "opening the antispam tables: %w", err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fielderr.New("Config.AWS.MySQLDSN", err)
	}
	db.SetMaxIdleConns(lookupWorkers)
	batched, err := newBatchedAntispam(ctx, as, db, lag)
	if err != nil {
		return nil, err
	}
	s3c := s3.NewFromConfig(*sdk, s3opts)
	rs, err := newSQLRetentionStore(ctx, db)
	if err != nil {
		return nil, fielderr.New("Config.AWS.MySQLDSN", err)
	}
	return &driver{name: "mysql+s3", tessera: d, antispam: batched, reader: func(r tessera.LogReader) tessera.LogReader {
		return s3Reader{LogReader: r, s3: s3c, bucket: c.S3Bucket}
	}, retention: rs, bundles: s3Deleter{s3: s3c, bucket: c.S3Bucket}, readObject: func(ctx context.Context, path string) ([]byte, error) {
		return getObject(ctx, s3c, c.S3Bucket, path)
	}}, nil
}

// s3RequestTimeout bounds one request to the object store, and the start-up
// question to the database.
const s3RequestTimeout = mysqls3.RequestTimeout

// dbIdleConns is how many idle connections each pool keeps.
const dbIdleConns = 64

// readCommittedDSN sets the sessions of dsn to READ COMMITTED
// (mysqls3.ReadCommittedDSN says why).
func readCommittedDSN(ctx context.Context, dsn string) (string, error) {
	return mysqls3.ReadCommittedDSN(ctx, dsn)
}

// s3Reader reports a missing tile or bundle as os.ErrNotExist, as the POSIX
// driver does. Tessera's S3 reader wraps the store's NoSuchKey with %v for
// tiles and bundles (it converts it only for the checkpoint), so its type is
// lost and a missing object would answer 503 instead of 404 and defeat the
// partial-to-full fallback once GC removed a partial. On a failed read this
// asks the store whether the object exists; reads that succeed cost nothing.
type s3Reader struct {
	tessera.LogReader
	s3     *s3.Client
	bucket string
}

func (r s3Reader) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	b, err := r.LogReader.ReadTile(ctx, level, index, p)
	return b, r.classify(ctx, layout.TilePath(level, index, p), err)
}

func (r s3Reader) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	b, err := r.LogReader.ReadEntryBundle(ctx, index, p)
	return b, r.classify(ctx, layout.EntriesPath(index, p), err)
}

func (r s3Reader) classify(ctx context.Context, key string, err error) error {
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return err
	}
	_, herr := r.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aaws.String(r.bucket), Key: aaws.String(key)})
	var nf *types.NotFound
	if errors.As(herr, &nf) {
		return fmt.Errorf("%w: %s", os.ErrNotExist, key)
	}
	return err
}

// answerEmptyDeleteObjects works around transparency-dev/tessera#1179: the
// v1.0.4 garbage collector sends DeleteObjects with an empty key list, which
// S3 and MinIO reject with 400 MalformedXML, so GC never advances. Deleting
// nothing succeeds trivially, so this answers such calls itself. Drop it once
// Tessera skips empty deletions (docs/deployment.md).
func answerEmptyDeleteObjects(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("CairnAnswerEmptyDeleteObjects",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if d, ok := in.Parameters.(*s3.DeleteObjectsInput); ok && (d.Delete == nil || len(d.Delete.Objects) == 0) {
				return middleware.InitializeOutput{Result: &s3.DeleteObjectsOutput{}}, middleware.Metadata{}, nil
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}
