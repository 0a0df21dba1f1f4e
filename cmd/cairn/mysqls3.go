package main

import (
	"github.com/cairnlog/cairn/internal/mysqls3"
	"github.com/spf13/pflag"
)

// registerMySQLS3 adds the mysql+s3 flags (the log's names) that fill c,
// each annotated with its Config.AWS field. what says what the bucket holds.
func registerMySQLS3(f *pflag.FlagSet, c *mysqls3.Config, what string) {
	f.StringVar(&c.MySQLDSN, "mysql-dsn", "", "mysql+s3: go-sql-driver DSN of the database, e.g. cairn:PASSWORD@tcp(127.0.0.1:3306)/cairn")
	f.StringVar(&c.S3Endpoint, "s3-endpoint", "", "mysql+s3: object store URL, e.g. http://127.0.0.1:9000 (empty: AWS S3)")
	f.StringVar(&c.S3Bucket, "s3-bucket", "", "mysql+s3: bucket holding "+what+" (created if missing)")
	f.StringVar(&c.S3Region, "s3-region", "", "mysql+s3: region, e.g. us-east-1 (required: never discovered from instance metadata)")
	f.BoolVar(&c.S3PathStyle, "s3-path-style", false, "mysql+s3: path-style bucket addressing (MinIO and most S3-compatible stores)")
	f.StringVar(&c.S3AccessKeyFile, "s3-access-key-file", "", "mysql+s3: file holding the S3 access key ID")
	f.StringVar(&c.S3SecretKeyFile, "s3-secret-key-file", "", "mysql+s3: file holding the S3 secret access key; must be mode 0600")
	for flag, field := range map[string]string{
		"mysql-dsn": "Config.AWS.MySQLDSN", "s3-endpoint": "Config.AWS.S3Endpoint", "s3-bucket": "Config.AWS.S3Bucket",
		"s3-region": "Config.AWS.S3Region", "s3-path-style": "Config.AWS.S3PathStyle",
		"s3-access-key-file": "Config.AWS.S3AccessKeyFile", "s3-secret-key-file": "Config.AWS.S3SecretKeyFile",
	} {
		annotateField(f, flag, field)
	}
}
