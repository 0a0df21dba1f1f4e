// Package archive is where a Cairn log's retention policy copies entry
// bundles before it deletes them, and where `cairn audit --archive` reads
// them back: a directory (posix:DIR) or an S3 bucket and prefix
// (s3://BUCKET/PREFIX) on any S3-compatible store. Keys are tlog-tiles paths
// (tile/entries/x001/234, checkpoint), so an archive is laid out like the
// log it came from.
package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	aaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/cairnlog/cairn/format/retention"
	"github.com/cairnlog/cairn/internal/atomicfile"
)

// Store holds archived objects by key.
type Store interface {
	// Put stores b under key, replacing what was there.
	Put(ctx context.Context, key string, b []byte) error
	// Get returns the object at key; a missing one is os.ErrNotExist.
	Get(ctx context.Context, key string) ([]byte, error)
	// String is the store's spec (posix:DIR, s3://BUCKET/PREFIX).
	String() string
}

// S3Options reach an S3-compatible store. Credentials are static: the SDK
// never consults the environment or an instance metadata service.
type S3Options struct {
	Endpoint  string // e.g. http://127.0.0.1:9000; empty: AWS S3
	Region    string
	PathStyle bool
	AccessKey string
	SecretKey string
}

// requestTimeout bounds one request to an S3 archive.
const requestTimeout = 30 * time.Second

// Open opens the store named by spec (retention.CheckArchive syntax). s3o is
// required for s3:// stores.
func Open(spec string, s3o *S3Options) (Store, error) {
	if err := retention.CheckArchive(spec); err != nil {
		return nil, err
	}
	if dir, ok := strings.CutPrefix(spec, "posix:"); ok {
		return dirStore{dir: dir}, nil
	}
	if s3o == nil || s3o.AccessKey == "" || s3o.SecretKey == "" || s3o.Region == "" {
		return nil, fmt.Errorf("archive %s: an s3 archive needs an S3 region and credentials", spec)
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(spec, "s3://"), "/")
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	creds := credentials.NewStaticCredentialsProvider(s3o.AccessKey, s3o.SecretKey, "")
	c := s3.New(s3.Options{
		Region:       s3o.Region,
		Credentials:  creds,
		UsePathStyle: s3o.PathStyle,
		HTTPClient:   &http.Client{Timeout: requestTimeout, Transport: &http.Transport{Proxy: nil}},
		BaseEndpoint: endpoint(s3o.Endpoint),
	})
	return &s3Store{c: c, bucket: bucket, prefix: prefix, spec: spec}, nil
}

func endpoint(e string) *string {
	if e == "" {
		return nil
	}
	return aaws.String(e)
}

// probeKey is written, read back and compared by Probe.
const probeKey = ".cairn-archive-probe"

// Probe checks that st can be written and read back, so that an
// unreachable or read-only archive is refused at start, not at the first prune.
func Probe(ctx context.Context, st Store) error {
	want := []byte("cairn archive probe " + time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	if err := st.Put(ctx, probeKey, want); err != nil {
		return fmt.Errorf("archive %s is not writable: %w", st, err)
	}
	got, err := st.Get(ctx, probeKey)
	if err != nil {
		return fmt.Errorf("archive %s is not readable: %w", st, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("archive %s returned other bytes than were written", st)
	}
	return nil
}

// dirStore is a posix:DIR archive: one file per key, written atomically,
// owner-only.
type dirStore struct{ dir string }

func (d dirStore) String() string { return "posix:" + d.dir }

func (d dirStore) path(key string) (string, error) {
	if !filepath.IsLocal(key) {
		return "", fmt.Errorf("archive key %q is not a local path", key)
	}
	return filepath.Join(d.dir, filepath.FromSlash(key)), nil
}

func (d dirStore) Put(_ context.Context, key string, b []byte) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(p, b, 0o600)
}

func (d dirStore) Get(_ context.Context, key string) ([]byte, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// s3Store is an s3://BUCKET/PREFIX archive.
type s3Store struct {
	c              *s3.Client
	bucket, prefix string
	spec           string
}

func (s *s3Store) String() string { return s.spec }

func (s *s3Store) Put(ctx context.Context, key string, b []byte) error {
	_, err := s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: aaws.String(s.bucket), Key: aaws.String(s.prefix + key), Body: bytes.NewReader(b)})
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchBucket" {
		var owned *types.BucketAlreadyOwnedByYou
		if _, cerr := s.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aaws.String(s.bucket)}); cerr != nil && !errors.As(cerr, &owned) {
			return fmt.Errorf("creating bucket %s: %w", s.bucket, cerr)
		}
		_, err = s.c.PutObject(ctx, &s3.PutObjectInput{Bucket: aaws.String(s.bucket), Key: aaws.String(s.prefix + key), Body: bytes.NewReader(b)})
	}
	if err != nil {
		return fmt.Errorf("writing %s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	return nil
}

func (s *s3Store) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.c.GetObject(ctx, &s3.GetObjectInput{Bucket: aaws.String(s.bucket), Key: aaws.String(s.prefix + key)})
	var nk *types.NoSuchKey
	if errors.As(err, &nk) {
		return nil, fmt.Errorf("%w: %s/%s%s", os.ErrNotExist, s.bucket, s.prefix, key)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}
