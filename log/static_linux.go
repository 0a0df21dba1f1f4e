package log

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// fdFile is a regular file read by its descriptor alone. os.Open of a
// regular file on Linux also tries to put it in the runtime's poller
// (fcntl to make it non-blocking, epoll_ctl, which refuses a regular file,
// and fcntl to undo it: five system calls beside the open) and allocates
// an *os.File with a cleanup; in the profiles of #19 that was more than a
// quarter of the log's CPU per tile it served. A tile or bundle is read
// once, in full, by sendfile (through SyscallConn) or by Read.
type fdFile struct {
	fd   int
	size int64
	path string
}

// openStaticFile opens the regular file at path; os.ErrNotExist (wrapped)
// when there is none, an error for anything but a regular file.
func openStaticFile(path string) (staticFile, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, err)
	}
	return &fdFile{fd: fd, size: st.Size, path: path}, nil
}

func (f *fdFile) Size() int64 { return f.size }

// Read reads from the file's position (the writers that cannot sendfile,
// a TLS connection among them, copy the file through it).
func (f *fdFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := syscall.Read(f.fd, p)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return 0, &os.PathError{Op: "read", Path: f.path, Err: err}
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f *fdFile) Close() error { return syscall.Close(f.fd) }

func (f *fdFile) rewind() error {
	_, err := syscall.Seek(f.fd, 0, io.SeekStart)
	return err
}

// openFilesLimit is the process's limit of open files (RLIMIT_NOFILE).
func openFilesLimit() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > 1<<30 {
		return 1 << 30
	}
	return int(l.Cur)
}

// SyscallConn lets net's sendfile use the descriptor: the file is sent
// from its position, which it advances.
func (f *fdFile) SyscallConn() (syscall.RawConn, error) { return fdRawConn(f.fd), nil }

// fdRawConn is a regular file's descriptor as a syscall.RawConn: a regular
// file is always ready, so each call runs fn once.
type fdRawConn int

func (c fdRawConn) Control(fn func(fd uintptr)) error { fn(uintptr(c)); return nil }

func (c fdRawConn) Read(fn func(fd uintptr) bool) error { fn(uintptr(c)); return nil }

func (c fdRawConn) Write(fn func(fd uintptr) bool) error { fn(uintptr(c)); return nil }
