package submission

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The embedded store's retention works from an index by last change, so that a run
// reads the records it removes rather than every record, and holds the store's write
// lock (which every keyed write waits for) only briefly at a time.
//
// Every record has one entry in the bucket indexBucket: its key is the record's last
// change (UpdatedAt as 8 big-endian bytes of Unix nanoseconds), then its bucket's name
// less the "submissions" every one starts with (its length as a uvarint, then the rest:
// "" or ":<op>"), then the record's key; its value is empty. An entry costs the store
// some 80 bytes a record (deploy/check's TestSingleNodeVolumeSize measures it).
// A write of a record replaces the record's entry in the same transaction (mutate), so
// the entries are in order of last change. An entry is only a pointer: DeleteBefore
// removes a record only when the record, read in the same transaction, was last changed
// when its entry says, and drops an entry whose record changed since or is gone.
//
// Every write transaction of this build notes its ID in the file (metaLastTx). A file
// whose last transaction was not one of ours may hold records without an entry (it was
// written by a build from before the index, or by an older one after a rollback): it is
// marked at open (metaIndexPending), and DeleteBefore indexes its records before it
// deletes, in short transactions from a position kept in the file, so no start-up waits
// for it and an interrupted run goes on where it stopped.

var (
	// indexBucket holds the entries by last change.
	indexBucket = []byte("index:updated")
	// metaIndexPending is present while records may lack an entry. Its value is where
	// indexing goes on: a bucket's name (its length as a uvarint, then the name) and
	// the first key not indexed yet; empty, from the first record.
	metaIndexPending = []byte("index_pending")
	// metaLastTx is the ID of this build's last write transaction: when the next one
	// (the opening one) follows it directly, no other program wrote in between and the
	// index is complete.
	metaLastTx = []byte("last_tx")
)

const (
	// retentionTxBudget bounds how long one transaction of retention (removing, or
	// indexing an older file) runs before it commits and lets keyed writes in: a keyed
	// write waits at most about this long, plus the commit, for it.
	retentionTxBudget = 10 * time.Millisecond
	// retentionTxMax bounds the records one transaction removes, so its commit (which
	// writes every page it changed, then syncs) stays short as well; indexTxMax the
	// records one transaction indexes (an entry changes fewer pages than a removal).
	retentionTxMax = 250
	indexTxMax     = 1000
	// indexFillPercent: writes append to the index's end (a write is the newest
	// change), so its pages are filled before they split, not halved.
	indexFillPercent = 0.9
)

