// Package store keeps deployd's state — services' colors, the record of
// every deployment, the audit trail and the webhook deliveries seen — in one
// embedded bbolt file. It implements controller.Store.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/deployd/deployd/pkg/controller"
)

// ErrLocked is returned by Open when another process (another deployd on the
// same data dir) holds the database's exclusive lock.
var ErrLocked = errors.New("database locked")

// ErrSchema is returned by Open when the file was written with a schema this
// build does not understand, typically by a newer deployd.
var ErrSchema = errors.New("unsupported store schema")

const (
	bucketMeta        = "meta"
	bucketServices    = "services"
	bucketDeployments = "deployments"
	bucketAudit       = "audit"
	bucketDeliveries  = "deliveries"
	// bucketByService holds one nested bucket per service whose keys are
	// that service's deployment ids, so listing one service's history does
	// not decode every other service's records.
	bucketByService  = "deployments_by_service"
	keySchemaVersion = "schema_version"

	defaultOpenTimeout = time.Second
	defaultListLimit   = 20
	maxListLimit       = 500
)

// Options configures Open.
type Options struct {
	// Path is the database file; its parent directory is created (0700) if
	// missing.
	Path string
	// OpenTimeout bounds the wait for the file lock; 0 means one second.
	OpenTimeout time.Duration
	// Now is the clock that stamps and expires webhook deliveries; nil
	// means time.Now.
	Now func() time.Time
}

// Store is a controller.Store on a bbolt file. It is safe for concurrent use.
type Store struct {
	db  *bolt.DB
	now func() time.Time
}

var _ controller.Store = (*Store)(nil)

// Open opens or creates the database at o.Path. While it is open no other
// process can open the same file: a second Open fails after o.OpenTimeout with
// an error wrapping ErrLocked. A file with an unknown schema version fails
// with an error wrapping ErrSchema. An existing file that is damaged
// (truncated, emptied, scribbled over) fails with a *CorruptError wrapping
// ErrCorrupt, never with a fresh empty store. The caller owns the Store and must Close
// it.
func Open(ctx context.Context, o Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if o.Path == "" {
		return nil, errors.New("open store: empty path")
	}
	timeout := o.OpenTimeout
	if timeout <= 0 {
		timeout = defaultOpenTimeout
	}
	// bbolt's lock wait cannot be cancelled, so let a nearer ctx deadline
	// shorten it instead.
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = max(left, time.Millisecond)
		}
	}
	dir := filepath.Dir(o.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open store: create data dir: %w", err)
	}
	db, err := openChecked(o.Path, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store: data dir %s is in use by another deployd (%w)", dir, ErrLocked)
	}
	var corrupt *CorruptError
	if errors.As(err, &corrupt) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", o.Path, err)
	}
	if err := guard(o.Path, func() error { return initSchema(db) }); err != nil {
		if errors.As(err, &corrupt) {
			closeQuietly(db)
			return nil, err
		}
		// The schema error is the one worth reporting; a failing close of a
		// file we only read adds nothing.
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", o.Path, err)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: now}, nil
}

// initSchema stamps a new file with the current schema version, migrates
// a file of an older one and refuses a file of a newer one, before any
// record is read.
func initSchema(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists([]byte(bucketMeta))
		if err != nil {
			return fmt.Errorf("create %s bucket: %w", bucketMeta, err)
		}
		version := schemaVersion
		if v := meta.Get([]byte(keySchemaVersion)); v != nil {
			n, err := strconv.Atoi(string(v))
			if err != nil || n < 1 || n > schemaVersion {
				return fmt.Errorf("schema version %q, this deployd understands 1 to %d: %w", v, schemaVersion, ErrSchema)
			}
			version = n
		}
		// The audit, deliveries, notifications, traffic and sessions buckets came after
		// schema 1 files were already in use. Adding a bucket changes no
		// existing record, so they are created here for old and new files
		// alike instead of bumping the schema version (which would lock
		// out older builds for no reason; an older build ignores the
		// notifications it does not know).
		for _, b := range []string{bucketServices, bucketDeployments, bucketAudit, bucketDeliveries, bucketOutbox, bucketTraffic, bucketSessions} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return fmt.Errorf("create %s bucket: %w", b, err)
			}
		}
		if err := migrate(tx, version, migrations); err != nil {
			return err
		}
		if tx.Bucket([]byte(bucketByService)) == nil {
			return buildServiceIndex(tx)
		}
		return nil
	})
}

// buildServiceIndex creates the per-service index, filling it from the
// deployments of a file written before the index existed.
func buildServiceIndex(tx *bolt.Tx) error {
	if _, err := tx.CreateBucket([]byte(bucketByService)); err != nil {
		return fmt.Errorf("create %s bucket: %w", bucketByService, err)
	}
	return tx.Bucket([]byte(bucketDeployments)).ForEach(func(k, v []byte) error {
		d, err := decodeDeployment(string(k), v)
		if err != nil {
			return err
		}
		return indexDeployment(tx, d)
	})
}

func indexDeployment(tx *bolt.Tx, d controller.Deployment) error {
	b, err := tx.Bucket([]byte(bucketByService)).CreateBucketIfNotExists([]byte(d.Service))
	if err != nil {
		return fmt.Errorf("index deployment %q: %w", d.ID, err)
	}
	if err := b.Put([]byte(d.ID), []byte{}); err != nil {
		return fmt.Errorf("index deployment %q: %w", d.ID, err)
	}
	return nil
}

