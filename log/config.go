// Package log is Cairn's log personality on Tessera: it authenticates and
// envelopes records, appends them through Tessera's appender (batching,
// antispam, integration, checkpoint publishing and witnessing), and serves the
// tlog-tiles read path over HTTP and the cairn.v1.Log API over gRPC.
package log

import (
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/format/retention"
	"github.com/cairnlog/cairn/internal/fielderr"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"
)

// Config is everything a log needs to start. cmd/cairn fills it from flags;
// every field has a flag of the same name in kebab-case.
type Config struct {
	// Origin is the checkpoint origin line. It must equal the key's name.
	Origin string
	// PrivateKey is the log's signing key, PRIVATE+KEY+<name>+<id>+<key>.
	PrivateKey string
	// Storage selects the driver: "posix:DIR" or "mysql+s3" (configured by AWS).
	Storage string
	// AWS configures the mysql+s3 driver; ignored by posix.
	AWS AWSConfig
	// GCInterval is how often obsolete partial tiles and bundles are removed
	// (0: DefaultGCInterval).
	GCInterval time.Duration
	// HTTPAddr serves tlog-tiles, POST /add, health and metrics.
	HTTPAddr string
	// GRPCAddr serves cairn.v1.Log.
	GRPCAddr string
	// CheckpointInterval is how often a new checkpoint may be published.
	CheckpointInterval time.Duration
	// CheckpointRepublishInterval is how often an unchanged tree's checkpoint
	// is published again, freshly witnessed (0: DefaultCheckpointRepublishInterval).
	CheckpointRepublishInterval time.Duration
	// BatchMaxSize and BatchMaxAge bound a sequencing batch.
	BatchMaxSize uint
	BatchMaxAge  time.Duration
	// PushbackMaxOutstanding is how many sequenced-but-unintegrated records
	// the log holds before answering with pushback.
	PushbackMaxOutstanding uint
	// MaxRecordBytes is the largest accepted payload.
	MaxRecordBytes int
	// MaxBatchRecords is the most records one AppendBatch (or batched
	// POST /add) carries; MaxBatchBytes the largest batch message or body
	// (0: DefaultMaxBatchRecords, DefaultMaxBatchBytes).
	MaxBatchRecords int
	MaxBatchBytes   int
	// DedupCacheEntries sizes Tessera's in-memory dedup cache (an LRU of
	// recent records' futures, ~550 bytes each): retries within this many
	// records resolve in memory (0: DefaultDedupCacheEntries). The
	// persistent antispam index may trail the tree by half of it.
	DedupCacheEntries int
	// AntispamMemoryMiB bounds the memory of the POSIX persistent antispam
	// index (Pebble's memtables and block cache; 0:
	// DefaultAntispamMemoryMiB). Unused with mysql+s3.
	AntispamMemoryMiB int
	// DebugAddr, if set, serves net/http/pprof profiles on a listener of
	// its own, never the public ones (plain HTTP; keep it on loopback).
	DebugAddr string
	// MaxClockSkew bounds how far a submitter's timestamp may be from the log's clock.
	MaxClockSkew time.Duration
	// WitnessPolicy is a C2SP tlog-policy (witness, group and quorum lines).
	// Empty: checkpoints are published without cosignatures.
	WitnessPolicy []byte
	// WitnessTimeout bounds how long publishing waits for the witness quorum.
	WitnessTimeout time.Duration
	// Mirrors are tlog-mirrors the log pushes each published checkpoint and
	// its entries to (beside the append path: a slow mirror delays nothing).
	Mirrors []MirrorTarget
	// AccessFile is the access file (log/access) of tokens and certificate
	// principals. Empty: authentication is off and every submitter is anonymous.
	AccessFile string
	// ReadAccess is ReadPublic or ReadAuthenticated (record contents need the read role).
	ReadAccess string
	// RateLimit is each principal's sustained append rate (records/s; 0 = unlimited),
	// RateBurst its burst.
	RateLimit float64
	RateBurst int
	// TLSCert and TLSKey are this server's certificate and key (PEM) for both listeners.
	TLSCert, TLSKey string
	// TLSClientCA verifies client certificates (mTLS); empty: no client
	// certificates. It needs AccessFile, which names the principals.
	TLSClientCA string
	// TLSCA adds trust roots for the log's own outgoing connections (witnesses).
	TLSCA string
	// KEKFile is the key-encryption key file (cairn keygen --kek) that wraps
	// the data keys of records naming data subjects (docs/erasure.md).
	// Empty: records naming subjects are refused; a log whose key store
	// holds keys refuses to start without it.
	KEKFile string
	// InsecurePlaintext serves without TLS. It must be asked for explicitly.
	InsecurePlaintext bool
	// Retention is a retention policy (format/retention: keep, grace,
	// then purge|archive). Empty: the log never prunes (tlog-tiles).
	Retention []byte
	// RetentionInterval is how often the policy is evaluated
	// (0: DefaultRetentionInterval).
	RetentionInterval time.Duration
	// Now is the log's clock for retention (integration times, holds).
	// Nil: time.Now. Tests inject one to span years.
	Now func() time.Time
	// DisableUI turns the explorer at /ui/ off (package ui, docs/explorer.md).
	DisableUI bool
	// IndexURL is the search index's base URL; the explorer shows search
	// and history pages that query it. Empty: no search pages.
	IndexURL string
	// Logger receives structured logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults for the flags; they work on a laptop.
const (
	DefaultStorage                = "posix:./data/log"
	DefaultHTTPAddr               = "127.0.0.1:8080"
	DefaultGRPCAddr               = "127.0.0.1:9090"
	DefaultCheckpointInterval     = time.Second
	DefaultBatchMaxSize           = 256
	DefaultBatchMaxAge            = 50 * time.Millisecond
	DefaultPushbackMaxOutstanding = 65536
	DefaultMaxRecordBytes         = 64000
	DefaultMaxClockSkew           = 10 * time.Minute
	DefaultWitnessTimeout         = 5 * time.Second
	// DefaultCheckpointRepublishInterval is how often an unchanged tree's
	// checkpoint is published again: Tessera's own default.
	DefaultCheckpointRepublishInterval = tessera.DefaultCheckpointRepublishInterval
	// DefaultGCInterval is how often obsolete partial tiles and bundles are
	// removed: Tessera's own default.
	DefaultGCInterval = tessera.DefaultGarbageCollectionInterval
)

// MinCheckpointInterval is the shortest CheckpointInterval accepted;
// MinCheckpointIntervalMySQLS3 the shortest with the mysql+s3 driver, which
// publishes at most once a second.
const (
	MinCheckpointInterval        = 100 * time.Millisecond
	MinCheckpointIntervalMySQLS3 = time.Second
)

// DrainTimeout bounds the whole shutdown of Run: stopping both servers
// (in-flight requests finish) and Tessera's drain (integration and the final
// checkpoint) share this one deadline, which is also Tessera's own
// (tessera.DefaultShutdownTimeout). A supervisor that kills the process
// after a grace period (cairn dev, a container runtime) must allow more than this.
const DrainTimeout = time.Minute

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Storage == "" {
		c.Storage = DefaultStorage
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
	if c.GRPCAddr == "" {
		c.GRPCAddr = DefaultGRPCAddr
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.BatchMaxSize == 0 {
		c.BatchMaxSize = DefaultBatchMaxSize
	}
	if c.BatchMaxAge == 0 {
		c.BatchMaxAge = DefaultBatchMaxAge
	}
	if c.PushbackMaxOutstanding == 0 {
		c.PushbackMaxOutstanding = DefaultPushbackMaxOutstanding
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = DefaultMaxClockSkew
	}
	if c.MaxBatchRecords == 0 {
		c.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.DedupCacheEntries == 0 {
		c.DedupCacheEntries = DefaultDedupCacheEntries
	}
	if c.AntispamMemoryMiB == 0 {
		c.AntispamMemoryMiB = DefaultAntispamMemoryMiB
	}
	if c.CheckpointRepublishInterval == 0 {
		c.CheckpointRepublishInterval = DefaultCheckpointRepublishInterval
	}
	if c.GCInterval == 0 {
		c.GCInterval = DefaultGCInterval
	}
	if c.WitnessTimeout == 0 {
		c.WitnessTimeout = DefaultWitnessTimeout
	}
	if c.ReadAccess == "" {
		c.ReadAccess = ReadPublic
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = DefaultRetentionInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first problem with c, as a *fielderr.Error naming
// the Config field at fault. Zero fields take their defaults first
// (WithDefaults). New calls it; a caller may call it earlier to check a
// configuration without opening storage.
func (c Config) Validate() error {
	c = c.WithDefaults()
	s, _, err := c.keys()
	if err != nil {
		return err
	}
	if c.Origin == "" {
		return fielderr.Errorf("Config.Origin", "required (the key is named %q)", s.Name())
	}
	if c.Origin != s.Name() {
		return fielderr.Errorf("Config.Origin", "%q does not match the key name %q: the checkpoint origin must equal the log key's name (tlog-checkpoint)", c.Origin, s.Name())
	}
	if c.CheckpointInterval < MinCheckpointInterval {
		return fielderr.Errorf("Config.CheckpointInterval", "%v is below the %v minimum", c.CheckpointInterval, MinCheckpointInterval)
	}
	if c.Storage == "mysql+s3" && c.CheckpointInterval < MinCheckpointIntervalMySQLS3 {
		return fielderr.Errorf("Config.CheckpointInterval", "%v: the mysql+s3 driver publishes at most once a second (use ≥%v)", c.CheckpointInterval, MinCheckpointIntervalMySQLS3)
	}
	if err := c.validateStorage(); err != nil {
		return err
	}
	if c.CheckpointRepublishInterval != 0 && c.CheckpointRepublishInterval < c.CheckpointInterval {
		return fielderr.Errorf("Config.CheckpointRepublishInterval", "%v is shorter than Config.CheckpointInterval %v", c.CheckpointRepublishInterval, c.CheckpointInterval)
	}
	if c.GCInterval < 0 {
		return fielderr.Errorf("Config.GCInterval", "%v must not be negative", c.GCInterval)
	}
	if c.MaxRecordBytes < 1 || c.MaxRecordBytes > record.MaxPayloadBytes {
		return fielderr.Errorf("Config.MaxRecordBytes", "%d must be between 1 and %d (a leaf must fit a tlog-tiles entry bundle)", c.MaxRecordBytes, record.MaxPayloadBytes)
	}
	if err := c.validateBatch(); err != nil {
		return err
	}
	if c.BatchMaxSize < 1 {
		return fielderr.Errorf("Config.BatchMaxSize", "must be at least 1")
	}
	if c.RateLimit < 0 {
		return fielderr.Errorf("Config.RateLimit", "must not be negative")
	}
	if c.MaxClockSkew < 0 {
		return fielderr.Errorf("Config.MaxClockSkew", "must not be negative")
	}
	if err := c.validateRetention(); err != nil {
		return err
	}
	if len(c.WitnessPolicy) > 0 {
		if _, err := witnessGroup(c.WitnessPolicy); err != nil {
			return fielderr.New("Config.WitnessPolicy", err)
		}
	}
	if err := c.validateMirrors(); err != nil {
		return err
	}
	if c.IndexURL != "" {
		if u, err := url.Parse(c.IndexURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fielderr.Errorf("Config.IndexURL", "%q: want an http:// or https:// URL", c.IndexURL)
		}
	}
	return c.validateAccess()
}

// validateStorage checks the driver name and that the mysql+s3 settings are
// given exactly when that driver is.
func (c Config) validateStorage() error {
	kind, arg, _ := strings.Cut(c.Storage, ":")
	switch kind {
	case "posix":
		if arg == "" {
			return fielderr.Errorf("Config.Storage", "posix needs a directory, e.g. posix:./data/log")
		}
	case "mysql+s3":
		if arg != "" {
			return fielderr.Errorf("Config.Storage", "%q: mysql+s3 takes no argument; configure it with Config.AWS", c.Storage)
		}
		return c.AWS.Validate()
	default:
		return fielderr.Errorf("Config.Storage", "%q: unknown driver %q (want posix:DIR or mysql+s3)", c.Storage, kind)
	}
	if f := c.AWS.FirstSet(); f != "" {
		return fielderr.Errorf(f, "applies only to Config.Storage mysql+s3 (not %q)", c.Storage)
	}
	return nil
}

// validateAccess checks TLS, authentication and read access together: a
// client CA without an access file would verify certificates and then let
// anyone append, since without an access file every caller is anonymous with
// every role.
func (c Config) validateAccess() error {
	if c.ReadAccess != ReadPublic && c.ReadAccess != ReadAuthenticated {
		return fielderr.Errorf("Config.ReadAccess", "%q: want %s or %s", c.ReadAccess, ReadPublic, ReadAuthenticated)
	}
	if c.ReadAccess == ReadAuthenticated && c.AccessFile == "" {
		return fielderr.Errorf("Config.ReadAccess", "%s needs Config.AccessFile (who may read)", ReadAuthenticated)
	}
	if !c.InsecurePlaintext && (c.TLSCert == "" || c.TLSKey == "") {
		return fielderr.Errorf("Config.TLSCert", "Config.TLSCert and Config.TLSKey are required (or Config.InsecurePlaintext to serve without TLS)")
	}
	if c.InsecurePlaintext && (c.TLSCert != "" || c.TLSClientCA != "") {
		return fielderr.Errorf("Config.InsecurePlaintext", "contradicts Config.TLSCert/Config.TLSClientCA")
	}
	if c.TLSClientCA != "" && c.AccessFile == "" {
		return fielderr.Errorf("Config.TLSClientCA", "needs Config.AccessFile: without an access file every caller may append, with or without a certificate; name the certificate principals in the access file")
	}
	return nil
}

// validateRetention checks the retention policy's syntax and interval; its
// archive is probed when the log starts.
func (c Config) validateRetention() error {
	if c.RetentionInterval < 0 {
		return fielderr.Errorf("Config.RetentionInterval", "%v must not be negative", c.RetentionInterval)
	}
	if len(c.Retention) == 0 {
		return nil
	}
	p, err := retention.Parse(c.Retention)
	if err != nil {
		return fielderr.New("Config.Retention", err)
	}
	if strings.HasPrefix(p.ArchiveTo, "s3://") && c.Storage != "mysql+s3" {
		return fielderr.Errorf("Config.Retention", "an s3:// archive uses the object store and credentials of Config.AWS, so it needs Config.Storage mysql+s3 (not %q); archive to posix:DIR instead", c.Storage)
	}
	return nil
}

// keys parses the signing key.
func (c Config) keys() (note.Signer, note.Verifier, error) {
	if c.PrivateKey == "" {
		return nil, nil, fielderr.Errorf("Config.PrivateKey", "no private key given")
	}
	s, v, err := fnote.NewEd25519SignerVerifier(strings.TrimSpace(c.PrivateKey))
	if err != nil {
		return nil, nil, fielderr.Errorf("Config.PrivateKey", "not an Ed25519 signed-note private key (PRIVATE+KEY+...; witness keys cannot sign checkpoints): %w", err)
	}
	return s, v, nil
}