// updatedStamp is t as the index orders it: Unix nanoseconds, clamped to what they can
// represent.
func updatedStamp(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// indexKey is the index entry of the record at key in bucket (a record bucket), last
// changed at.
func indexKey(at time.Time, bucket, key []byte) []byte {
	op := bucket[len(boltBucket):]
	k := make([]byte, 8, 8+binary.MaxVarintLen64+len(op)+len(key))
	binary.BigEndian.PutUint64(k, updatedStamp(at))
	k = binary.AppendUvarint(k, uint64(len(op)))
	k = append(k, op...)
	return append(k, key...)
}

// parseIndexKey splits an index entry into its record's last change, bucket and key.
func parseIndexKey(k []byte) (stamp uint64, bucket, key []byte, ok bool) {
	if len(k) < 9 {
		return 0, nil, nil, false
	}
	n, w := binary.Uvarint(k[8:])
	if w <= 0 || n > uint64(len(k)-8-w) {
		return 0, nil, nil, false
	}
	rest := k[8+w:]
	return binary.BigEndian.Uint64(k), append(bytes.Clone(boltBucket), rest[:n]...), rest[n:], true
}

// isRecordBucket says whether a top-level bucket holds submissions.
func isRecordBucket(name []byte) bool {
	return bytes.Equal(name, boltBucket) || (bytes.HasPrefix(name, boltBucket) && len(name) > len(boltBucket) && name[len(boltBucket)] == ':')
}

// reindex moves the index entry of the record at key in bucket, in the transaction that
// writes it (which has called markWriter): from its previous last change (when it had
// one) to its new one.
func reindex(tx *bolt.Tx, bucket, key []byte, had bool, was, now time.Time) error {
	idx := tx.Bucket(indexBucket)
	idx.FillPercent = indexFillPercent
	if had && updatedStamp(was) != updatedStamp(now) {
		if err := idx.Delete(indexKey(was, bucket, key)); err != nil {
			return err
		}
	}
	return idx.Put(indexKey(now, bucket, key), nil)
}

// prepareIndex, in the opening transaction, creates the index and marks the file for
// indexing unless this build wrote it last.
func prepareIndex(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	if tx.Bucket(indexBucket) == nil {
		if _, err := tx.CreateBucket(indexBucket); err != nil {
			return err
		}
	} else if v := meta.Get(metaLastTx); len(v) == 8 && binary.BigEndian.Uint64(v)+1 == uint64(tx.ID()) {
		return markWriter(tx)
	}
	if err := markWriter(tx); err != nil {
		return err
	}
	// Another program wrote the file last: index every record again (from the first, as
	// records before a kept position may have changed too).
	empty := true
	if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if isRecordBucket(name) {
			if k, _ := b.Cursor().First(); k != nil {
				empty = false
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if empty {
		return meta.Delete(metaIndexPending)
	}
	return meta.Put(metaIndexPending, []byte{})
}

// markWriter notes, in each of this build's write transactions, that it wrote the file
// last. The meta bucket is small enough to live inside its parent's page, which every
// write changes anyway, so the note costs no page of its own.
func markWriter(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(metaBucket)
	if err != nil {
		return err
	}
	return meta.Put(metaLastTx, binary.BigEndian.AppendUint64(nil, uint64(tx.ID())))
}

// DeleteBefore implements Store. It indexes the records of a file marked for it first,
// then walks the index from its oldest entry up to cutoff. Each transaction stops after
// retentionTxBudget or retentionTxMax records, commits, and pauses for half as long as it
// held the lock (at least a millisecond) so that keyed writes go first; the next goes on
// from the entry where the last stopped. When ctx ends first, it returns what it removed
// so far and ctx's error; the next run goes on from there.
func (s *BoltStore) DeleteBefore(ctx context.Context, cutoff time.Time) (int64, error) {
	if err := s.indexRecords(ctx); err != nil {
		return 0, err
	}
	now := s.clock.Now()
	end := updatedStamp(cutoff)
	var removed int64
	var from []byte // the first entry not looked at yet; nil, the oldest
	for {
		began := time.Now()
		var n int
		err := s.db.Update(func(tx *bolt.Tx) error {
			var err error
			n, from, err = s.removeSome(tx, from, end, now)
			return err
		})
		if err != nil {
			return removed, fmt.Errorf("%w: removing old records: %v", ErrStoreUnavailable, err)
		}
		removed += int64(n)
		if from == nil {
			return removed, nil
		}
		if err := yieldLock(ctx, time.Since(began)); err != nil {
			return removed, err
		}
	}
}

// removeSome removes, in one transaction, the records whose entries lie between from
// (nil: the first) and end, within the transaction's bounds. It returns how many it
// removed and the entry the next transaction starts at (nil once it reached end).
func (s *BoltStore) removeSome(tx *bolt.Tx, from []byte, end uint64, now time.Time) (int, []byte, error) {
	if err := markWriter(tx); err != nil {
		return 0, nil, err
	}
	idx := tx.Bucket(indexBucket)
	deadline := time.Now().Add(retentionTxBudget)
	c := idx.Cursor()
	k, _ := c.Seek(from)
	removed := 0
	for looked := 0; k != nil; looked++ {
		if len(k) >= 8 && binary.BigEndian.Uint64(k) >= end {
			return removed, nil, nil
		}
		if removed >= retentionTxMax || (looked%32 == 31 && time.Now().After(deadline)) {
			return removed, bytes.Clone(k), nil
		}
		entry := bytes.Clone(k)
		drop, gone, err := retire(tx, entry, now)
		if err != nil {
			return removed, nil, err
		}
		if gone {
			removed++
		}
		if !drop {
			k, _ = c.Next()
			continue
		}
		if err := idx.Delete(entry); err != nil {
			return removed, nil, err
		}
		// A cursor's Next after a deletion can skip a key (etcd-io/bbolt#146): seek the
		// deleted entry's successor instead.
		k, _ = c.Seek(entry)
	}
	return removed, nil, nil
}

// retire looks at the record an old index entry points to, and removes it unless its
// lease still runs (a record that changed since, or is gone, has no business with this
// entry). It says whether to drop the entry, and whether it removed the record.
func retire(tx *bolt.Tx, entry []byte, now time.Time) (drop, gone bool, err error) {
	stamp, bucket, key, ok := parseIndexKey(entry)
	if !ok {
		return true, false, nil
	}
	b := tx.Bucket(bucket)
	if b == nil {
		return true, false, nil
	}
	v := b.Get(key)
	if v == nil {
		return true, false, nil
	}
	var r struct {
		State      State     `json:"state"`
		LeaseUntil time.Time `json:"lease"`
		UpdatedAt  time.Time `json:"updated"`
	}
	switch {
	case json.Unmarshal(v, &r) != nil:
		// A record that cannot be read is left as it is, as reading it would fail.
		return false, false, nil
	case updatedStamp(r.UpdatedAt) != stamp:
		return true, false, nil
	case r.State == StateInProgress && r.LeaseUntil.After(now):
		return false, false, nil
	}
	if err := b.Delete(key); err != nil {
		return false, false, err
	}
	return true, true, nil
}

// indexRecords gives every record of a file marked for it its index entry, in
// transactions as short as DeleteBefore's, going on from the position kept in the file.
func (s *BoltStore) indexRecords(ctx context.Context) error {
	for {
		began := time.Now()
		var pending bool
		err := s.db.Update(func(tx *bolt.Tx) error {
			var err error
			pending, err = indexSome(tx)
			return err
		})
		if err != nil {
			return fmt.Errorf("%w: indexing records: %v", ErrStoreUnavailable, err)
		}
		if !pending {
			return nil
		}
		if err := yieldLock(ctx, time.Since(began)); err != nil {
			return err
		}
	}
}

// indexSome indexes, in one transaction, records from the kept position on, within the
// transaction's bounds; it says whether records are left.
func indexSome(tx *bolt.Tx) (bool, error) {
	if err := markWriter(tx); err != nil {
		return false, err
	}
	meta := tx.Bucket(metaBucket)
	pos := meta.Get(metaIndexPending)
	if pos == nil {
		return false, nil
	}
	var name, next []byte
	if len(pos) > 0 {
		n, w := binary.Uvarint(pos)
		if w <= 0 || n > uint64(len(pos)-w) {
			return false, fmt.Errorf("the index's position is corrupt")
		}
		name, next = bytes.Clone(pos[w:w+int(n)]), bytes.Clone(pos[w+int(n):])
	}
	idx := tx.Bucket(indexBucket)
	deadline := time.Now().Add(retentionTxBudget)
	indexed := 0
	buckets := tx.Cursor()
	for bn, _ := buckets.Seek(name); bn != nil; bn, _ = buckets.Next() {
		if !isRecordBucket(bn) {
			continue
		}
		c := tx.Bucket(bn).Cursor()
		k, v := c.First()
		if bytes.Equal(bn, name) && len(next) > 0 {
			k, v = c.Seek(next)
		}
		for ; k != nil; k, v = c.Next() {
			if indexed >= indexTxMax || (indexed%32 == 31 && time.Now().After(deadline)) {
				p := binary.AppendUvarint(nil, uint64(len(bn)))
				p = append(append(p, bn...), k...)
				return true, meta.Put(metaIndexPending, p)
			}
			indexed++
			var r struct {
				UpdatedAt time.Time `json:"updated"`
			}
			if v == nil || json.Unmarshal(v, &r) != nil {
				continue
			}
			if err := idx.Put(indexKey(r.UpdatedAt, bn, k), nil); err != nil {
				return false, err
			}
		}
	}
	return false, meta.Delete(metaIndexPending)
}

// yieldLock pauses between two of retention's transactions for half as long as the last
// one took (at least a millisecond), so that keyed writes waiting for the lock go first.
func yieldLock(ctx context.Context, took time.Duration) error {
	t := time.NewTimer(max(took/2, time.Millisecond))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
