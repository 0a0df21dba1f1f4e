// Package log is Cairn's log personality on Tessera: it authenticates and
// envelopes records, appends them through Tessera's appender (batching,
// antispam, integration, checkpoint publishing and witnessing), and serves the
// tlog-tiles read path over HTTP and the cairn.v1.Log API over gRPC.
package log

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cairnlog/cairn/format/record"
	fnote "github.com/transparency-dev/formats/note"
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
	// (0: Tessera's default).
	GCInterval time.Duration
	// HTTPAddr serves tlog-tiles, POST /add, health and metrics.
	HTTPAddr string
	// GRPCAddr serves cairn.v1.Log.
	GRPCAddr string
	// CheckpointInterval is how often a new checkpoint may be published.
	CheckpointInterval time.Duration
	// CheckpointRepublishInterval is how often an unchanged tree's checkpoint
	// is published again, freshly witnessed (0: Tessera's default, 10m).
	CheckpointRepublishInterval time.Duration
	// BatchMaxSize and BatchMaxAge bound a sequencing batch.
	BatchMaxSize uint
	BatchMaxAge  time.Duration
	// PushbackMaxOutstanding is how many sequenced-but-unintegrated records
	// the log holds before answering with pushback.
	PushbackMaxOutstanding uint
	// MaxRecordBytes is the largest accepted payload.
	MaxRecordBytes int
	// MaxClockSkew bounds how far a submitter's timestamp may be from the log's clock.
	MaxClockSkew time.Duration
	// WitnessPolicy is a C2SP tlog-policy (witness, group and quorum lines).
	// Empty: checkpoints are published without cosignatures.
	WitnessPolicy []byte
	// WitnessTimeout bounds how long publishing waits for the witness quorum.
	WitnessTimeout time.Duration
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
	// TLSClientCA verifies client certificates (mTLS); empty: no client certificates.
	TLSClientCA string
	// TLSCA adds trust roots for the log's own outgoing connections (witnesses).
	TLSCA string
	// InsecurePlaintext serves without TLS. It must be asked for explicitly.
	InsecurePlaintext bool
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
)

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
	if c.WitnessTimeout == 0 {
		c.WitnessTimeout = DefaultWitnessTimeout
	}
	if c.ReadAccess == "" {
		c.ReadAccess = ReadPublic
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// signer validates the configuration and returns the checkpoint signer.
// Every error names the flag at fault.
func (c Config) signer() (note.Signer, note.Verifier, error) {
	s, v, err := c.keys()
	if err != nil {
		return nil, nil, err
	}
	return s, v, c.validate(s.Name())
}

func (c Config) keys() (note.Signer, note.Verifier, error) {
	if c.PrivateKey == "" {
		return nil, nil, errors.New("--key: no private key given")
	}
	s, v, err := fnote.NewEd25519SignerVerifier(strings.TrimSpace(c.PrivateKey))
	if err != nil {
		return nil, nil, fmt.Errorf("--key: not an Ed25519 signed-note private key (PRIVATE+KEY+...; witness keys cannot sign checkpoints): %w", err)
	}
	return s, v, nil
}

func (c Config) validate(keyName string) error {
	if c.Origin == "" {
		return fmt.Errorf("--origin is required (the key is named %q)", keyName)
	}
	if c.Origin != keyName {
		return fmt.Errorf("--origin %q does not match the key name %q: the checkpoint origin must equal the log key's name (tlog-checkpoint)", c.Origin, keyName)
	}
	if c.CheckpointInterval < 100*time.Millisecond {
		return fmt.Errorf("--checkpoint-interval %v is below the 100ms minimum", c.CheckpointInterval)
	}
	if !strings.HasPrefix(c.Storage, "mysql+s3") && c.AWS != (AWSConfig{}) {
		return fmt.Errorf("--mysql-dsn and --s3-* apply only to --storage mysql+s3 (not %q)", c.Storage)
	}
	if strings.HasPrefix(c.Storage, "mysql+s3") && c.CheckpointInterval < time.Second {
		return fmt.Errorf("--checkpoint-interval %v: the mysql+s3 driver publishes at most once a second (use ≥1s)", c.CheckpointInterval)
	}
	if c.CheckpointRepublishInterval != 0 && c.CheckpointRepublishInterval < c.CheckpointInterval {
		return fmt.Errorf("--checkpoint-republish-interval %v is shorter than --checkpoint-interval %v", c.CheckpointRepublishInterval, c.CheckpointInterval)
	}
	if c.MaxRecordBytes < 1 || c.MaxRecordBytes > record.MaxPayloadBytes {
		return fmt.Errorf("--max-record-bytes %d must be between 1 and %d (a leaf must fit a tlog-tiles entry bundle)", c.MaxRecordBytes, record.MaxPayloadBytes)
	}
	if c.BatchMaxSize < 1 {
		return errors.New("--batch-max-size must be at least 1")
	}
	if !c.InsecurePlaintext && (c.TLSCert == "" || c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key are required (or --insecure-plaintext to serve without TLS)")
	}
	if c.InsecurePlaintext && (c.TLSCert != "" || c.TLSClientCA != "") {
		return errors.New("--insecure-plaintext contradicts --tls-cert/--tls-client-ca")
	}
	if c.RateLimit < 0 {
		return errors.New("--rate-limit must not be negative")
	}
	if c.MaxClockSkew < 0 {
		return errors.New("--max-clock-skew must not be negative")
	}
	return nil
}
