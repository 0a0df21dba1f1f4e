package log

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	aaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/cairnlog/cairn/internal/keyfile"
	"github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	tessaws "github.com/transparency-dev/tessera/storage/aws"
	awsantispam "github.com/transparency-dev/tessera/storage/aws/antispam"
)

// AWSConfig configures the mysql+s3 driver: Tessera's storage/aws on any
// MySQL-compatible database (sequencing, coordination, antispam) and any
// S3-compatible object store (tiles, bundles, checkpoints). Every frontend
// pointed at the same database and bucket serves the same log.
type AWSConfig struct {
	// MySQLDSN is a go-sql-driver DSN, e.g. cairn:pw@tcp(db:3306)/cairn.
	MySQLDSN string
	// S3Endpoint is the object store's URL (e.g. http://127.0.0.1:9000);
	// empty means AWS S3 itself.
	S3Endpoint string
	S3Bucket   string
	S3Region   string
	// S3PathStyle addresses buckets as endpoint/bucket (MinIO and most
	// S3-compatible stores) instead of bucket.endpoint.
	S3PathStyle bool
	// S3AccessKeyFile and S3SecretKeyFile hold static credentials. The SDK
	// never looks elsewhere (no environment chain, no instance metadata).
	S3AccessKeyFile, S3SecretKeyFile string
}

// fields lists the settings with their Config paths.
func (c AWSConfig) fields() []struct{ path, value string } {
	return []struct{ path, value string }{
		{"Config.AWS.MySQLDSN", c.MySQLDSN}, {"Config.AWS.S3Bucket", c.S3Bucket}, {"Config.AWS.S3Region", c.S3Region},
		{"Config.AWS.S3AccessKeyFile", c.S3AccessKeyFile}, {"Config.AWS.S3SecretKeyFile", c.S3SecretKeyFile},
		{"Config.AWS.S3Endpoint", c.S3Endpoint},
	}
}

// firstSet returns the path of the first field that is set, or "".
func (c AWSConfig) firstSet() string {
	for _, f := range c.fields() {
		if f.value != "" {
			return f.path
		}
	}
	if c.S3PathStyle {
		return "Config.AWS.S3PathStyle"
	}
	return ""
}

// validate checks that every required field is given and the DSN parses.
func (c AWSConfig) validate() error {
	var missing []string
	for _, f := range c.fields() {
		if f.value == "" && f.path != "Config.AWS.S3Endpoint" {
			missing = append(missing, f.path)
		}
	}
	if len(missing) > 0 {
		return fielderr.Errorf(missing[0], "required with Config.Storage mysql+s3 (missing: %s)", strings.Join(missing, ", "))
	}
	if _, err := mysql.ParseDSN(c.MySQLDSN); err != nil {
		return fielderr.New("Config.AWS.MySQLDSN", err)
	}
	return nil
}

// readCredential reads one of the static S3 credentials. The secret key must
// be private to this user (internal/keyfile); the key ID is not a secret.
func readCredential(field, path string, secret bool) (string, error) {
	read := os.ReadFile
	if secret {
		read = keyfile.Read
	}
	b, err := read(path)
	if err != nil {
		return "", fielderr.New(field, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fielderr.Errorf(field, "%s is empty", path)
	}
	return s, nil
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
	if err := c.validate(); err != nil {
		return nil, err
	}
	ak, err := readCredential("Config.AWS.S3AccessKeyFile", c.S3AccessKeyFile, false)
	if err != nil {
		return nil, err
	}
	sk, err := readCredential("Config.AWS.S3SecretKeyFile", c.S3SecretKeyFile, true)
	if err != nil {
		return nil, err
	}
	creds := credentials.NewStaticCredentialsProvider(ak, sk, "")
	sdk := &aaws.Config{Region: c.S3Region, Credentials: creds, HTTPClient: &http.Client{Timeout: s3RequestTimeout, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}}
	s3opts := func(o *s3.Options) {
		o.Region = c.S3Region
		o.Credentials = creds
		o.UsePathStyle = c.S3PathStyle
		if c.S3Endpoint != "" {
			o.BaseEndpoint = aaws.String(c.S3Endpoint)
		}
		o.APIOptions = append(o.APIOptions, answerEmptyDeleteObjects)
	}
	if err := ensureBucket(ctx, s3.NewFromConfig(*sdk, s3opts), c.S3Bucket); err != nil {
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
const s3RequestTimeout = 30 * time.Second

// dbIdleConns is how many idle connections each pool keeps.
const dbIdleConns = 64

// readCommittedDSN returns dsn with its sessions at READ COMMITTED, unless
// it already sets an isolation level. Under the default REPEATABLE READ,
// Tessera's integration transaction (SELECT … FROM Seq … FOR UPDATE) holds a
// gap lock past the last sequenced batch for as long as it writes to the
// object store; while the store fails, every frontend's sequencing waits on
// that lock instead of answering. READ COMMITTED takes no gap locks; every
// coordination Tessera relies on is a row lock on a single-row table, which
// it keeps. MySQL 8 names the variable transaction_isolation, MariaDB
// before 11.1 tx_isolation; the server is asked which it has.
func readCommittedDSN(ctx context.Context, dsn string) (string, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fielderr.New("Config.AWS.MySQLDSN", err)
	}
	for k := range cfg.Params {
		if k == "transaction_isolation" || k == "tx_isolation" {
			return dsn, nil
		}
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return "", fielderr.New("Config.AWS.MySQLDSN", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, s3RequestTimeout)
	defer cancel()
	var name, value string
	err = db.QueryRowContext(ctx, "SHOW VARIABLES LIKE 'transaction_isolation'").Scan(&name, &value)
	if errors.Is(err, sql.ErrNoRows) {
		name = "tx_isolation"
	} else if err != nil {
		return "", fielderr.Errorf("Config.AWS.MySQLDSN", "connecting to %s: %w", cfg.Addr, err)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params[name] = "'READ-COMMITTED'"
	return cfg.FormatDSN(), nil
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

// ensureBucket creates the bucket if it does not exist yet.
func ensureBucket(ctx context.Context, c *s3.Client, bucket string) error {
	_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aaws.String(bucket)})
	if err == nil {
		return nil
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || (apiErr.ErrorCode() != "NotFound" && apiErr.ErrorCode() != "NoSuchBucket") {
		return fielderr.Errorf("Config.AWS.S3Bucket", "%s: %w", bucket, err)
	}
	// Several frontends may race to create it: losing that race is fine.
	var owned *types.BucketAlreadyOwnedByYou
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aaws.String(bucket)}); err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("creating bucket %s: %w", bucket, err)
	}
	return nil
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
