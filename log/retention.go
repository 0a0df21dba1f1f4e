package log

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cairnlog/cairn/format/policy"
	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/format/retention"
	"github.com/cairnlog/cairn/internal/archive"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/sync/errgroup"
)

// DefaultRetentionInterval is how often the retention policy is evaluated.
const DefaultRetentionInterval = time.Hour

// RetentionSubmitter is the submitter of the audit records the log appends
// about its own lifecycle: minimum index moves and legal holds
// (docs/retention.md has their JSON schema).
const RetentionSubmitter = "cairn-log/retention"

// retentionObserveInterval is how often every frontend notes newly
// integrated bundles and re-reads the minimum index.
const retentionObserveInterval = time.Second

// sweepBatch is how many bundles one archive-and-delete step handles: each
// is archived and verified, then the batch is deleted in one call, then the
// progress is saved.
const sweepBatch = 64

// archiveWorkers is how many bundles of a batch are archived at once.
const archiveWorkers = 8

// ErrPruned: the requested record or entry bundle is below the minimum
// index and no longer served (HTTP 410 Gone, gRPC FailedPrecondition).
var ErrPruned = errors.New("pruned")

// retainer is the log's lifecycle: it notes when bundles were integrated,
// moves the minimum index forward as the policy allows, archives and deletes
// pruned bundles after the grace period, and keeps legal holds.
type retainer struct {
	l       *Log
	store   retentionStore
	bundles bundleDeleter
	policy  *retention.Policy // nil: never prunes (tlog-tiles)
	archive archive.Store     // set when the policy archives
	now     func() time.Time
	logger  *slog.Logger

	// witnesses verifies the published checkpoint's cosignatures, whose
	// timestamps date integration (nil without a witness policy).
	witnesses *policy.Policy

	// minIndex is the last minimum index read or written, served per request.
	minIndex atomic.Uint64

	// followed reports how many entries Tessera's persistent antispam
	// follower has read: it reads entry bundles, so none it has not read
	// yet may be deleted.
	followed func(context.Context) (uint64, error)

	// beforeDelete and afterDelete, if set (tests: kill -9), run after a
	// batch is archived and verified and before it is deleted, and after it
	// is deleted and before the progress is saved.
	beforeDelete, afterDelete func(bundles []uint64)
}

// retentionPolicy is a parsed policy and its opened archive.
type retentionPolicy struct {
	policy  *retention.Policy // nil: no policy
	archive archive.Store     // nil unless the policy archives
}

// openRetention parses the policy and opens and probes its archive: a
// malformed policy or an unreachable archive is refused at start, before
// the log opens its storage.
func openRetention(ctx context.Context, cfg Config) (retentionPolicy, error) {
	var rp retentionPolicy
	if len(cfg.Retention) == 0 {
		return rp, nil
	}
	p, err := retention.Parse(cfg.Retention)
	if err != nil {
		return rp, fielderr.New("Config.Retention", err)
	}
	rp.policy = &p
	if p.Action != retention.Archive {
		return rp, nil
	}
	var s3o *archive.S3Options
	if strings.HasPrefix(p.ArchiveTo, "s3://") {
		if s3o, err = archiveS3Options(cfg); err != nil {
			return rp, err
		}
	}
	st, err := archive.Open(p.ArchiveTo, s3o)
	if err != nil {
		return rp, fielderr.New("Config.Retention", err)
	}
	pctx, cancel := context.WithTimeout(ctx, s3RequestTimeout)
	defer cancel()
	if err := archive.Probe(pctx, st); err != nil {
		return rp, fielderr.New("Config.Retention", err)
	}
	rp.archive = st
	return rp, nil
}

