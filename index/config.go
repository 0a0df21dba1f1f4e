// Package index is Cairn's search index: it follows a log through its
// tlog-tiles read path (the log itself or a mirror) with the client's
// verifying reader, indexes every record into SQLite or MySQL, and answers
// queries with hits that carry their own proofs (format/search). It never
// imports the log: it reads what any third party can read, and, with a
// token holding the read role, the plaintext of sealed records from the
// log's read API.
package index

import (
	"errors"
	"log/slog"
	"time"

	"github.com/cairnlog/cairn/client"
	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/search"
	"github.com/cairnlog/cairn/internal/fielderr"
)

// Defaults.
const (
	// DefaultPollInterval is how often the index asks the log for a new checkpoint.
	DefaultPollInterval = time.Second
	// DefaultChunkBundles is how many entry bundles (256 records each) one
	// database transaction indexes.
	DefaultChunkBundles = 64
)

// Read access policies (Config.ReadAccess), as the log's --read-access.
const (
	ReadPublic        = "public"
	ReadAuthenticated = "authenticated"
)

// Config configures an index. Validate says which field is wrong.
type Config struct {
	// LogURLs are the log's tlog-tiles base URLs: the log, then mirrors
	// (client.NewLogFromURLs). Sealed records are decrypted by the first.
	LogURLs []string
	// Policy verifies the log's checkpoints.
	Policy *policy.Policy
	// LogHTTP reaches the log: TLS roots, client certificate, and a token
	// with the read role (needed to index the fields of sealed records).
	LogHTTP client.HTTPOptions
	// DB is sqlite:PATH or mysql:DSN.
	DB string
	// Fields are the JSON fields to index (NAME=PATH).
	Fields []search.Field
	// PollInterval is how often the log is polled (default DefaultPollInterval).
	PollInterval time.Duration
	// ChunkBundles is how many entry bundles one transaction indexes
	// (default DefaultChunkBundles).
	ChunkBundles int
	// AccessFile is an access file (cairn access; the log's format) of
	// the tokens and certificate principals that may query.
	AccessFile string
	// ReadAccess is ReadPublic (default) or ReadAuthenticated: then every
	// query needs a principal with the read role in AccessFile.
	ReadAccess string
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
}

// Validate checks the configuration; errors are *fielderr.Error naming the
// Config field.
func (c *Config) Validate() error {
	if len(c.LogURLs) == 0 {
		return fielderr.New("Config.LogURLs", errors.New("no log URL"))
	}
	if c.Policy == nil {
		return fielderr.New("Config.Policy", errors.New("no policy: without one nothing is verified"))
	}
	if c.DB == "" {
		return fielderr.New("Config.DB", errors.New("no database: want sqlite:PATH or mysql:DSN"))
	}
	seen := map[string]bool{}
	for _, f := range c.Fields {
		if err := search.CheckFieldName(f.Name); err != nil {
			return fielderr.New("Config.Fields", err)
		}
		if seen[f.Name] {
			return fielderr.Errorf("Config.Fields", "field %q is named twice", f.Name)
		}
		seen[f.Name] = true
	}
	if c.PollInterval < 0 {
		return fielderr.Errorf("Config.PollInterval", "%v is negative", c.PollInterval)
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ChunkBundles < 0 {
		return fielderr.Errorf("Config.ChunkBundles", "%d is negative", c.ChunkBundles)
	}
	if c.ChunkBundles == 0 {
		c.ChunkBundles = DefaultChunkBundles
	}
	switch c.ReadAccess {
	case "":
		c.ReadAccess = ReadPublic
	case ReadPublic:
	case ReadAuthenticated:
		if c.AccessFile == "" {
			return fielderr.Errorf("Config.AccessFile", "read access %q needs an access file", c.ReadAccess)
		}
	default:
		return fielderr.Errorf("Config.ReadAccess", "%q: want %s or %s", c.ReadAccess, ReadPublic, ReadAuthenticated)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
