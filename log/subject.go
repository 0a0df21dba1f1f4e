package log

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cairnlog/cairn/format/record"
	"github.com/cairnlog/cairn/internal/fielderr"
	"github.com/cairnlog/cairn/internal/keyfile"
	cairnv1 "github.com/cairnlog/cairn/proto/cairn/v1"
)

// KEKPrefix starts a key-encryption key file: "cairn-kek-v1:" and the
// standard base64 of 32 random bytes (an AES-256 key), one line.
const KEKPrefix = "cairn-kek-v1:"

// GenerateKEK returns the text of a new key-encryption key file.
func GenerateKEK() (string, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return "", err
	}
	return KEKPrefix + base64.StdEncoding.EncodeToString(k[:]) + "\n", nil
}

// parseKEK parses the text of a key-encryption key file.
func parseKEK(b []byte) ([]byte, error) {
	s, ok := strings.CutPrefix(strings.TrimSpace(string(b)), KEKPrefix)
	if !ok {
		return nil, fmt.Errorf("not a key-encryption key (want one line %s<base64 of 32 bytes>, as cairn keygen --kek writes)", KEKPrefix)
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("not a key-encryption key: the base64 after %s must decode to 32 bytes", KEKPrefix)
	}
	return k, nil
}

// Wrapped-key layout (docs/erasure.md): a version byte, the KEK's id, a
// random GCM nonce, and the data key sealed by AES-256-GCM under the KEK
// with the entry's name as additional data (a wrapped key cannot be moved
// to another subject).
const (
	wrapVersion = 1
	kekIDBytes  = 8
	wrapBytes   = 1 + kekIDBytes + 12 + record.DataKeyBytes + 16
)

// Names in the key store.
const (
	hashKeyName       = "hash-key"
	subjectNamePrefix = "subject-"
)

// subjectName is the key store name of a subject's data key.
func subjectName(h record.SubjectHash) string { return subjectNamePrefix + hex.EncodeToString(h[:]) }

// keyCacheTTL bounds how long an append reuses a data key it read from a
// shared key store: another frontend's erasure reaches this one's appends
// within it (a record racing an erasure is sealed under the erased key,
// i.e. born erased). A store only this process writes (POSIX) needs no
// expiry: its erasures drop the key from the cache themselves. Reads never
// use the cache: once the key store says erased, no API shows plaintext.
const keyCacheTTL = time.Second

// maxCachedKeys bounds the append cache (about 1 KiB a subject with its
// Sealer); past it an arbitrary entry makes room.
const maxCachedKeys = 1 << 16

// subjectKeys seals and opens records for data subjects: the KEK, the
// log's subject hash key, and the key store of data keys.
type subjectKeys struct {
	store   keyStore
	kek     cipher.AEAD
	kekID   [kekIDBytes]byte
	hashKey []byte
	hasher  *record.SubjectHasher

	// mu guards cache, unwrapped data keys for appends with when they were
	// read, and gen, which counts erasures: a key read before an erasure
	// must not enter the cache after it.
	mu    sync.Mutex
	cache map[record.SubjectHash]cachedKey
	gen   uint64
}

type cachedKey struct {
	key    []byte
	sealer *record.Sealer // for records naming this subject alone
	read   time.Time
}

