package submission

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Journal is a small local file of e签宝 results the store could not record yet. A result
// is written to it (and fsynced) before the caller is answered, removed once the store
// has it, and replayed by Submitter.Start after a restart: an ID e签宝 returned is never
// lost to a store outage.
//
// It is a bbolt file, like the embedded store: one atomic, fsynced write per entry, and
// a file lock that keeps two processes from sharing it.
type Journal struct {
	db *bolt.DB
}

var (
	journalBucket = []byte("pending")
	// quarantineBucket keeps entries that could not be read, set aside at start-up.
	quarantineBucket = []byte("quarantine")
)

type journalEntry struct {
	Key       Key    `json:"key"`
	AttemptID string `json:"attempt"`
	Result    string `json:"result"`
	// Fingerprint is the request's (current) fingerprint, so that a duplicate is
	// answered from the journal only for the same request.
	Fingerprint []byte `json:"fp"`
}

// OpenJournal opens (or creates) the journal at path.
func OpenJournal(path string) (*Journal, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%s is in use by another process; every replica needs its own journal", path)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(journalBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &Journal{db: db}, nil
}

func journalKey(k Key) []byte {
	return []byte(string(k.Op) + "\x00" + k.Namespace + "\x00" + k.CustomBizID)
}

func (j *Journal) put(e journalEntry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return j.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(journalBucket).Put(journalKey(e.Key), v) })
}

func (j *Journal) remove(k Key) error {
	return j.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(journalBucket).Delete(journalKey(k)) })
}

// entries returns the results waiting in the journal. An entry that cannot be read (a
// torn or corrupt write, or one naming no operation or result) is moved to the
// quarantine bucket, where it stays for an operator, instead of stopping the replica and
// stranding every other result: quarantined says how many were moved now.
func (j *Journal) entries() (out []journalEntry, quarantined int, err error) {
	err = j.db.Update(func(tx *bolt.Tx) error {
		pending := tx.Bucket(journalBucket)
		var bad [][2][]byte
		if err := pending.ForEach(func(k, v []byte) error {
			var e journalEntry
			if json.Unmarshal(v, &e) != nil || e.Key.Op == "" || e.Result == "" {
				bad = append(bad, [2][]byte{append([]byte(nil), k...), append([]byte(nil), v...)})
				return nil
			}
			out = append(out, e)
			return nil
		}); err != nil {
			return err
		}
		if len(bad) == 0 {
			return nil
		}
		q, err := tx.CreateBucketIfNotExists(quarantineBucket)
		if err != nil {
			return err
		}
		for _, kv := range bad {
			if err := q.Put(kv[0], kv[1]); err != nil {
				return err
			}
			if err := pending.Delete(kv[0]); err != nil {
				return err
			}
		}
		quarantined = len(bad)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("reading the journal: %w", err)
	}
	return out, quarantined, nil
}

// Len returns how many results wait in the journal.
func (j *Journal) Len() int {
	n := 0
	_ = j.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(journalBucket).Stats().KeyN; return nil })
	return n
}

// Close closes the journal file.
func (j *Journal) Close() error { return j.db.Close() }
