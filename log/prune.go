package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	aaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/transparency-dev/tessera/api/layout"
)

// bundleDeleter physically removes full entry bundles, which Tessera never
// does: retention is Cairn's. Hash tiles are never removed.
type bundleDeleter interface {
	deleteBundles(ctx context.Context, bundles []uint64) error
}

// posixDeleter removes bundle files (and any partial bundles left beside
// them) from a POSIX log directory; deleted, if set, is told which (the
// read path's open files, log/static.go).
type posixDeleter struct {
	dir     string
	deleted func(bundles []uint64)
}

func (d posixDeleter) deleteBundles(_ context.Context, bundles []uint64) error {
	if d.deleted != nil {
		// Also when a deletion fails: these bundles are no longer served.
		defer d.deleted(bundles)
	}
	for _, k := range bundles {
		p := filepath.Join(d.dir, filepath.FromSlash(layout.EntriesPath(k, 0)))
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("deleting entry bundle %d: %w", k, err)
		}
		if err := os.RemoveAll(p + ".p"); err != nil {
			return fmt.Errorf("deleting partial bundles of %d: %w", k, err)
		}
	}
	return nil
}

// maxDeleteKeys is S3's limit of keys per DeleteObjects.
const maxDeleteKeys = 1000

// s3Deleter removes bundle objects with DeleteObjects, in batches of at most
// maxDeleteKeys and never with an empty list (S3 and MinIO answer
// MalformedXML, docs/deployment.md). Partial bundles of full bundles are
// removed by Tessera's own garbage collection.
type s3Deleter struct {
	s3     *s3.Client
	bucket string
}

func (d s3Deleter) deleteBundles(ctx context.Context, bundles []uint64) error {
	for len(bundles) > 0 {
		n := min(len(bundles), maxDeleteKeys)
		objs := make([]types.ObjectIdentifier, 0, n)
		for _, k := range bundles[:n] {
			objs = append(objs, types.ObjectIdentifier{Key: aaws.String(layout.EntriesPath(k, 0))})
		}
		out, err := d.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aaws.String(d.bucket), Delete: &types.Delete{Objects: objs, Quiet: aaws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("deleting %d entry bundles from %s: %w", n, d.bucket, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("deleting entry bundle %s: %s %s", aaws.ToString(e.Key), aaws.ToString(e.Code), aaws.ToString(e.Message))
		}
		bundles = bundles[n:]
	}
	return nil
}
