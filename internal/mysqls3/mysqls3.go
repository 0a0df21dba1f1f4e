// Package mysqls3 holds the settings and client set-up of Cairn's mysql+s3
// storage, shared by the log (Tessera's storage/aws driver) and the mirror:
// any MySQL-compatible database and any S3-compatible object store, with
// static credentials read from files and nothing taken from the environment
// or the instance metadata service.
package mysqls3

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
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/cairnlog/cairn/internal/keyfile"
	"github.com/go-sql-driver/mysql"
)

// Config configures the mysql+s3 storage. Errors name its fields as
// Config.AWS.<Field>, the path both the log's and the mirror's Config use.
type Config struct {
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

// RequestTimeout bounds one request to the object store, and the start-up
// question to the database.
const RequestTimeout = 30 * time.Second

// fields lists the settings with their Config paths.
func (c Config) fields() []struct{ path, value string } {
	return []struct{ path, value string }{
		{"Config.AWS.MySQLDSN", c.MySQLDSN}, {"Config.AWS.S3Bucket", c.S3Bucket}, {"Config.AWS.S3Region", c.S3Region},
		{"Config.AWS.S3AccessKeyFile", c.S3AccessKeyFile}, {"Config.AWS.S3SecretKeyFile", c.S3SecretKeyFile},
		{"Config.AWS.S3Endpoint", c.S3Endpoint},
	}
}

// FirstSet returns the path of the first field that is set, or "": a
// setting given without the mysql+s3 storage selected is an error.
func (c Config) FirstSet() string {
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

// Validate checks that every required field is given and the DSN parses.
func (c Config) Validate() error {
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

// ReadCredential reads one of the static S3 credentials. The secret key must
// be private to this user (internal/keyfile); the key ID is not a secret.
func ReadCredential(field, path string, secret bool) (string, error) {
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

// SDK builds the AWS SDK configuration and the S3 client options: static
// credentials from the key files and an explicit region, never
// config.LoadDefaultConfig, so the SDK has no reason to ask the instance
// metadata service and the process environment is neither read nor changed.
// maxIdle is how many idle connections to the store are kept.
func (c Config) SDK(maxIdle int) (*aaws.Config, func(*s3.Options), error) {
	ak, err := ReadCredential("Config.AWS.S3AccessKeyFile", c.S3AccessKeyFile, false)
	if err != nil {
		return nil, nil, err
	}
	sk, err := ReadCredential("Config.AWS.S3SecretKeyFile", c.S3SecretKeyFile, true)
	if err != nil {
		return nil, nil, err
	}
	creds := credentials.NewStaticCredentialsProvider(ak, sk, "")
	sdk := &aaws.Config{Region: c.S3Region, Credentials: creds, HTTPClient: &http.Client{Timeout: RequestTimeout, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: maxIdle}}}
	opts := func(o *s3.Options) {
		o.Region = c.S3Region
		o.Credentials = creds
		o.UsePathStyle = c.S3PathStyle
		if c.S3Endpoint != "" {
			o.BaseEndpoint = aaws.String(c.S3Endpoint)
		}
	}
	return sdk, opts, nil
}

// EnsureBucket creates the bucket if it does not exist yet.
func EnsureBucket(ctx context.Context, c *s3.Client, bucket string) error {
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

// ReadCommittedDSN returns dsn with its sessions at READ COMMITTED, unless
// it already sets an isolation level. Under the default REPEATABLE READ,
// Tessera's integration transaction (SELECT … FROM Seq … FOR UPDATE) holds a
// gap lock past the last sequenced batch for as long as it writes to the
// object store; while the store fails, every frontend's sequencing waits on
// that lock instead of answering. READ COMMITTED takes no gap locks; every
// coordination Tessera relies on is a row lock on a single-row table, which
// it keeps. MySQL 8 names the variable transaction_isolation, MariaDB
// before 11.1 tx_isolation; the server is asked which it has.
func ReadCommittedDSN(ctx context.Context, dsn string) (string, error) {
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
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
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
