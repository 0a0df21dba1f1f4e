//go:build !linux

package log

import (
	"fmt"
	"io"
	"os"
)

// osFile is a stored tile or bundle opened with os.Open (see fdFile for
// Linux, where the read path skips os.File).
type osFile struct {
	*os.File
	size int64
}

func (f osFile) Size() int64 { return f.size }

func (f osFile) rewind() error {
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// openFilesLimit: the read path keeps files open only on Linux.
func openFilesLimit() int { return 0 }

// openStaticFile opens the regular file at path; os.ErrNotExist (wrapped)
// when there is none.
func openStaticFile(path string) (staticFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, err)
	}
	return osFile{File: f, size: st.Size()}, nil
}
