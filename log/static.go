package log

import (
	"io"
	"path/filepath"
)

// staticFile is a stored tile or entry bundle opened for one answer (see
// writeFile): an io.Reader of its bytes that is also a syscall.Conn, so
// that net's sendfile sends it to a TCP connection, and its size.
type staticFile interface {
	io.ReadCloser
	Size() int64
}

// staticOpener opens stored tiles and entry bundles below a POSIX storage
// directory for writeFile; os.ErrNotExist when there is none.
type staticOpener struct{ dir string }

func (o staticOpener) open(path string) (staticFile, error) {
	return openStaticFile(filepath.Join(o.dir, filepath.FromSlash(path)))
}
