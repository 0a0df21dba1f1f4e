package mirror

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cairnlog/cairn/internal/atomicfile"
)

// objects is where a mirror keeps one log: its tlog-tiles files (under
// "log/": checkpoint, tile/…, tile/entries/…) and the mirror's own state
// (pending.json, integrated.json, evidence/). Two implementations: a POSIX
// directory and an S3 bucket prefix (storage_s3.go).
type objects interface {
	// Put stores data at path atomically, replacing what was there. It
	// is durable once Sync of its path returned (put does both).
	Put(ctx context.Context, path string, data []byte) error
	// Sync makes the Puts of paths durable: for a directory, one sync of
	// each parent directory however many files went into it.
	Sync(ctx context.Context, paths []string) error
	// Get returns what is stored at path; an error wrapping
	// os.ErrNotExist when nothing is.
	Get(ctx context.Context, path string) ([]byte, error)
	// List returns the names of the objects directly under dir, sorted.
	List(ctx context.Context, dir string) ([]string, error)
	// Parallel is how many Puts are worth running at once.
	Parallel() int
}

// put stores data at path durably.
func put(ctx context.Context, o objects, path string, data []byte) error {
	if err := o.Put(ctx, path, data); err != nil {
		return err
	}
	return o.Sync(ctx, []string{path})
}

// dirObjects keeps a log's objects in a directory: a Put is a write to a
// temporary file, fsync and rename; Sync syncs the directories.
type dirObjects struct{ root string }

func (d dirObjects) Put(_ context.Context, path string, data []byte) error {
	p := filepath.Join(d.root, filepath.FromSlash(path))
	dir := filepath.Dir(p)
	if err := mkdirDurable(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(p)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return os.Rename(tmp.Name(), p)
}

// mkdirDurable creates dir and any missing parents, syncing the parent of
// each one it creates so that the new names survive a crash.
func mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := mkdirDurable(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

func (d dirObjects) Sync(_ context.Context, paths []string) error {
	dirs := map[string]bool{}
	for _, p := range paths {
		dirs[filepath.Dir(filepath.Join(d.root, filepath.FromSlash(p)))] = true
	}
	for dir := range dirs {
		if err := atomicfile.SyncDir(dir); err != nil {
			return fmt.Errorf("syncing %s: %w", dir, err)
		}
	}
	return nil
}

// Parallel implements objects: each Put is an fsync on the local disk.
func (dirObjects) Parallel() int { return 8 }

func (d dirObjects) Get(_ context.Context, path string) ([]byte, error) {
	return os.ReadFile(filepath.Join(d.root, filepath.FromSlash(path)))
}

func (d dirObjects) List(_ context.Context, dir string) ([]string, error) {
	es, err := os.ReadDir(filepath.Join(d.root, filepath.FromSlash(dir)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range es {
		if !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// storage opens the objects of each mirrored log. The mirror is the only
// writer of what it opens: a Storage shared by several frontends must make
// sure only one serves (the mysql+s3 writer lock does).
type storage interface {
	// Open returns the objects of the log whose OriginID is id.
	Open(ctx context.Context, id string) (objects, error)
	// Close releases the storage.
	Close() error
}

// dirStorage keeps every log in a subdirectory of a directory, named by its
// OriginID.
type dirStorage struct{ Dir string }

// Open implements storage.
func (s dirStorage) Open(_ context.Context, id string) (objects, error) {
	root := filepath.Join(s.Dir, id)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", root, err)
	}
	return dirObjects{root: root}, nil
}

// Close implements storage.
func (dirStorage) Close() error { return nil }
