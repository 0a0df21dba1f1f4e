package log

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnlog/cairn/internal/certpool"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
)

// driver is an opened storage backend: Tessera's driver plus the antispam
// index that makes retried records resolve to their first index.
type driver struct {
	name     string
	tessera  tessera.Driver
	antispam tessera.Antispam
	// reader, if set, adapts Tessera's reader to the errors the read path expects.
	reader func(tessera.LogReader) tessera.LogReader
	// retention keeps the minimum index, integration times and holds;
	// bundles deletes pruned entry bundles (log/retention.go).
	retention retentionStore
	bundles   bundleDeleter
	// readObject reads a file beside the tiles (the migration boundary);
	// os.ErrNotExist when there is none.
	readObject func(ctx context.Context, path string) ([]byte, error)
	// static, if set, opens a tile or entry bundle (a tlog-tiles path)
	// as a file, so the read path sends it without copying it through the
	// process (sendfile); os.ErrNotExist when there is none. POSIX only.
	static *staticOpener
	// collectors are the driver's own metrics; close, if set, releases
	// what it holds once its context is cancelled.
	collectors []prometheus.Collector
	close      func() error
}

// openDriver opens the storage named by spec: "posix:DIR" or "mysql+s3"
// (Config.Validate has checked the spec). private says that record contents
// are not public (ReadAuthenticated), so a POSIX directory must be too.
//
// lag is how far the persistent antispam index may trail the tree before
// appends get pushback (antispamLag of the dedup cache size); antispamMiB
// bounds the POSIX index's memory (Config.AntispamMemoryMiB).
func openDriver(ctx context.Context, spec string, aws AWSConfig, private bool, logger *slog.Logger, httpClient *http.Client, lag uint, antispamMiB int) (*driver, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "posix":
		return openPOSIX(ctx, arg, private, logger, httpClient, lag, antispamMiB)
	case "mysql+s3":
		return openAWS(ctx, aws, httpClient, lag)
	default:
		return nil, fielderr.Errorf("Config.Storage", "%q: unknown driver %q (want posix:DIR or mysql+s3)", spec, kind)
	}
}

// openPOSIX opens Tessera's POSIX driver on dir, creating dir owner-only
// (0700). Tessera creates the tree inside with fixed modes (directories 0755,
// files 0644, masked by the process umask; it takes no mode option), so the
// top directory is what keeps other local users out: with private (read
// access authenticated) a dir that others can enter is refused; otherwise it
// is only reported. cmd/cairn also sets the umask to 0077 so that every file
// it creates is owner-only.
func openPOSIX(ctx context.Context, dir string, private bool, logger *slog.Logger, httpClient *http.Client, lag uint, antispamMiB int) (*driver, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fielderr.Errorf("Config.Storage", "creating %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fielderr.New("Config.Storage", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		if private {
			return nil, fielderr.Errorf("Config.Storage", "%s is accessible by other users (mode %#o) but Config.ReadAccess is %s: chmod 700 %s", dir, perm, ReadAuthenticated, dir)
		}
		logger.Warn("the storage directory is accessible by other local users; chmod 700 it to keep them out", slog.String("dir", dir), slog.String("mode", fmt.Sprintf("%#o", perm)))
	}
	d, err := posix.New(ctx, posix.Config{Path: dir, HTTPClient: httpClient})
	if err != nil {
		return nil, fmt.Errorf("opening POSIX storage %s: %w", dir, err)
	}
	// The antispam index lives beside Tessera's own private state. Its
	// follower may lag the tree by up to lag entries before appends
	// get pushback; every entry that recent is still in Tessera's in-memory
	// dedup cache, so a retry is recognised either way. Cairn opens it
	// itself (log/antispam_posix.go) to bound its memory.
	as, err := openPOSIXAntispam(ctx, filepath.Join(dir, ".state", "antispam"), antispamMiB, lag, logger)
	if err != nil {
		return nil, fmt.Errorf("opening antispam index in %s: %w", dir, err)
	}
	static := newStaticOpener(dir, min(maxCachedFiles, openFilesLimit()/2))
	return &driver{name: "posix", tessera: d, antispam: as, collectors: append(as.collectors(), static.collector()),
		close:     func() error { return errors.Join(static.close(), as.close()) },
		retention: newFileRetentionStore(dir), bundles: posixDeleter{dir: dir, deleted: static.forget},
		readObject: func(_ context.Context, path string) ([]byte, error) {
			return os.ReadFile(filepath.Join(dir, path))
		},
		static: static}, nil
}

// antispamLag is how far the persistent antispam index may trail the tree:
// half of the in-memory dedup window of dedupEntries records.
func antispamLag(dedupEntries int) uint { return uint(dedupEntries / 2) }

// witnessHTTPClient is the client Tessera uses to reach witnesses. It never
// follows a proxy from the environment and bounds every request.
func witnessHTTPClient(timeout time.Duration, caFile string) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	if caFile != "" {
		pool, err := certpool.LoadWithSystem(caFile)
		if err != nil {
			return nil, fielderr.New("Config.TLSCA", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}
