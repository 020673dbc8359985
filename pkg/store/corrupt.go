package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/deployd/deployd/internal/atomicfile"
)

// ErrCorrupt is wrapped by Open's error when the file exists but cannot be
// trusted: bbolt rejects it, panics on it, or its pages or records do not
// hold together. The daemon must not start on it, because starting with
// empty state would deploy over the live color.
var ErrCorrupt = errors.New("store file corrupted")

// CorruptError says which file is corrupted and why. Its message ends with
// the recovery command ("deployd recover") so that a caller that knows the
// config path can append " --config <path>".
type CorruptError struct {
	Path  string
	Cause error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store file %s is corrupted (%v); deployd will not start with empty state. "+
		"Move it aside and rebuild it from Docker and nginx with: deployd recover", e.Path, e.Cause)
}

// Unwrap lets errors.Is find both ErrCorrupt and the cause.
func (e *CorruptError) Unwrap() []error { return []error{ErrCorrupt, e.Cause} }

// checkBudget bounds the record walk at open. A small store is walked
// whole in milliseconds; a huge one is walked as far as the budget goes
// rather than holding up the start.
const checkBudget = 5 * time.Second

// jsonBuckets hold one JSON document per key; a value that is not JSON is
// damage the page structure cannot show.
var jsonBuckets = []string{bucketServices, bucketDeployments, bucketAudit, bucketDeliveries, bucketTraffic, bucketSessions}

// openChecked opens the bbolt file for writing once an existing file has
// been proved readable (checkFile). bbolt trusts its file: damaged pages
// make it panic, and a truncated file makes reads fault on the memory map.
// Both are turned into errors here, on this goroutine, so they become
// ErrCorrupt.
func openChecked(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	existed, err := existingSize(path)
	if err != nil {
		return nil, err
	}
	if existed == 0 {
		// bbolt would quietly initialize an empty file: state that was
		// there is gone, so this is damage, not a first start.
		return nil, &CorruptError{Path: path, Cause: errors.New("file is empty")}
	}
	if existed > 0 {
		if err := checkFile(path, opts.Timeout); err != nil {
			return nil, err
		}
	}
	err = guard(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, opts)
		return err
	})
	var corrupt *CorruptError
	if errors.As(err, &corrupt) {
		if db != nil {
			closeQuietly(db)
		}
		return nil, err
	}
	if err != nil {
		if existed > 0 && corruptOpenError(err) {
			return nil, &CorruptError{Path: path, Cause: err}
		}
		return nil, err
	}
	return db, nil
}

// guard runs f and turns a panic, or a memory fault on bbolt's map of a
// truncated file, into a *CorruptError.
func guard(path string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Path: path, Cause: fmt.Errorf("bbolt panicked: %v", p)}
		}
	}()
	return f()
}

// existingSize is the file's size, or -1 when there is no file yet.
func existingSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return fi.Size(), nil
}

// corruptOpenError tells damage apart from the file being locked or not
// ours to read, which must keep their own messages.
func corruptOpenError(err error) bool {
	var pe *os.PathError
	switch {
	case errors.Is(err, berrors.ErrTimeout), errors.Is(err, os.ErrPermission):
		return false
	case errors.As(err, &pe):
		return false
	default:
		return true
	}
}

func closeQuietly(db *bolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// checkFile proves an existing file holds together: it is as long as its
// meta page says, every bucket and record is reachable, and every record
// that should be JSON is. Damage is a *CorruptError; a lock held by another
// process is bbolt's ErrTimeout.
//
// It reads through a read-only handle, closed again on every path. bbolt's
// read-write Open of a truncated file panics while it loads the freelist,
// after it has taken the file's lock, and a recovered panic leaves that lock
// held, so `deployd recover` in the same process could not move the file
// aside. A read-only Open reads only the meta pages, and tx.Size() says how
// long they claim the file is.
//
// bbolt's own consistency check (tx.Check) is not used: it runs on a
// goroutine of its own, so the panic a damaged page causes there (most of
// corrupt_test.go's damaged files) kills the process instead of being
// reported, and it cannot see a record that is not JSON. The walk below
// reads every page a later read will, on this goroutine, under guard.
func checkFile(path string, timeout time.Duration) error {
	var db *bolt.DB
	err := guard(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
		return err
	})
	var corrupt *CorruptError
	if errors.As(err, &corrupt) {
		return err
	}
	if err != nil {
		if corruptOpenError(err) {
			return &CorruptError{Path: path, Cause: err}
		}
		return err
	}
	defer closeQuietly(db) // read only
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	deadline := time.Now().Add(checkBudget)
	err = guard(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			if want := tx.Size(); fi.Size() < want {
				return fmt.Errorf("file is %d bytes, its meta page says %d: truncated", fi.Size(), want)
			}
			n := 0
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				validate := false
				for _, j := range jsonBuckets {
					validate = validate || j == string(name)
				}
				return walkBucket(b, string(name), validate, &n, deadline)
			})
		})
	})
	if err != nil && !errors.As(err, &corrupt) {
		return &CorruptError{Path: path, Cause: err}
	}
	return err
}

// errBudget stops a walk that ran out of time; what was walked was sound.
var errBudget = errors.New("check budget spent")

func walkBucket(b *bolt.Bucket, path string, validate bool, n *int, deadline time.Time) error {
	err := b.ForEach(func(k, v []byte) error {
		*n++
		if *n%1024 == 0 && time.Now().After(deadline) {
			return errBudget
		}
		if v == nil {
			child := b.Bucket(k)
			if child == nil {
				return fmt.Errorf("bucket %s: key %q has neither value nor bucket", path, k)
			}
			return walkBucket(child, path+"/"+string(k), false, n, deadline)
		}
		if validate && !json.Valid(v) {
			return fmt.Errorf("bucket %s: record %q is not valid JSON", path, k)
		}
		return nil
	})
	if errors.Is(err, errBudget) {
		return nil
	}
	return err
}

// MoveAside renames the store file at path to
// "<path>.corrupt-<UTC timestamp>" and returns the new name, so that a new
// store can be built in its place while the old one is kept for a
// post-mortem. It refuses with an error wrapping ErrLocked while a process
// (a running deployd) holds the file's lock. A missing file is no error and
// returns "".
func MoveAside(ctx context.Context, path string, now time.Time) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("move store aside: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("move store aside: %w", err)
	}
	defer func() { _ = f.Close() }()
	// The same lock bbolt takes, tried once: a running deployd holds it.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return "", fmt.Errorf("move store aside: %s is in use by a running deployd (%w)", path, ErrLocked)
		}
		return "", fmt.Errorf("move store aside: lock %s: %w", path, err)
	}
	to := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	if _, err := os.Lstat(to); err == nil {
		return "", fmt.Errorf("move store aside: %s already exists", to)
	}
	if err := os.Rename(path, to); err != nil {
		return "", fmt.Errorf("move store aside: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return "", fmt.Errorf("move store aside: %w", err)
	}
	return to, nil
}
