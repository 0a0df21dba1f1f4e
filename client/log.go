// Package client is the Go library every Cairn caller uses: it submits
// records over gRPC with failover, and verifies what a log serves — checkpoints
// against a tlog-policy, inclusion and consistency proofs from tlog-tiles,
// receipts offline — and audits and monitors whole logs. It speaks only the
// public formats; it never imports the log or witness packages.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	tclient "github.com/transparency-dev/tessera/client"
)

// b64 prints a hash the way checkpoints do: standard base64.
func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }

// Log reads a log's tlog-tiles over HTTP and verifies what it reads.
type Log struct {
	URL     string
	Policy  *policy.Policy
	fetcher TileSource
	// sources, when the log is read from several URLs (NewLogFromURLs),
	// are tried in order; fetcher is then their fallback chain.
	sources *fallbackSource
	// hc, base and token reach the log's other HTTP endpoints
	// (/minimum-index, /holds: client/retention.go).
	hc    *http.Client
	base  *url.URL
	token string
}

// HTTPOptions configure how a Log is reached.
type HTTPOptions struct {
	// TLS is the client TLS configuration (CA roots, client certificate).
	TLS *tls.Config
	// Token is a bearer token, sent as Authorization: Bearer (for logs that
	// restrict reading record contents).
	Token string
	// Timeout bounds each request (default 30s).
	Timeout time.Duration
	// DisableCompression asks for tiles and bundles uncompressed. By
	// default the client accepts gzip, which a Cairn log uses for bundles
	// (compressed per request): it saves the bytes on a slow link, but on
	// a fast one the server's deflate and the client's inflate cost more
	// than the transfer (an audit replay is CPU-bound on a LAN).
	DisableCompression bool
}

// NewLog returns a reader for the log at base (http:// or https://), whose
// checkpoints must satisfy p.
func NewLog(base string, p *policy.Policy, o HTTPOptions) (*Log, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fielderr.Errorf("Log.URL", "%q: want an http:// or https:// URL", base)
	}
	if err := checkToken(o.Token); err != nil {
		return nil, fielderr.New("HTTPOptions.Token", err)
	}
	if o.Timeout < 0 {
		return nil, fielderr.Errorf("HTTPOptions.Timeout", "%v is negative", o.Timeout)
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if o.TLS != nil {
		// Each transport owns its TLS config (it writes HTTP/2's NextProtos
		// on first use); several Logs may be built from one HTTPOptions.
		tr.TLSClientConfig = o.TLS.Clone()
	}
	tr.MaxIdleConnsPerHost = 16
	tr.DisableCompression = o.DisableCompression
	// HTTP/1.1 even where the server offers HTTP/2: reading tiles over
	// TLS, Go's HTTP/2 cost an audit replay 1.35× the client's CPU and 2×
	// the server's in the paired runs of #19; concurrent reads use
	// several connections instead of one multiplexed.
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	// An entry bundle (~17 KB at 64-byte records) in one or two reads
	// rather than five of the default 4 KiB: read syscalls were an eighth
	// of an audit replay's CPU in the profiles of #19.
	tr.ReadBufferSize = 64 << 10
	hc := &http.Client{Transport: tr, Timeout: o.Timeout}
	f := &httpTiles{hc: hc, root: u, tls: tr.TLSClientConfig, timeout: o.Timeout, noGzip: o.DisableCompression}
	if o.Token != "" {
		f.auth = "Bearer " + o.Token
	}
	return &Log{URL: base, Policy: p, fetcher: f, hc: hc, base: u, token: o.Token}, nil
}

// Checkpoint fetches the latest checkpoint and verifies it against the policy.
func (l *Log) Checkpoint(ctx context.Context) (*policy.Verified, error) {
	if l.sources != nil {
		return l.sources.checkpoint(ctx, l.Policy)
	}
	raw, err := l.fetcher.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching checkpoint from %s: %w", l.URL, l.diagnose(ctx, err))
	}
	return l.Policy.Verify(raw)
}

// ReadTile and ReadEntryBundle expose the raw (unverified) resources.
func (l *Log) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return l.fetcher.ReadTile(ctx, level, index, p)
}

// ReadEntryBundle fetches an entry bundle (unverified).
func (l *Log) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	return l.fetcher.ReadEntryBundle(ctx, index, p)
}

// Entry returns leaf index of the verified checkpoint's tree, and proves it
// is in the tree: the leaf's hash and inclusion proof are checked. An index
// at or beyond the tree size is an error wrapping ErrNotInLog.
func (l *Log) Entry(ctx context.Context, v *policy.Verified, index uint64) ([]byte, error) {
	size := v.Checkpoint.Size
	if index >= size {
		return nil, notInLog(index, size)
	}
	b, err := l.fetcher.ReadEntryBundle(ctx, index/layout.EntryBundleWidth, layout.PartialTileSize(0, index/layout.EntryBundleWidth, size))
	if err != nil {
		if perr := l.prunedError(ctx, index, size); perr != nil {
			return nil, perr
		}
		return nil, missing(layout.EntriesPathForLogIndex(index, size), err)
	}
	eb := api.EntryBundle{}
	if err := eb.UnmarshalText(b); err != nil {
		return nil, verifyErr("entry bundle %s is malformed: %v", layout.EntriesPathForLogIndex(index, size), err)
	}
	i := index % layout.EntryBundleWidth
	if uint64(len(eb.Entries)) <= i {
		return nil, verifyErr("entry bundle %s holds %d entries, not entry %d", layout.EntriesPathForLogIndex(index, size), len(eb.Entries), index)
	}
	leaf := eb.Entries[i]
	if err := l.VerifyRecord(ctx, v, index, leaf); err != nil {
		if errors.Is(err, ErrVerification) {
			return nil, fmt.Errorf("entry bundle %s: %w", layout.EntriesPathForLogIndex(index, size), err)
		}
		return nil, err
	}
	return leaf, nil
}