// openSubjectKeys opens the key store with the KEK in kekFile. Without a
// KEK file it returns nil (the log then refuses records naming subjects),
// unless the store holds keys: then the KEK was lost, and the log must not start.
func openSubjectKeys(ctx context.Context, store keyStore, kekFile string) (*subjectKeys, error) {
	if kekFile == "" {
		empty, err := store.empty(ctx)
		if err != nil {
			return nil, err
		}
		if !empty {
			return nil, fielderr.Errorf("Config.KEKFile", "required: the key store holds subject keys wrapped by a key-encryption key, and without it no sealed record can be read or written")
		}
		return nil, nil
	}
	raw, err := keyfile.Read(kekFile)
	if err != nil {
		return nil, fielderr.New("Config.KEKFile", err)
	}
	kek, err := parseKEK(raw)
	if err != nil {
		return nil, fielderr.Errorf("Config.KEKFile", "%s: %w", kekFile, err)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &subjectKeys{store: store, kek: aead, cache: map[record.SubjectHash]cachedKey{}}
	id := sha256.Sum256(append([]byte("cairn kek id\x00"), kek...))
	copy(k.kekID[:], id[:])
	// The hash key is created on first start, and unwrapping it on every
	// later start is what proves that this is the KEK of this key store.
	e, ok, err := store.load(ctx, hashKeyName)
	if err != nil {
		return nil, err
	}
	if !ok {
		if e, err = k.newKey(ctx, hashKeyName); err != nil {
			return nil, err
		}
	}
	if k.hashKey, err = k.unwrap(hashKeyName, e.Wrapped); err != nil {
		return nil, fielderr.Errorf("Config.KEKFile", "%s does not unwrap this log's key store: %w", kekFile, err)
	}
	k.hasher = record.NewSubjectHasher(k.hashKey)
	return k, nil
}

// newKey creates a random key called name, wrapped, unless another
// frontend created it first; it returns the stored entry.
func (k *subjectKeys) newKey(ctx context.Context, name string) (keyEntry, error) {
	dk := make([]byte, record.DataKeyBytes)
	if _, err := rand.Read(dk); err != nil {
		return keyEntry{}, err
	}
	w, err := k.wrap(name, dk)
	if err != nil {
		return keyEntry{}, err
	}
	return k.store.create(ctx, name, keyEntry{Wrapped: w})
}

func (k *subjectKeys) wrap(name string, dk []byte) ([]byte, error) {
	b := make([]byte, 0, wrapBytes)
	b = append(b, wrapVersion)
	b = append(b, k.kekID[:]...)
	nonce := make([]byte, k.kek.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	b = append(b, nonce...)
	return k.kek.Seal(b, nonce, dk, []byte(name)), nil
}

func (k *subjectKeys) unwrap(name string, w []byte) ([]byte, error) {
	if len(w) != wrapBytes || w[0] != wrapVersion {
		return nil, fmt.Errorf("key %s: not a wrapped key (version %d, %d bytes)", name, firstByte(w), len(w))
	}
	if id := w[1 : 1+kekIDBytes]; !bytes.Equal(id, k.kekID[:]) {
		return nil, fmt.Errorf("key %s is wrapped by key-encryption key %x, the configured one is %x", name, id, k.kekID)
	}
	nonce := w[1+kekIDBytes : 1+kekIDBytes+12]
	dk, err := k.kek.Open(nil, nonce, w[1+kekIDBytes+12:], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("key %s does not unwrap (altered in the key store?)", name)
	}
	return dk, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// hash returns the keyed hash of a subject identifier.
func (k *subjectKeys) hash(subject string) record.SubjectHash {
	return k.hasher.Hash(subject)
}

// forAppend returns h's data key, creating it for a new subject, and a
// Sealer for records naming h alone. An erased subject is refused: erasure
// is final.
func (k *subjectKeys) forAppend(ctx context.Context, h record.SubjectHash) (cachedKey, error) {
	k.mu.Lock()
	c, ok := k.cache[h]
	gen := k.gen
	k.mu.Unlock()
	if ok && (!k.store.shared() || time.Since(c.read) < keyCacheTTL) {
		return c, nil
	}
	c, err := k.read(ctx, h)
	if err != nil {
		return cachedKey{}, err
	}
	k.keep(h, c, gen)
	return c, nil
}

// keep caches c, read when the erasure count was gen, for h, unless an
// erasure ran since (the key is then used once, not kept).
func (k *subjectKeys) keep(h record.SubjectHash, c cachedKey, gen uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gen != gen {
		return
	}
	if _, ok := k.cache[h]; !ok && len(k.cache) >= maxCachedKeys {
		for old := range k.cache {
			delete(k.cache, old)
			break
		}
	}
	k.cache[h] = c
}

// read reads h's data key from the store for forAppend.
func (k *subjectKeys) read(ctx context.Context, h record.SubjectHash) (cachedKey, error) {
	name := subjectName(h)
	e, ok, err := k.store.load(ctx, name)
	if err != nil {
		return cachedKey{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !ok {
		if e, err = k.newKey(ctx, name); err != nil {
			return cachedKey{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	if e.erased() {
		return cachedKey{}, fmt.Errorf("%w: subject %x was erased on %s; records naming it can no longer be written", ErrFailedPrecondition, h[:8], erasedDate(e.ErasedAt))
	}
	dk, err := k.unwrap(name, e.Wrapped)
	if err != nil {
		return cachedKey{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	sealer, err := record.NewSealer([]record.SubjectHash{h}, [][]byte{dk})
	if err != nil {
		return cachedKey{}, err
	}
	return cachedKey{key: dk, sealer: sealer, read: time.Now()}, nil
}

// forget drops h's cached key (it was erased here).
func (k *subjectKeys) forget(h record.SubjectHash) {
	k.mu.Lock()
	delete(k.cache, h)
	k.gen++
	k.mu.Unlock()
}

func erasedDate(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }

// seal returns the version-2 leaf of r for the named subjects.
func (l *Log) seal(ctx context.Context, r record.Record, subjects []string) ([]byte, error) {
	if l.keys == nil {
		return nil, fmt.Errorf("%w: this log has no key-encryption key (--kek-file), so it cannot seal records naming data subjects", ErrFailedPrecondition)
	}
	if len(subjects) > record.MaxSubjects {
		return nil, fmt.Errorf("%w: %d subjects, at most %d per record", ErrInvalidRecord, len(subjects), record.MaxSubjects)
	}
	hs := make([]record.SubjectHash, len(subjects))
	keys := make([][]byte, len(subjects))
	for i, s := range subjects {
		if err := record.ValidateSubject(s); err != nil {
			return nil, fmt.Errorf("%w: subject %d: %v", ErrInvalidRecord, i+1, err)
		}
		hs[i] = l.keys.hash(s)
	}
	var sealer *record.Sealer
	for i, h := range hs {
		c, err := l.keys.forAppend(ctx, h)
		if err != nil {
			return nil, err
		}
		keys[i], sealer = c.key, c.sealer
	}
	if len(hs) != 1 {
		var err error
		if sealer, err = record.NewSealer(hs, keys); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
		}
	}
	leaf, err := sealer.Leaf(r)
	switch {
	case errors.Is(err, record.ErrLeafTooLarge):
		return nil, fmt.Errorf("%w: %v", ErrRecordTooLarge, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	return leaf, nil
}

// decode is how a reader with the read role sees leaf index: a plain
// record as it is, a sealed one decrypted — or why it cannot be read.
// It reads keys from the store, never from the append cache, so a record
// erased on any frontend reads as erased here at once.
func (l *Log) decode(ctx context.Context, index uint64, leaf []byte) (record.Decoded, error) {
	return l.decodeWith(ctx, index, leaf, map[record.SubjectHash]storedKey{})
}

// storedKey is a subject's key-store entry as one read call saw it.
type storedKey struct {
	entry keyEntry
	found bool
}

// decodeWith is decode with memo, the key-store entries already read in
// this call (a GetEntries answer reads each subject's entry once).
func (l *Log) decodeWith(ctx context.Context, index uint64, leaf []byte, memo map[record.SubjectHash]storedKey) (record.Decoded, error) {
	d := record.Decoded{Index: index}
	switch record.LeafVersion(leaf) {
	case record.Version:
		if _, err := record.Decode(leaf); err != nil {
			d.State, d.Detail = record.StateMalformed, err.Error()
			return d, nil
		}
		d.State, d.Record = record.StatePlain, leaf
		return d, nil
	case record.SealedVersion:
	default:
		d.State, d.Detail = record.StateMalformed, fmt.Sprintf("envelope version %d is unknown", record.LeafVersion(leaf))
		return d, nil
	}
	s, err := record.DecodeSealed(leaf)
	if err != nil {
		d.State, d.Detail = record.StateMalformed, err.Error()
		return d, nil
	}
	for _, h := range s.Subjects {
		d.SubjectHashes = append(d.SubjectHashes, hex.EncodeToString(h[:]))
	}
	if l.keys == nil {
		d.State, d.Detail = record.StateNoKey, "this log has no key-encryption key (--kek-file)"
		return d, nil
	}
	keys := make([][]byte, len(s.Subjects))
	for i, h := range s.Subjects {
		name := subjectName(h)
		sk, seen := memo[h]
		if !seen {
			e, ok, err := l.keys.store.load(ctx, name)
			if err != nil {
				return d, fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
			sk = storedKey{e, ok}
			memo[h] = sk
		}
		e, ok := sk.entry, sk.found
		var err error
		switch {
		case !ok:
			d.State, d.Detail = record.StateNoKey, fmt.Sprintf("entry %d: the key store never held a key for subject %x (an altered leaf, or a key store older than the record)", index, h[:8])
			return d, nil
		case e.erased():
			if d.State != record.StateErased || e.ErasedAt < d.ErasedAtUnixMillis {
				d.ErasedAtUnixMillis = e.ErasedAt
			}
			d.State = record.StateErased
			d.Detail = "erased on " + erasedDate(d.ErasedAtUnixMillis)
			continue
		}
		if keys[i], err = l.keys.unwrap(name, e.Wrapped); err != nil {
			return d, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	if d.State == record.StateErased {
		return d, nil
	}
	r, err := s.Open(keys)
	if errors.Is(err, record.ErrAuthentication) {
		d.State, d.Detail = record.StateTampered, fmt.Sprintf("entry %d: %v (the stored ciphertext was altered)", index, err)
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("%w: opening entry %d: %v", ErrUnavailable, index, err)
	}
	d.State = record.StateDecrypted
	d.Record = r.AppendTo(make([]byte, 0, r.Size()))
	return d, nil
}

// decodeAll decodes leaves read from index start on (GetEntries with decrypt).
func (l *Log) decodeAll(ctx context.Context, start uint64, leaves [][]byte) ([]*cairnv1.Record, error) {
	out := make([]*cairnv1.Record, len(leaves))
	memo := map[record.SubjectHash]storedKey{}
	for i, leaf := range leaves {
		d, err := l.decodeWith(ctx, start+uint64(i), leaf, memo)
		if err != nil {
			return nil, err
		}
		rec := &cairnv1.Record{State: d.State, Record: d.Record, ErasedAtUnixMillis: d.ErasedAtUnixMillis, Detail: d.Detail}
		for _, h := range d.SubjectHashes {
			b, _ := hex.DecodeString(h)
			rec.SubjectHashes = append(rec.SubjectHashes, b)
		}
		out[i] = rec
	}
	return out, nil
}