// newRetainer starts the log's retention on its opened storage.
func newRetainer(ctx context.Context, l *Log, rp retentionPolicy, drv *driver, as *retryAntispam) (*retainer, error) {
	cfg := l.cfg
	r := &retainer{l: l, store: drv.retention, bundles: drv.bundles, policy: rp.policy, archive: rp.archive, now: cfg.Now, logger: cfg.Logger}
	r.followed = func(ctx context.Context) (uint64, error) {
		f := as.follower.Load()
		if f == nil {
			return 0, nil
		}
		return (*f).EntriesProcessed(ctx)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if len(cfg.WitnessPolicy) > 0 {
		// The log's witness policy, with this log's own key as its log.
		p, err := policy.Parse(cfg.WitnessPolicy)
		if err != nil {
			r.logger.Warn("retention: the witness policy does not parse as a tlog-policy; records are dated by the log's clock alone", slog.Any("error", err))
		} else {
			p.Logs = []policy.Log{{Origin: l.origin, Verifier: l.verifierV}}
			r.witnesses = p
		}
	}
	return r, r.refresh(ctx)
}

// integrationTime is the time to record for bundles a published checkpoint
// covers for the first time: the latest timestamp among its verified
// witness cosignatures (tlog-cosignature: the witness saw the checkpoint
// then, so the records were integrated no later), or the log's clock when it
// carries none. The latest, not the earliest, so that one witness whose
// clock is behind cannot make records look older than they are.
func (r *retainer) integrationTime(cp []byte) time.Time {
	if r.witnesses != nil {
		if v, err := r.witnesses.Verify(cp); err == nil && len(v.Cosigned) > 0 {
			var latest time.Time
			for _, t := range v.Cosigned {
				if t.After(latest) {
					latest = t
				}
			}
			return latest
		}
	}
	return r.now()
}

// archiveS3Options reaches an s3:// archive with the mysql+s3 driver's
// object store endpoint and credentials.
func archiveS3Options(cfg Config) (*archive.S3Options, error) {
	if cfg.Storage != "mysql+s3" {
		return nil, fielderr.Errorf("Config.Retention", "an s3:// archive uses the object store and credentials of Config.AWS, so it needs Config.Storage mysql+s3 (not %q); archive to posix:DIR instead", cfg.Storage)
	}
	ak, err := readCredential("Config.AWS.S3AccessKeyFile", cfg.AWS.S3AccessKeyFile, false)
	if err != nil {
		return nil, err
	}
	sk, err := readCredential("Config.AWS.S3SecretKeyFile", cfg.AWS.S3SecretKeyFile, true)
	if err != nil {
		return nil, err
	}
	return &archive.S3Options{Endpoint: cfg.AWS.S3Endpoint, Region: cfg.AWS.S3Region, PathStyle: cfg.AWS.S3PathStyle, AccessKey: ak, SecretKey: sk}, nil
}

// refresh re-reads the shared state: the minimum index served and the metrics.
func (r *retainer) refresh(ctx context.Context) error {
	st, err := r.store.load(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	r.setMinIndex(st.MinIndex)
	r.l.metrics.holds.Set(float64(len(st.Holds)))
	return nil
}

// setMinIndex raises the cached minimum index (never lowers it).
func (r *retainer) setMinIndex(v uint64) {
	for {
		cur := r.minIndex.Load()
		if v <= cur || r.minIndex.CompareAndSwap(cur, v) {
			break
		}
	}
	r.l.metrics.minIndex.Set(float64(r.minIndex.Load()))
}

// run observes integration every second and evaluates the policy every
// interval, until ctx is cancelled; it closes done when it returns.
func (r *retainer) run(ctx context.Context, interval time.Duration, done chan<- struct{}) {
	defer close(done)
	observe := time.NewTicker(retentionObserveInterval)
	defer observe.Stop()
	evaluate := time.NewTicker(interval)
	defer evaluate.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-observe.C:
			if err := r.observe(ctx); err != nil && ctx.Err() == nil {
				r.logger.Warn("retention: noting integrated bundles failed", slog.Any("error", err))
			}
		case <-evaluate.C:
			if r.policy == nil {
				continue
			}
			if err := r.evaluate(ctx); err != nil && ctx.Err() == nil {
				r.l.metrics.retentionFailures.Inc()
				r.logger.Error("retention: evaluating the policy failed; the next evaluation retries", slog.Any("error", err))
			}
		}
	}
}

