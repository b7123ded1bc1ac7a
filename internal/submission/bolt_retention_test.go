package submission

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The embedded store's retention index holds exactly one entry per record, at the
// record's last change, whatever sequence of writes, rewrites and retention runs made
// the store: checkIndex compares the two, entry by entry.
func checkIndex(t *testing.T, s *BoltStore) {
	t.Helper()
	want := map[string]bool{}
	got := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if !isRecordBucket(name) {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				var r boltRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return err
				}
				want[string(indexKey(r.UpdatedAt, name, k))] = true
				return nil
			})
		}); err != nil {
			return err
		}
		return tx.Bucket(indexBucket).ForEach(func(k, _ []byte) error {
			got[string(k)] = true
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range got {
		if !want[k] {
			t.Errorf("index entry %q has no record last changed then", k)
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("record %q has no index entry", k)
		}
	}
}

func openTestBolt(t *testing.T, path string) *BoltStore {
	t.Helper()
	s, err := OpenBolt(path, BoltOptions{LegacyOp: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func putRecord(t *testing.T, s *BoltStore, k Key, r Record) {
	t.Helper()
	if err := s.Mutate(context.Background(), k, func(*Record) (*Record, error) { return &r, nil }); err != nil {
		t.Fatal(err)
	}
}

// A record rewritten after it was old is not removed by its old entry; removed records
// leave no entry; a running lease is kept; both operations' buckets are covered.
func TestBoltRetentionIndexFollowsRewrites(t *testing.T) {
	s := openTestBolt(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	now := time.Now()
	old := now.Add(-48 * time.Hour)
	key := func(op Op, id string) Key { return Key{Op: op, Namespace: "ns", CustomBizID: id} }
	rewritten, removed, otherOp, running := key("legacy", "rewritten"), key("legacy", "removed"), key("other", "removed"), key("other", "running")
	putRecord(t, s, rewritten, Record{State: StateSucceeded, UpdatedAt: old})
	putRecord(t, s, removed, Record{State: StateFailed, UpdatedAt: old})
	putRecord(t, s, otherOp, Record{State: StateOutcomeUnknown, UpdatedAt: old.Add(time.Second)})
	putRecord(t, s, running, Record{State: StateInProgress, LeaseUntil: now.Add(time.Hour), UpdatedAt: old})
	putRecord(t, s, rewritten, Record{State: StateSucceeded, UpdatedAt: now})
	checkIndex(t, s)

	n, err := s.DeleteBefore(ctx, now.Add(-time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("DeleteBefore removed %d (%v), want 2", n, err)
	}
	for k, kept := range map[Key]bool{rewritten: true, removed: false, otherOp: false, running: true} {
		if r, _ := s.Get(ctx, k); (r != nil) != kept {
			t.Errorf("%v: kept %v, want %v", k, r != nil, kept)
		}
	}
	checkIndex(t, s)
}

// An entry left behind by a program that does not keep the index (an older build after
// a rollback rewrote the record) does not remove the record it points to, and is
// dropped; the records that program wrote are indexed when the file is opened again.
func TestBoltRetentionAfterAnotherWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenBolt(path, BoltOptions{LegacyOp: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	old := now.Add(-48 * time.Hour)
	k := Key{Op: "legacy", Namespace: "ns", CustomBizID: "rewritten-elsewhere"}
	putRecord(t, s, k, Record{State: StateSucceeded, UpdatedAt: old})
	s.Close()

	// The older build rewrites the record (now recent) and writes an old one of its own,
	// leaving the index as it was.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	put := func(id string, at time.Time) {
		v, _ := json.Marshal(boltRecord{Fingerprint: []byte{1}, State: StateSucceeded, CreatedAt: at, UpdatedAt: at})
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(boltBucket).Put([]byte("ns\x00"+id), v) }); err != nil {
			t.Fatal(err)
		}
	}
	put("rewritten-elsewhere", now)
	put("written-elsewhere", old)
	db.Close()

	s = openTestBolt(t, path)
	n, err := s.DeleteBefore(ctx, now.Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DeleteBefore removed %d (%v), want 1", n, err)
	}
	if r, _ := s.Get(ctx, k); r == nil {
		t.Error("the record rewritten by the other program was removed by its old entry")
	}
	if r, _ := s.Get(ctx, Key{Op: "legacy", Namespace: "ns", CustomBizID: "written-elsewhere"}); r != nil {
		t.Error("the old record the other program wrote was kept")
	}
	checkIndex(t, s)
}

// Random writes, rewrites and retention runs over two operations, against a model: the
// store keeps what the model keeps, and the index matches the records after every step.
func TestBoltRetentionIndexRandomised(t *testing.T) {
	s := openTestBolt(t, filepath.Join(t.TempDir(), "s.db"))
	s.db.NoSync = true // a test's file: no need to wait for the disk
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 21))
	base := time.Now().Add(-1000 * time.Hour)
	now := time.Now()
	model := map[Key]Record{}
	for step := range 3000 {
		switch rng.IntN(20) {
		case 0:
			cutoff := base.Add(time.Duration(rng.IntN(1000)) * time.Hour)
			want := int64(0)
			for k, r := range model {
				if r.UpdatedAt.Before(cutoff) && !(r.State == StateInProgress && r.LeaseUntil.After(now)) {
					delete(model, k)
					want++
				}
			}
			n, err := s.DeleteBefore(ctx, cutoff)
			if err != nil || n != want {
				t.Fatalf("step %d: DeleteBefore removed %d (%v), want %d", step, n, err, want)
			}
			checkIndex(t, s)
		default:
			k := Key{Op: []Op{"legacy", "other"}[rng.IntN(2)], Namespace: "ns", CustomBizID: fmt.Sprint(rng.IntN(300))}
			r := Record{Key: k, Fingerprint: []byte{1}, State: StateSucceeded, UpdatedAt: base.Add(time.Duration(rng.Int64N(int64(1000 * time.Hour))))}
			if rng.IntN(10) == 0 {
				r.State, r.LeaseUntil = StateInProgress, now.Add(time.Hour)
			}
			putRecord(t, s, k, r)
			model[k] = r
		}
	}
	checkIndex(t, s)
	for k := range model {
		if r, err := s.Get(ctx, k); r == nil || err != nil {
			t.Fatalf("%v lost (%v)", k, err)
		}
	}
}

// lastTx is the ID of the store's last write transaction.
func lastTx(t *testing.T, s *BoltStore) uint64 {
	t.Helper()
	var id uint64
	if err := s.db.View(func(tx *bolt.Tx) error { id = uint64(tx.ID()); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// A run over more records than one transaction may change takes several transactions,
// each resumed where the last stopped (records kept for their running lease at the front
// do not stop it), and a run cut short goes on at the next.
func TestBoltRetentionInBoundedTransactions(t *testing.T) {
	s := openTestBolt(t, filepath.Join(t.TempDir(), "s.db"))
	now := time.Now()
	old := now.Add(-48 * time.Hour)
	const n = 3*retentionTxMax + 10
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		for i := range n + 5 {
			r := boltRecord{Fingerprint: []byte{1}, State: StateSucceeded, UpdatedAt: old.Add(time.Duration(i) * time.Millisecond)}
			if i < 5 {
				r.State, r.LeaseUntil = StateInProgress, now.Add(time.Hour)
			}
			v, _ := json.Marshal(r)
			k := []byte(fmt.Sprintf("ns\x00%06d", i))
			if err := b.Put(k, v); err != nil {
				return err
			}
			if err := tx.Bucket(indexBucket).Put(indexKey(r.UpdatedAt, boltBucket, k), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := s.DeleteBefore(ctx, now.Add(-time.Hour)); err == nil || got > retentionTxMax {
		t.Fatalf("a cancelled run removed %d (%v): want at most one transaction's and the context's error", got, err)
	}
	before := lastTx(t, s)
	got, err := s.DeleteBefore(context.Background(), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if txs := lastTx(t, s) - before; txs < 3 {
		t.Errorf("removing %d records took %d write transactions, want at least 3 of at most %d", got, txs, retentionTxMax)
	}
	var left int
	if err := s.db.View(func(tx *bolt.Tx) error { left = tx.Bucket(boltBucket).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	if left != 5 {
		t.Errorf("%d records left, want the 5 running leases", left)
	}
	checkIndex(t, s)
}

// A file written before the index is indexed by retention in bounded transactions from
// a position kept in the file: reopened halfway, it goes on and ends complete.
func TestBoltRetentionIndexesAnOlderFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	now := time.Now()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2*indexTxMax + 7
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{boltBucket, []byte("submissions:other")} {
			b, err := tx.CreateBucket(name)
			if err != nil {
				return err
			}
			for i := range n {
				at := now.Add(-time.Duration(i%3) * 24 * time.Hour)
				v, _ := json.Marshal(boltRecord{Fingerprint: []byte{1}, State: StateSucceeded, UpdatedAt: at})
				if err := b.Put([]byte(fmt.Sprintf("ns\x00%06d", i)), v); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := OpenBolt(path, BoltOptions{LegacyOp: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	var more bool
	if err := s.db.Update(func(tx *bolt.Tx) error { more, err = indexSome(tx); return err }); err != nil || !more {
		t.Fatalf("one transaction indexed everything (%v): want it bounded", err)
	}
	s.Close()
	s = openTestBolt(t, path)
	var pos []byte
	_ = s.db.View(func(tx *bolt.Tx) error { pos = bytes.Clone(tx.Bucket(metaBucket).Get(metaIndexPending)); return nil })
	if len(pos) == 0 {
		t.Fatalf("reopened, the indexing starts again from the first record (position %q)", pos)
	}
	removed, err := s.DeleteBefore(context.Background(), now.Add(-36*time.Hour))
	if want := int64(2 * (n / 3)); err != nil || removed != want {
		t.Fatalf("DeleteBefore removed %d (%v), want %d", removed, err, want)
	}
	checkIndex(t, s)
	_ = s.db.View(func(tx *bolt.Tx) error { pos = tx.Bucket(metaBucket).Get(metaIndexPending); return nil })
	if pos != nil {
		t.Error("the index is still marked pending")
	}
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], lastTx(t, s))
	_ = s.db.View(func(tx *bolt.Tx) error { pos = bytes.Clone(tx.Bucket(metaBucket).Get(metaLastTx)); return nil })
	if !bytes.Equal(pos, id[:]) {
		t.Errorf("the last transaction is not noted as this build's: %x, want %x", pos, id)
	}
}