// InclusionProof builds the proof of index in a tree of size from the tiles.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	pb, err := tclient.NewProofBuilder(ctx, size, l.fetcher.ReadTile)
	if err != nil {
		return nil, fmt.Errorf("reading tiles: %w", err)
	}
	return pb.InclusionProof(ctx, index)
}

// VerifyInclusion checks that leafHash is at index in the verified
// checkpoint's tree. An index at or beyond the tree size is an error
// wrapping ErrNotInLog.
func (l *Log) VerifyInclusion(ctx context.Context, v *policy.Verified, index uint64, leafHash []byte) error {
	if index >= v.Checkpoint.Size {
		return notInLog(index, v.Checkpoint.Size)
	}
	p, err := l.InclusionProof(ctx, index, v.Checkpoint.Size)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return verifyErr("a tile needed to prove index %d in size %d is missing: %v", index, v.Checkpoint.Size, err)
		}
		return fmt.Errorf("building the inclusion proof of %d: %w", index, err)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, v.Checkpoint.Size, leafHash, p, v.Checkpoint.Root[:]); err != nil {
		return verifyErr("leaf %d (hash %s) is not in the tree of size %d with root %s: %v", index, b64(leafHash), v.Checkpoint.Size, b64(v.Checkpoint.Root[:]), err)
	}
	return nil
}

// VerifyRecord checks that leaf is leaf index of the verified checkpoint's
// tree. A leaf that differs from the log's is reported as such ("the record
// does not match leaf N"), not as a bad proof: the level-0 tile holding the
// log's leaf hash is compared first, then the inclusion proof is checked.
func (l *Log) VerifyRecord(ctx context.Context, v *policy.Verified, index uint64, leaf []byte) error {
	size := v.Checkpoint.Size
	if index >= size {
		return notInLog(index, size)
	}
	hash := rfc6962.DefaultHasher.HashLeaf(leaf)
	k, p := index/layout.EntryBundleWidth, layout.PartialTileSize(0, index/layout.EntryBundleWidth, size)
	tile, err := l.fetcher.ReadTile(ctx, 0, k, p)
	if err != nil {
		return missing(layout.TilePath(0, k, p), err)
	}
	i := index % layout.EntryBundleWidth
	if uint64(len(tile)) < (i+1)*32 {
		return verifyErr("tile %s is %d bytes, too short for leaf %d", layout.TilePath(0, k, p), len(tile), index)
	}
	if want := tile[i*32 : (i+1)*32]; !bytes.Equal(hash, want) {
		return verifyErr("the record does not match leaf %d: it hashes to %s, the log's leaf %d hashes to %s", index, b64(hash), index, b64(want))
	}
	return l.VerifyInclusion(ctx, v, index, hash)
}

// VerifyConsistency checks that the tree of size from with root fromRoot is a
// prefix of the verified checkpoint's tree.
func (l *Log) VerifyConsistency(ctx context.Context, from uint64, fromRoot []byte, to *policy.Verified) error {
	size := to.Checkpoint.Size
	if from > size {
		return verifyErr("rollback: the log serves size %d, smaller than the earlier verified size %d", size, from)
	}
	var p [][]byte
	if from > 0 && from < size {
		pb, err := tclient.NewProofBuilder(ctx, size, l.fetcher.ReadTile)
		if err != nil {
			return fmt.Errorf("reading tiles: %w", err)
		}
		if p, err = pb.ConsistencyProof(ctx, from, size); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return verifyErr("a tile needed to prove %d → %d is missing: %v", from, size, err)
			}
			return fmt.Errorf("building the consistency proof %d → %d: %w", from, size, err)
		}
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, from, size, p, fromRoot, to.Checkpoint.Root[:]); err != nil {
		return verifyErr("the tree of size %d is not consistent with the earlier one of size %d: %v", size, from, err)
	}
	return nil
}

// diagnose tells an http:// URL for a TLS server apart from any other
// failure: the server answers a bare 400, which the fetcher reports as
// such. Only after a failed fetch over http:// it tries a TLS handshake
// with the host (no certificate check, nothing sent) and, if the server
// answers one, returns a *TLSError; every other error is returned as is.
func (l *Log) diagnose(ctx context.Context, err error) error {
	if err == nil || tlsProblem(err) != 0 || !strings.HasPrefix(l.URL, "http://") || errors.Is(err, os.ErrNotExist) {
		return asTLSError(err)
	}
	u, perr := url.Parse(l.URL)
	if perr != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host += ":80"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} // a probe: no data is sent
	c, perr := d.DialContext(ctx, "tcp", host)
	if perr != nil {
		return err
	}
	c.Close()
	return &TLSError{Problem: TLSServer, Err: err}
}
