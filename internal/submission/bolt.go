package submission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
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
	db *bolt.DB
}

var boltBucket = []byte("submissions")

// OpenBolt opens (or creates) the store at path.
func OpenBolt(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%s is in use by another process; several replicas need the PostgreSQL store (DATABASE_URL)", path)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	db.MaxBatchDelay = 2 * time.Millisecond
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &BoltStore{db: db}, nil
}

func boltKey(k Key) []byte {
	return []byte(k.Namespace + "\x00" + k.CustomBizID)
}

// boltRecord is the stored JSON form.
type boltRecord struct {
	Fingerprint []byte    `json:"fp"`
	State       State     `json:"state"`
	EviPointID  string    `json:"evi,omitempty"`
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
	return &Record{Key: k, Fingerprint: r.Fingerprint, State: r.State, EviPointID: r.EviPointID, EsignCode: r.EsignCode,
		Attempts: r.Attempts, AttemptID: r.AttemptID, LeaseUntil: r.LeaseUntil, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}, nil
}

// Mutate implements Store.
func (s *BoltStore) Mutate(ctx context.Context, key Key, fn func(cur *Record) (*Record, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		cur, err := decodeBolt(key, b.Get(boltKey(key)))
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil || next == nil {
			return err
		}
		v, err := json.Marshal(boltRecord{Fingerprint: next.Fingerprint, State: next.State, EviPointID: next.EviPointID,
			EsignCode: next.EsignCode, Attempts: next.Attempts, AttemptID: next.AttemptID, LeaseUntil: next.LeaseUntil,
			CreatedAt: next.CreatedAt, UpdatedAt: next.UpdatedAt})
		if err != nil {
			return err
		}
		return b.Put(boltKey(key), v)
	})
}

// Get implements Store.
func (s *BoltStore) Get(_ context.Context, key Key) (*Record, error) {
	var rec *Record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		rec, err = decodeBolt(key, tx.Bucket(boltBucket).Get(boltKey(key)))
		return err
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
