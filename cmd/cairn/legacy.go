package main

import (
	"context"
	"fmt"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
)

// legacyOf says where leaf index came from when it lies below the log's
// migration boundary (cairn migrate): "" for a leaf the log appended itself.
func legacyOf(ctx context.Context, l *client.Log, v *policy.Verified, index uint64) (string, error) {
	b, err := l.MigrationBoundary(ctx, v)
	if err != nil || !b.IsLegacy(index) {
		return "", err
	}
	return fmt.Sprintf("migrated from %s tree %d (below the migration boundary at %d; the raw leaf as the source logged it)", b.Source, b.TreeID, b.Size), nil
}
