package log

import (
	"io"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/tessera/api/layout"
)

// staticFile is a stored tile or entry bundle opened for one answer (see
// writeFile): an io.Reader of its bytes from its start that is also a
// syscall.Conn, so that net's sendfile sends it to a TCP connection, and
// its size.
type staticFile interface {
	io.ReadCloser
	syscall.Conn
	Size() int64
	// rewind moves the file's position back to its start.
	rewind() error
}

// maxCachedFiles bounds the files a staticOpener keeps open: the tiles and
// bundles of a 2M-record log. It is lowered to half the process's limit
// of open files where that is smaller (openFilesLimit).
const maxCachedFiles = 16384

// staticOpener opens stored tiles and entry bundles below a POSIX storage
// directory for writeFile; os.ErrNotExist when there is none.
//
// It keeps full tiles and bundles open between answers. Tessera writes
// them whole and never changes them, so an open descriptor serves the
// same bytes as a new one, with an lseek instead of the open, fstat and
// close of each answer (a fifth of the log's CPU per record of an audit
// replay that found its files open, #19). Partial tiles and bundles, which the full
// ones replace, are opened each time. A file in use by one answer is
// out of the cache (the answer moves its position); a second answer for
// it at the same time opens its own. When the cache is full, a file put
// back replaces one chosen at random, so a reader that goes through more
// files than the cache holds, in order, still finds some of them open.
//
// Retention deletes entry bundles (prune.go): the read path refuses a
// bundle below the minimum index (410) before it asks for the file, and
// the deleter drops a deleted bundle's descriptor (forget), so that its
// disk space is freed.
type staticOpener struct {
	dir string
	max int

	mu     sync.Mutex
	idle   map[string]*cachedFile
	closed bool
	// forgets counts forget's calls: a file taken out before one is not
	// put back (it may be a bundle deleted while an answer sent it).
	forgets uint64
}

// newStaticOpener serves the files below dir, keeping up to max open.
func newStaticOpener(dir string, max int) *staticOpener {
	return &staticOpener{dir: dir, max: max, idle: map[string]*cachedFile{}}
}

// cachedFile is a full tile or bundle that goes back to its opener's cache
// when the answer closes it.
type cachedFile struct {
	staticFile
	o    *staticOpener
	path string
	// forgets is the opener's count when the file was taken out.
	forgets uint64
}

func (f *cachedFile) Close() error { return f.o.put(f) }

func (o *staticOpener) open(path string) (staticFile, error) {
	if o.max <= 0 || strings.Contains(path, ".p/") {
		return openStaticFile(o.file(path))
	}
	o.mu.Lock()
	f, ok := o.idle[path]
	if ok {
		delete(o.idle, path)
	}
	forgets := o.forgets
	o.mu.Unlock()
	if ok {
		// The answer before left the position at the end, or anywhere.
		if err := f.rewind(); err == nil {
			f.forgets = forgets
			return f, nil
		}
		_ = f.staticFile.Close()
	}
	sf, err := openStaticFile(o.file(path))
	if err != nil {
		return nil, err
	}
	return &cachedFile{staticFile: sf, o: o, path: path, forgets: forgets}, nil
}

func (o *staticOpener) file(path string) string {
	return filepath.Join(o.dir, filepath.FromSlash(path))
}

// put takes back a file an answer is done with: into the cache (open
// rewinds it when it is used again, so a file that is not costs no
// lseek), or closed if the cache is closed, already has that file, or
// forgot files since it was taken out.
func (o *staticOpener) put(f *cachedFile) error {
	o.mu.Lock()
	_, dup := o.idle[f.path]
	var evicted *cachedFile
	if !o.closed && !dup && f.forgets == o.forgets {
		if len(o.idle) >= o.max {
			// Map iteration starts at a random entry.
			for p, e := range o.idle {
				evicted = e
				delete(o.idle, p)
				break
			}
		}
		o.idle[f.path] = f
		f = nil
	}
	o.mu.Unlock()
	if evicted != nil {
		_ = evicted.staticFile.Close()
	}
	if f != nil {
		return f.staticFile.Close()
	}
	return nil
}

// forget closes the cached descriptors of entry bundles that retention
// deleted.
func (o *staticOpener) forget(bundles []uint64) {
	var drop []*cachedFile
	o.mu.Lock()
	o.forgets++
	for _, k := range bundles {
		p := layout.EntriesPath(k, 0)
		if f, ok := o.idle[p]; ok {
			drop = append(drop, f)
			delete(o.idle, p)
		}
	}
	o.mu.Unlock()
	for _, f := range drop {
		_ = f.staticFile.Close()
	}
}

// collector exports how many files the cache holds open.
func (o *staticOpener) collector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cairn_log_read_open_files",
		Help: "Full tiles and entry bundles the read path keeps open between answers (POSIX storage).",
	}, func() float64 { return float64(o.cached()) })
}

// cached is how many files the cache holds open now.
func (o *staticOpener) cached() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.idle)
}

// close closes every cached descriptor; files in use are closed when their
// answers are done, and nothing is cached after it.
func (o *staticOpener) close() error {
	o.mu.Lock()
	idle := o.idle
	o.idle, o.closed = map[string]*cachedFile{}, true
	o.mu.Unlock()
	for _, f := range idle {
		_ = f.staticFile.Close()
	}
	return nil
}