// Ping reports whether the store is open and readable, with a read
// transaction; after Close it fails.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(bucketMeta)) == nil {
			return errors.New("meta bucket missing")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// Close releases the file and its lock. Calls to other methods after Close
// fail.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// GetService returns the stored state of the named service, or an error
// wrapping controller.ErrNotFound.
func (s *Store) GetService(ctx context.Context, name string) (controller.ServiceState, error) {
	return getRecord(ctx, s, bucketServices, "service", name, decodeService)
}

// getRecord reads and decodes the record key of bucket; kind names it in
// errors, which wrap controller.ErrNotFound when it is missing.
func getRecord[T any](ctx context.Context, s *Store, bucket, kind, key string, decode func(string, []byte) (T, error)) (T, error) {
	var rec T
	if err := ctx.Err(); err != nil {
		return rec, fmt.Errorf("get %s %q: %w", kind, key, err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucket)).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("%s %q: %w", kind, key, controller.ErrNotFound)
		}
		var err error
		rec, err = decode(key, v)
		return err
	})
	return rec, err
}

// PutService creates or replaces the state of st.Name.
func (s *Store) PutService(ctx context.Context, st controller.ServiceState) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put service %q: %w", st.Name, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error { return putService(tx, st) })
}

// PutDeployment creates or replaces the deployment d.ID.
func (s *Store) PutDeployment(ctx context.Context, d controller.Deployment) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put deployment %q: %w", d.ID, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error { return putDeployment(tx, d) })
}

// SaveSwitch writes st and d in one transaction: either both are stored or
// neither is.
func (s *Store) SaveSwitch(ctx context.Context, st controller.ServiceState, d controller.Deployment) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save switch of %q: %w", st.Name, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := putService(tx, st); err != nil {
			return err
		}
		return putDeployment(tx, d)
	})
	if err != nil {
		return fmt.Errorf("save switch of %q: %w", st.Name, err)
	}
	return nil
}

// GetDeployment returns the deployment with the given ID, or an error
// wrapping controller.ErrNotFound.
func (s *Store) GetDeployment(ctx context.Context, id string) (controller.Deployment, error) {
	return getRecord(ctx, s, bucketDeployments, "deployment", id, decodeDeployment)
}

// ListDeployments returns up to limit deployments, newest first, of service
// or of every service when service is "". A limit <= 0 means 20; limits are
// capped at 500. It relies on deployment IDs sorting chronologically.
func (s *Store) ListDeployments(ctx context.Context, service string, limit int) ([]controller.Deployment, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	if limit <= 0 {
		limit = defaultListLimit
	}
	limit = min(limit, maxListLimit)
	out := []controller.Deployment{}
	err := s.db.View(func(tx *bolt.Tx) error {
		records := tx.Bucket([]byte(bucketDeployments))
		if service == "" {
			c := records.Cursor()
			for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
				d, err := decodeDeployment(string(k), v)
				if err != nil {
					return err
				}
				out = append(out, d)
			}
			return nil
		}
		index := tx.Bucket([]byte(bucketByService)).Bucket([]byte(service))
		if index == nil {
			return nil
		}
		c := index.Cursor()
		for k, _ := c.Last(); k != nil && len(out) < limit; k, _ = c.Prev() {
			v := records.Get(k)
			if v == nil {
				return fmt.Errorf("index names deployment %q, which is missing", k)
			}
			d, err := decodeDeployment(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return out, nil
}

// UnfinishedDeployments returns every deployment still queued or running,
// oldest first.
func (s *Store) UnfinishedDeployments(ctx context.Context) ([]controller.Deployment, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("unfinished deployments: %w", err)
	}
	out := []controller.Deployment{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketDeployments)).ForEach(func(k, v []byte) error {
			d, err := decodeDeployment(string(k), v)
			if err != nil {
				return err
			}
			if d.Status == controller.StatusQueued || d.Status == controller.StatusRunning {
				out = append(out, d)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("unfinished deployments: %w", err)
	}
	return out, nil
}

func putService(tx *bolt.Tx, st controller.ServiceState) error {
	if st.Name == "" {
		return errors.New("put service: empty name")
	}
	v, err := json.Marshal(newServiceV1(st))
	if err != nil {
		return fmt.Errorf("encode service %q: %w", st.Name, err)
	}
	if err := tx.Bucket([]byte(bucketServices)).Put([]byte(st.Name), v); err != nil {
		return fmt.Errorf("put service %q: %w", st.Name, err)
	}
	return nil
}

func putDeployment(tx *bolt.Tx, d controller.Deployment) error {
	if d.ID == "" {
		return errors.New("put deployment: empty id")
	}
	v, err := json.Marshal(newDeploymentV1(d))
	if err != nil {
		return fmt.Errorf("encode deployment %q: %w", d.ID, err)
	}
	if err := tx.Bucket([]byte(bucketDeployments)).Put([]byte(d.ID), v); err != nil {
		return fmt.Errorf("put deployment %q: %w", d.ID, err)
	}
	return indexDeployment(tx, d)
}
