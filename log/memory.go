package log

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// registerMemoryGauges exports the sizes of the log's deliberate memory
// consumers, so that an operator sees what bounds the process's RSS:
//
//   - cairn_log_dedup_cache_entries: Tessera's in-memory dedup LRU
//     (Config.DedupCacheEntries);
//   - cairn_log_antispam_memtable_bytes and
//     cairn_log_antispam_block_cache_bytes: the Pebble database of the
//     POSIX antispam index, sized by Config.AntispamMemoryMiB (0 with
//     mysql+s3, whose index is in MariaDB).
func registerMemoryGauges(m *metrics, cfg Config) {
	dedup := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cairn_log_dedup_cache_entries",
		Help: "Capacity of Tessera's in-memory dedup cache in records (--dedup-cache-entries).",
	})
	dedup.Set(float64(cfg.DedupCacheEntries))
	memtable := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cairn_log_antispam_memtable_bytes",
		Help: "Most memory the POSIX antispam index's Pebble memtables may hold (memtable size × count, from --antispam-memory-mib).",
	})
	blockCache := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cairn_log_antispam_block_cache_bytes",
		Help: "Size of the POSIX antispam index's Pebble block cache (data, index and filter blocks; from --antispam-memory-mib).",
	})
	if strings.HasPrefix(cfg.Storage, "posix:") {
		size, count, cache := antispamSizes(cfg.AntispamMemoryMiB)
		memtable.Set(float64(size) * float64(count))
		blockCache.Set(float64(cache))
	}
	m.registry.MustRegister(dedup, memtable, blockCache)
}
