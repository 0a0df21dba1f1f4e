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

// legacyLeaves returns how many leaves of the audited tree lie below the
// migration boundary, and a line saying so ("" when the log was not migrated).
func legacyLeaves(ctx context.Context, l *client.Log, v *policy.Verified) (uint64, string, error) {
	b, err := l.MigrationBoundary(ctx, v)
	if err != nil || b == nil {
		return 0, "", err
	}
	return b.Size, fmt.Sprintf("of which %d legacy leaves below the migration boundary (raw leaves migrated from %s tree %d, verified like every other leaf)\n", b.Size, b.Source, b.TreeID), nil
}