// observe notes the time at which the published checkpoint first covered
// each full bundle: the record's integration time, from which keep counts.
// It is the witnesses' latest cosignature timestamp on the checkpoint, or the
// log's clock when it first saw it; never earlier than the true integration,
// so a record is kept at least as long as the policy says.
func (r *retainer) observe(ctx context.Context) error {
	if err := r.refresh(ctx); err != nil {
		return err
	}
	cp, size, err := r.l.latest(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	full := size / layout.EntryBundleWidth
	st, err := r.store.load(ctx)
	if err != nil {
		return err
	}
	if full <= st.fullBundlesSeen() {
		return nil
	}
	at := r.integrationTime(cp).UnixMilli()
	res := r.markResolution().Milliseconds()
	fresh := func(s *retentionState) bool {
		n := len(s.Integrated)
		return full > s.fullBundlesSeen() && (n == 0 || at-s.Integrated[n-1].At >= res)
	}
	if !fresh(&st) {
		return nil
	}
	return r.store.update(ctx, func(s *retentionState) error {
		if fresh(s) {
			s.Integrated = append(s.Integrated, integrationMark{Upto: full, At: at})
		}
		return nil
	})
}

// markResolution is the least time between two integration marks: bundles
// seen within it are dated by the next mark, later than they were seen, so
// records are kept at most this much longer than keep (1% of keep, at most
// an hour). It bounds the marks (and the state) to about 100 per keep period
// for short periods and 24 a day for long ones.
func (r *retainer) markResolution() time.Duration {
	if r.policy == nil {
		return maxMarkResolution
	}
	return min(r.policy.Keep/100, maxMarkResolution)
}

// maxMarkResolution caps markResolution.
const maxMarkResolution = time.Hour

// errHoldsChanged aborts a move when holds changed during the evaluation.
var errHoldsChanged = errors.New("legal holds changed during the evaluation; the next evaluation retries")

// evaluate applies the policy once: it moves the minimum index to the end
// of the longest prefix of full bundles whose records were all integrated
// more than keep ago and none of which is held, logs the move, and then
// archives and deletes the bundles whose grace period is over.
func (r *retainer) evaluate(ctx context.Context) error {
	defer r.l.metrics.retentionEvaluated.SetToCurrentTime()
	now := r.now()
	if err := r.observe(ctx); err != nil {
		return err
	}
	st, err := r.store.load(ctx)
	if err != nil {
		return err
	}
	_, size, err := r.l.latest(ctx)
	if err != nil {
		return err
	}
	k := st.MinIndex / layout.EntryBundleWidth
	for ; k < size/layout.EntryBundleWidth; k++ {
		t, ok := st.integratedAt(k)
		if !ok || now.Sub(t) < r.policy.Keep {
			break
		}
		held, err := r.bundleHeld(ctx, st.Holds, k)
		if err != nil {
			return err
		}
		if held {
			break
		}
	}
	if to := k * layout.EntryBundleWidth; to > st.MinIndex {
		if err := r.move(ctx, st, to, now); err != nil {
			return err
		}
	}
	return r.sweep(ctx, now)
}

// move logs and then stores a move of the minimum index to to.
func (r *retainer) move(ctx context.Context, st retentionState, to uint64, now time.Time) error {
	t, _ := st.integratedAt(to/layout.EntryBundleWidth - 1)
	ev := indexMoveEvent{
		Type: eventMinimumIndex, From: st.MinIndex, To: to, By: "retention-policy",
		Reason: fmt.Sprintf("records [%d, %d) were integrated by %s, more than keep %s before %s", st.MinIndex, to,
			t.UTC().Format(time.RFC3339), retention.FormatDuration(r.policy.Keep), now.UTC().Format(time.RFC3339)),
		Policy: r.policy.String(),
	}
	if err := r.logEvent(ctx, fmt.Sprintf("minimum-index-%d", to), ev); err != nil {
		return err
	}
	err := r.store.update(ctx, func(s *retentionState) error {
		if s.HoldsVersion != st.HoldsVersion {
			return errHoldsChanged
		}
		if to > s.MinIndex {
			s.Moves = append(s.Moves, indexMove{From: s.MinIndex, To: to, At: now.UnixMilli()})
			s.MinIndex = to
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.setMinIndex(to)
	r.logger.Info("retention: minimum index moved", slog.Uint64("from", st.MinIndex), slog.Uint64("to", to))
	return nil
}

// bundleHeld reports whether a hold covers any record of full bundle k: a
// range over it, or a record whose submitter or data subject (sealed
// records carry the keyed subject hashes in clear) is held.
func (r *retainer) bundleHeld(ctx context.Context, holds []Hold, k uint64) (bool, error) {
	lo, hi := k*layout.EntryBundleWidth, (k+1)*layout.EntryBundleWidth
	principals, subjects := map[string]bool{}, map[string]bool{}
	for _, h := range holds {
		switch {
		case h.Principal != "":
			principals[h.Principal] = true
		case h.SubjectHash != "":
			subjects[h.SubjectHash] = true
		case h.From < hi && lo < h.To:
			return true, nil
		}
	}
	if len(principals) == 0 && len(subjects) == 0 {
		return false, nil
	}
	b, err := r.l.reader.ReadEntryBundle(ctx, k, 0)
	if err != nil {
		return false, fmt.Errorf("reading entry bundle %d to check principal and subject holds: %w", k, err)
	}
	eb := api.EntryBundle{}
	if err := eb.UnmarshalText(b); err != nil {
		return false, fmt.Errorf("parsing entry bundle %d: %w", k, err)
	}
	for _, e := range eb.Entries {
		if held, err := leafHeld(e, principals, subjects); err != nil || held {
			// A leaf that is not a record cannot be attributed: keep it.
			return true, nil
		}
	}
	return false, nil
}

// leafHeld reports whether a held principal submitted leaf or a held subject
// (hex keyed hash) is named by it.
func leafHeld(leaf []byte, principals, subjects map[string]bool) (bool, error) {
	if record.LeafVersion(leaf) == record.SealedVersion {
		s, err := record.DecodeSealed(leaf)
		if err != nil {
			return false, err
		}
		if principals[s.Submitter] {
			return true, nil
		}
		for _, h := range s.Subjects {
			if subjects[hex.EncodeToString(h[:])] {
				return true, nil
			}
		}
		return false, nil
	}
	rec, err := record.Decode(leaf)
	if err != nil {
		return false, err
	}
	return principals[rec.Submitter], nil
}

// sweep archives (when the policy says so) and deletes the bundles below the
// minimum index whose grace period is over, in batches: each bundle of a
// batch is archived and its copy read back and verified against the log's
// level-0 tile before the batch is deleted, and the progress is saved after
// the deletion. A run that is killed at any point is finished by the next:
// a bundle already deleted must be in the archive and verify there.
func (r *retainer) sweep(ctx context.Context, now time.Time) error {
	st, err := r.store.load(ctx)
	if err != nil {
		return err
	}
	followed, err := r.followed(ctx)
	if err != nil {
		return fmt.Errorf("reading the antispam follower's position: %w", err)
	}
	limit := min(st.MinIndex, followed) / layout.EntryBundleWidth
	if limit < st.MinIndex/layout.EntryBundleWidth {
		r.logger.Info("retention: deletion waits for the antispam follower to read the bundles", slog.Uint64("followed", followed), slog.Uint64("minimum_index", st.MinIndex))
	}
	wroteCheckpoint := false
	for k := st.Deleted; k < limit; {
		var batch []uint64
		for ; k < limit && len(batch) < sweepBatch; k++ {
			at, ok := st.deniedAt(k)
			if !ok || now.Before(at.Add(r.policy.Grace)) {
				break
			}
			batch = append(batch, k)
		}
		if len(batch) == 0 {
			return nil
		}
		if r.archive != nil {
			if !wroteCheckpoint {
				cp, err := r.l.checkpoint(ctx)
				if err != nil {
					return err
				}
				if err := r.archive.Put(ctx, "checkpoint", cp); err != nil {
					return err
				}
				wroteCheckpoint = true
			}
			// The bundles of a batch are archived in parallel; the
			// batch is deleted only once every one of them verified.
			g, gctx := errgroup.WithContext(ctx)
			g.SetLimit(archiveWorkers)
			for _, b := range batch {
				g.Go(func() error {
					if err := r.archiveBundle(gctx, b); err != nil {
						return err
					}
					r.l.metrics.archivedBundles.Inc()
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				return err
			}
		}
		if r.beforeDelete != nil {
			r.beforeDelete(batch)
		}
		if err := r.bundles.deleteBundles(ctx, batch); err != nil {
			return err
		}
		if r.afterDelete != nil {
			r.afterDelete(batch)
		}
		last := batch[len(batch)-1] + 1
		if err := r.store.update(ctx, func(s *retentionState) error {
			s.Deleted = max(s.Deleted, last)
			return nil
		}); err != nil {
			return err
		}
		r.l.metrics.deletedBundles.Add(float64(len(batch)))
		r.logger.Info("retention: entry bundles deleted", slog.Uint64("from", batch[0]), slog.Uint64("to", last), slog.Bool("archived", r.archive != nil))
	}
	return nil
}

// archiveBundle copies full bundle k to the archive and verifies the copy
// against the log's level-0 tile. A bundle the log no longer has (an earlier
// run deleted it) must already be in the archive and verify there.
func (r *retainer) archiveBundle(ctx context.Context, k uint64) error {
	tile, err := r.l.reader.ReadTile(ctx, 0, k, 0)
	if err != nil {
		return fmt.Errorf("reading level-0 tile %d to verify its bundle: %w", k, err)
	}
	key := layout.EntriesPath(k, 0)
	b, err := r.l.reader.ReadEntryBundle(ctx, k, 0)
	if errors.Is(err, os.ErrNotExist) {
		got, gerr := r.archive.Get(ctx, key)
		if gerr != nil {
			return fmt.Errorf("entry bundle %d is gone from the log and its archived copy cannot be read: %w", k, gerr)
		}
		return VerifyBundle(got, tile, k)
	}
	if err != nil {
		return fmt.Errorf("reading entry bundle %d: %w", k, err)
	}
	if err := VerifyBundle(b, tile, k); err != nil {
		return fmt.Errorf("the log's own copy does not match its tiles, nothing archived: %w", err)
	}
	if err := r.archive.Put(ctx, key, b); err != nil {
		return fmt.Errorf("archiving entry bundle %d: %w", k, err)
	}
	got, err := r.archive.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("reading back archived entry bundle %d: %w", k, err)
	}
	if !bytes.Equal(got, b) {
		return fmt.Errorf("archived entry bundle %d reads back different bytes", k)
	}
	return VerifyBundle(got, tile, k)
}

// VerifyBundle checks that full entry bundle k holds exactly the leaves whose
// RFC 6962 hashes are level-0 tile k, naming the first index that differs.
func VerifyBundle(bundle, tile []byte, k uint64) error {
	eb := api.EntryBundle{}
	if err := eb.UnmarshalText(bundle); err != nil {
		return fmt.Errorf("entry bundle %d is malformed: %v", k, err)
	}
	if len(eb.Entries) != layout.EntryBundleWidth || len(tile) != layout.EntryBundleWidth*32 {
		return fmt.Errorf("entry bundle %d holds %d entries and its tile %d hashes, want %d", k, len(eb.Entries), len(tile)/32, layout.EntryBundleWidth)
	}
	for i, e := range eb.Entries {
		if !bytes.Equal(rfc6962.DefaultHasher.HashLeaf(e), tile[i*32:(i+1)*32]) {
			return fmt.Errorf("entry %d (bundle %d) does not match its leaf hash in the log's tiles", k*layout.EntryBundleWidth+uint64(i), k)
		}
	}
	return nil
}

// Event types of the retention audit records (docs/retention.md).
const (
	eventMinimumIndex = "cairn.retention/minimum-index"
	eventHoldAdd      = "cairn.retention/hold-add"
	eventHoldRelease  = "cairn.retention/hold-release"
)

// indexMoveEvent is the audit record of a minimum index move.
type indexMoveEvent struct {
	Type   string `json:"type"`
	From   uint64 `json:"from"`
	To     uint64 `json:"to"`
	By     string `json:"by"`
	Reason string `json:"reason"`
	Policy string `json:"policy"`
}

// logEvent appends an audit record about the log's lifecycle. The
// idempotency key is derived from the event, and the timestamp left unset,
// so a retry after a crash yields the same leaf and the same index.
func (r *retainer) logEvent(ctx context.Context, key string, ev any) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = r.l.Append(ctx, Submission{Payload: body, ContentType: "application/json", IdempotencyKey: "cairn-retention-" + key}, RetentionSubmitter)
	if err != nil {
		return fmt.Errorf("logging %s: %w", key, err)
	}
	return nil
}

// prunedError is the answer for bundle k below the minimum index.
func (r *retainer) prunedError(k uint64) error {
	where := "purged (no archive)"
	if r.policy != nil && r.policy.Action == retention.Archive {
		where = "archived at " + r.policy.ArchiveTo
	}
	return fmt.Errorf("%w: entry bundle %d (records %d-%d) is below the minimum index %d; %s", ErrPruned, k,
		k*layout.EntryBundleWidth, (k+1)*layout.EntryBundleWidth-1, r.minIndex.Load(), where)
}

// checkServed refuses bundle k when it is below the minimum index.
func (r *retainer) checkServed(k uint64) error {
	if (k+1)*layout.EntryBundleWidth <= r.minIndex.Load() {
		return r.prunedError(k)
	}
	return nil
}

// EvaluateRetention applies the retention policy now (cmd and tests; the log
// also does it every Config.RetentionInterval).
func (l *Log) EvaluateRetention(ctx context.Context) error {
	if l.retainer.policy == nil {
		return nil
	}
	return l.retainer.evaluate(ctx)
}

// MinimumIndex returns the log's minimum index (tlog-tiles Pruning).
func (l *Log) MinimumIndex() uint64 { return l.retainer.minIndex.Load() }
