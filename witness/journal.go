package witness

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/cairnlog/cairn/internal/atomicfile"
)

// journal is the witness's durable state: an append-only file of
// (origin, cosigned checkpoint note) records. Writers from many origins share
// one fsync (group commit): a write returns only after the batch holding it
// is on disk. Each record is framed as
//
//	u32 length ‖ u32 CRC-32C(payload) ‖ payload
//	payload = u16 len(origin) ‖ origin ‖ note
//
// On open, the last record of each origin is its state. A torn final record
// (a crash during a write that was therefore never acknowledged) is cut off;
// a damaged record anywhere else is corruption and opening fails.
type journal struct {
	path string

	mu        sync.Mutex
	cond      *sync.Cond
	f         *os.File
	size      int64
	buf       []byte // records waiting for the next flush
	gen       uint64 // generation the buffered records belong to
	flushed   uint64 // every generation below this is durable
	flushing  bool
	broken    error             // a failed write: the journal accepts nothing more
	latest    map[string][]byte // origin → last note (for compaction)
	compactAt int64
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// compactBytes is the journal size above which it is rewritten with only
// each origin's latest record.
const compactBytes = 64 << 20

func openJournal(path string) (*journal, error) {
	j := &journal{path: path, latest: map[string][]byte{}, compactAt: compactBytes}
	j.cond = sync.NewCond(&j.mu)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	good, err := replay(b, j.latest)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptState, path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil { // the file's own entry is durable
		f.Close()
		return nil, err
	}
	if good < int64(len(b)) {
		// Cut the torn tail so new records follow the last good one.
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, err
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	j.f, j.size = f, good
	if good > compactBytes {
		j.mu.Lock()
		err := j.compactLocked()
		j.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return j, nil
}

// replay reads records into latest and returns the length of the good prefix.
func replay(b []byte, latest map[string][]byte) (int64, error) {
	off := 0
	for off < len(b) {
		if len(b)-off < 8 {
			return int64(off), nil // torn header
		}
		n := int(binary.BigEndian.Uint32(b[off:]))
		sum := binary.BigEndian.Uint32(b[off+4:])
		if n > len(b)-off-8 {
			return int64(off), nil // torn payload
		}
		p := b[off+8 : off+8+n]
		last := off+8+n == len(b)
		if crc32.Checksum(p, crcTable) != sum || len(p) < 2 || int(binary.BigEndian.Uint16(p))+2 > len(p) {
			if last {
				return int64(off), nil // a torn final record
			}
			return 0, fmt.Errorf("record at offset %d is damaged", off)
		}
		ol := int(binary.BigEndian.Uint16(p))
		latest[string(p[2:2+ol])] = append([]byte(nil), p[2+ol:]...)
		off += 8 + n
	}
	return int64(off), nil
}

func frame(origin string, note []byte) []byte {
	p := make([]byte, 0, 2+len(origin)+len(note))
	p = binary.BigEndian.AppendUint16(p, uint16(len(origin)))
	p = append(p, origin...)
	p = append(p, note...)
	out := make([]byte, 0, 8+len(p))
	out = binary.BigEndian.AppendUint32(out, uint32(len(p)))
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(p, crcTable))
	return append(out, p...)
}

// get returns the latest note recorded for origin.
func (j *journal) get(origin string) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.latest[origin]
}

// put durably records note as origin's state. It returns once the record is
// on disk (or the journal failed, after which every put fails).
func (j *journal) put(origin string, note []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.broken != nil {
		return j.broken
	}
	j.buf = append(j.buf, frame(origin, note)...)
	j.latest[origin] = note
	mine := j.gen
	for j.flushed <= mine && j.broken == nil {
		if j.flushing {
			j.cond.Wait()
			continue
		}
		// Lead: flush everything buffered so far as one batch.
		j.flushing = true
		buf, gen := j.buf, j.gen
		j.buf, j.gen = nil, j.gen+1
		j.mu.Unlock()
		_, err := j.f.Write(buf)
		if err == nil {
			err = j.f.Sync()
		}
		j.mu.Lock()
		j.flushing = false
		if err != nil {
			j.broken = fmt.Errorf("witness state journal %s: %w (refusing further cosignatures)", j.path, err)
		} else {
			j.size += int64(len(buf))
			j.flushed = gen + 1
			if j.size > j.compactAt {
				if err := j.compactLocked(); err != nil {
					j.broken = err
				}
			}
		}
		j.cond.Broadcast()
	}
	return j.broken
}

// compactLocked rewrites the journal with one record per origin. Called
// with mu held and nothing buffered-but-unflushed of an older generation.
func (j *journal) compactLocked() error {
	var b bytes.Buffer
	for o, n := range j.latest {
		b.Write(frame(o, n))
	}
	if err := atomicfile.Write(j.path, b.Bytes(), 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	j.f.Close()
	j.f, j.size = f, int64(b.Len())
	j.compactAt = max(compactBytes, 2*j.size)
	return nil
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}
