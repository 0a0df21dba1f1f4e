package main

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// DefaultMemoryLimitMiB is cairn log serve's default soft memory limit. The
// log's live heap at the default caches settles near 450 MB (Tessera's dedup
// window ~70 MB; the POSIX antispam index's Pebble memtables and block
// cache, 128 MiB, outside the Go heap with cgo; docs/log.md#memory). The collector's default
// lets the heap double between collections, to ~900 MB; a limit well above
// the live heap caps that without making the collector chase live data (a
// limit below it would spend up to half the CPU on collection).
const DefaultMemoryLimitMiB = 768

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
