// Package keyfile reads secret files (signing keys, key-encryption keys,
// TLS private keys) and refuses ones other users can read: a key that leaked
// through a file mode is a key that must be rotated, so Cairn will not start
// on it.
package keyfile

import (
	"fmt"
	"io"
	"os"
)

// Read returns the contents of the secret file at path. It fails when the
// file is readable or writable by group or others, and says how to fix it.
func Read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible by other users (mode %#o); a secret key must be private: chmod 600 %s", path, perm, path)
	}
	return io.ReadAll(f)
}
