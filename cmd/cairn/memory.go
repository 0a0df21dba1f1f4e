package main

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// DefaultMemoryLimitMiB is cairn log serve's default soft memory limit. The
// log's live heap at the default caches is ~250 MB (Tessera's dedup window
// ~70 MB, the POSIX antispam index's Badger memtable arenas and block cache
// the rest; docs/log.md#memory); with the collector's default of letting the
// heap double between collections the RSS reached ~540 MB under 6k
// records/s. A limit above the live heap makes it collect before that.
const DefaultMemoryLimitMiB = 400

// setMemoryLimit sets the Go runtime's soft memory limit (0: leave the
// runtime's own, which honours $GOMEMLIMIT).
func setMemoryLimit(mib int64, logger *slog.Logger) error {
	if mib < 0 {
		return fmt.Errorf("--memory-limit-mib %d: must not be negative", mib)
	}
	if mib == 0 {
		return nil
	}
	debug.SetMemoryLimit(mib << 20)
	logger.Debug("soft memory limit set", slog.Int64("mib", mib))
	return nil
}
