package log

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairnlog/cairn/internal/certpool"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	posixantispam "github.com/transparency-dev/tessera/storage/posix/antispam"
)

// driver is an opened storage backend: Tessera's driver plus the antispam
// index that makes retried records resolve to their first index.
type driver struct {
	name     string
	tessera  tessera.Driver
	antispam tessera.Antispam
	// reader, if set, adapts Tessera's reader to the errors the read path expects.
	reader func(tessera.LogReader) tessera.LogReader
}

// openDriver opens the storage named by spec: "posix:DIR" or "mysql+s3".
func openDriver(ctx context.Context, spec string, aws AWSConfig, httpClient *http.Client) (*driver, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "posix":
		return openPOSIX(ctx, arg, httpClient)
	case "mysql+s3":
		if arg != "" {
			return nil, fmt.Errorf("--storage %q: mysql+s3 takes no argument; configure it with --mysql-dsn and --s3-*", spec)
		}
		return openAWS(ctx, aws, httpClient)
	default:
		return nil, fmt.Errorf("--storage %q: unknown driver %q (want posix:DIR or mysql+s3)", spec, kind)
	}
}

func openPOSIX(ctx context.Context, dir string, httpClient *http.Client) (*driver, error) {
	if dir == "" {
		return nil, errors.New("--storage posix: needs a directory, e.g. posix:./data/log")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--storage: creating %s: %w", dir, err)
	}
	d, err := posix.New(ctx, posix.Config{Path: dir, HTTPClient: httpClient})
	if err != nil {
		return nil, fmt.Errorf("opening POSIX storage %s: %w", dir, err)
	}
	// The antispam index lives beside Tessera's own private state. Its
	// follower may lag the tree by up to antispamLag entries before appends
	// get pushback; every entry that recent is still in Tessera's in-memory
	// dedup cache, so a retry is recognised either way.
	as, err := posixantispam.NewAntispam(ctx, filepath.Join(dir, ".state", "antispam"), posixantispam.AntispamOpts{PushbackThreshold: antispamLag})
	if err != nil {
		return nil, fmt.Errorf("opening antispam index in %s: %w", dir, err)
	}
	return &driver{name: "posix", tessera: d, antispam: as}, nil
}

// antispamLag is how far the persistent antispam index may trail the tree:
// half of Tessera's in-memory dedup window.
const antispamLag = tessera.DefaultAntispamInMemorySize / 2

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
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}
