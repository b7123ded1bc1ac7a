package submission

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/esign-evidence/esign-evidence/internal/clock"
)

// BoltStore is the embedded store: one bbolt file, no server.
//
// Why bbolt rather than SQLite: the store needs exactly one thing, an atomic
// read-modify-write of one key, and bbolt's serialised, fsynced write transactions are
// that with nothing else to learn; it is pure Go (no cgo), small, and quick to build.
// Its file lock also keeps a second process from opening the same file: a second
// replica needs the PostgreSQL store, and is told so, instead of silently sharing a file.
// Concurrent writes are grouped into one transaction (bolt's Batch), so many calls share
// one fsync.
type BoltStore struct {
	db       *bolt.DB
	legacyOp Op
	clock    clock.Clock
}

// BoltOptions configures a BoltStore.
type BoltOptions struct {
	// LegacyOp is the operation whose records files written before records were named
	// by operation hold: they are in the plain "submissions" bucket, where that
	// operation's records stay. Every other operation's are in "submissions:<op>". When
	// empty, every operation has a bucket of its own and the plain one is not read.
	LegacyOp Op
	// Clock tells DeleteBefore which leases still run; the real clock when nil.
	Clock clock.Clock
}

var boltBucket = []byte("submissions")

// OpenBolt opens (or creates) the store at path.
func OpenBolt(path string, opts BoltOptions) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%s is in use by another process; several replicas need the PostgreSQL store (DATABASE_URL)", path)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db.MaxBatchDelay = 2 * time.Millisecond
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(boltBucket); err != nil {
			return err
		}
		return prepareIndex(tx)
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &BoltStore{db: db, legacyOp: opts.LegacyOp, clock: clock.Or(opts.Clock)}, nil
}

func boltKey(k Key) []byte {
	return []byte(k.Namespace + "\x00" + k.CustomBizID)
}

// bucketFor is the bucket of an operation's submissions: "submissions" for the legacy
// operation (where its records always were), "submissions:<op>" for the others.
func (s *BoltStore) bucketFor(op Op) []byte {
	if op == s.legacyOp {
		return boltBucket
	}
	return []byte(string(boltBucket) + ":" + string(op))
}

// boltRecord is the stored JSON form.
type boltRecord struct {
	Fingerprint []byte    `json:"fp"`
	State       State     `json:"state"`
	Result      string    `json:"evi,omitempty"`
	EsignCode   int       `json:"code,omitempty"`
	Attempts    int       `json:"attempts"`
	AttemptID   string    `json:"attempt,omitempty"`
	LeaseUntil  time.Time `json:"lease"`
	CreatedAt   time.Time `json:"created"`
	UpdatedAt   time.Time `json:"updated"`
}

func decodeBolt(k Key, b []byte) (*Record, error) {
	if b == nil {
		return nil, nil
	}
	var r boltRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: corrupt record", ErrStoreUnavailable)
	}
	return &Record{Key: k, Fingerprint: r.Fingerprint, State: r.State, Result: r.Result, EsignCode: r.EsignCode,
		Attempts: r.Attempts, AttemptID: r.AttemptID, LeaseUntil: r.LeaseUntil, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}, nil
}

// bounded runs op, but returns when ctx ends even if op (a write stuck on a failing
// disk) does not.
func bounded(ctx context.Context, op func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrStoreUnavailable, ctx.Err())
	}
}

// Mutate implements Store.
func (s *BoltStore) Mutate(ctx context.Context, key Key, fn func(cur *Record) (*Record, error)) error {
	if err := key.check(); err != nil {
		return err
	}
	return bounded(ctx, func() error { return s.mutate(key, fn) })
}

func (s *BoltStore) mutate(key Key, fn func(cur *Record) (*Record, error)) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		if err := markWriter(tx); err != nil {
			return err
		}
		name := s.bucketFor(key.Op)
		b, err := tx.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		cur, err := decodeBolt(key, b.Get(boltKey(key)))
		if err != nil {
			return err
		}
		var was time.Time
		if cur != nil {
			was = cur.UpdatedAt
		}
		next, err := fn(cur)
		if err != nil || next == nil {
			return err
		}
		v, err := json.Marshal(boltRecord{Fingerprint: next.Fingerprint, State: next.State, Result: next.Result,
			EsignCode: next.EsignCode, Attempts: next.Attempts, AttemptID: next.AttemptID, LeaseUntil: next.LeaseUntil,
			CreatedAt: next.CreatedAt, UpdatedAt: next.UpdatedAt})
		if err != nil {
			return err
		}
		if err := b.Put(boltKey(key), v); err != nil {
			return err
		}
		return reindex(tx, name, boltKey(key), cur != nil, was, next.UpdatedAt)
	})
}

// Get implements Store.
func (s *BoltStore) Get(ctx context.Context, key Key) (*Record, error) {
	if err := key.check(); err != nil {
		return nil, err
	}
	var rec *Record
	err := bounded(ctx, func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(s.bucketFor(key.Op))
			if b == nil {
				return nil
			}
			var err error
			rec, err = decodeBolt(key, b.Get(boltKey(key)))
			return err
		})
	})
	return rec, err
}

// Close implements Store.
func (s *BoltStore) Close() error { return s.db.Close() }

// Backup writes a consistent copy of the whole store file to w while the store keeps
// serving: one read transaction sees one snapshot, and writers are not held up. size is
// told the copy's length before the first byte is written.
func (s *BoltStore) Backup(w io.Writer, size func(int64)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		size(tx.Size())
		_, err := tx.WriteTo(w)
		return err
	})
}

var (
	metaBucket = []byte("meta")
	metaFPKey  = []byte("fingerprint_key")
)

// FingerprintKey returns the key of request fingerprints kept in the file, creating it
// on first use: a random one for a new file, or legacy (the key earlier versions derived
// from the app secret) for a file that already holds records made with it. Once kept,
// it no longer depends on the app secret.
func (s *BoltStore) FingerprintKey(legacy []byte) ([]byte, error) {
	var key []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := markWriter(tx); err != nil {
			return err
		}
		meta := tx.Bucket(metaBucket)
		if k := meta.Get(metaFPKey); k != nil {
			key = append([]byte(nil), k...)
			return nil
		}
		if k, _ := tx.Bucket(boltBucket).Cursor().First(); k != nil {
			key = legacy
		} else {
			key = make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return err
			}
		}
		return meta.Put(metaFPKey, key)
	})
	return key, err
}
